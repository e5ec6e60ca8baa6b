"""Bad input is INVALID_ARGUMENT naming the field, before any model work; the service keeps serving."""

from __future__ import annotations

import io

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from PIL import Image

from tests.conftest import png, request_for


def truncated_png() -> bytes:
    data = png((64, 64), seed=3)
    return data[: len(data) // 2]


def bomb_png() -> bytes:
    # A huge 1-bit image compresses to a few KB: a decompression bomb if decoded.
    buf = io.BytesIO()
    Image.new("1", (20000, 20000), 0).save(buf, format="PNG")
    return buf.getvalue()


def black_png() -> bytes:
    buf = io.BytesIO()
    Image.new("L", (64, 64), 0).save(buf, format="PNG")
    return buf.getvalue()


def tiny_png() -> bytes:
    return png((1, 1))


COMMON = [
    ("width not a multiple of 8", {"width": 65}, "params.width"),
    ("height too large", {"height": 4096}, "params.height"),
    ("height too small", {"height": 8}, "params.height"),
    ("too many steps", {"steps": 1000}, "params.num_inference_steps"),
    ("too many images", {"num_images": 99}, "params.num_images"),
    ("unknown scheduler", {"scheduler": "warp_drive"}, "params.scheduler"),
    ("negative guidance", {"guidance_scale": -1.0}, "params.guidance_scale"),
    ("NaN guidance", {"guidance_scale": float("nan")}, "params.guidance_scale"),
    ("huge prompt", {"prompt": "fox " * 5000}, "params.prompt"),
    ("quality out of range", {"output_format": "jpeg", "quality": 101}, "params.quality"),
    ("seed overflows with num_images", {"seed": 2**64 - 1, "num_images": 2}, "params.seed"),
]
IMAGE_MODES = [
    ("strength above 1", {"strength": 1.5}, "strength"),
    ("strength NaN", {"strength": float("nan")}, "strength"),
    ("strength gives no step", {"strength": 0.01, "steps": 4}, "strength"),
    ("no init image", {"image": b""}, "init_image.data"),
    ("init image not an image", {"image": b"this is not a png"}, "init_image.data"),
    ("init image truncated", {"image": truncated_png()}, "init_image.data"),
    ("init image decompression bomb", {"image": bomb_png()}, "init_image.data"),
    ("init image 1x1 kept as is", {"image": tiny_png(), "width": 0, "height": 0}, "init_image.data"),
    ("crop without a size", {"fit": "crop", "width": 0, "height": 0}, "params.width"),
]
INPAINT = [
    ("no mask", {"mask": b""}, "mask_image.data"),
    ("mask not an image", {"mask": b"\x89PNG\r\n\x1a\nnonsense"}, "mask_image.data"),
    ("all-black mask", {"mask": black_png()}, "mask_image.data"),
    ("mask blur too large", {"mask_blur": 500}, "mask_blur"),
]


def cases():
    for mode in ("txt2img", "img2img", "inpaint"):
        for name, overrides, field in COMMON:
            yield pytest.param(mode, overrides, field, id=f"{mode}-{name}")
    for mode in ("img2img", "inpaint"):
        for name, overrides, field in IMAGE_MODES:
            yield pytest.param(mode, overrides, field, id=f"{mode}-{name}")
    for name, overrides, field in INPAINT:
        yield pytest.param("inpaint", overrides, field, id=f"inpaint-{name}")


@pytest.mark.parametrize("mode,overrides,field", cases())
def test_bad_field_is_invalid_argument_naming_it(services, mode, overrides, field):
    service = services[mode]
    steps_before = service.steps_run
    with pytest.raises(grpc.RpcError) as err:
        service.client.generate(request_for(mode, **overrides))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
    assert err.value.details().startswith(field + ":"), err.value.details()
    status = rpc_status.from_call(err.value)
    bad_request, info = error_details_pb2.BadRequest(), error_details_pb2.ErrorInfo()
    assert any(detail.Unpack(bad_request) for detail in status.details)
    assert bad_request.field_violations[0].field == field
    assert any(detail.Unpack(info) for detail in status.details) and info.reason == "INVALID_ARGUMENT"
    assert [v.field for v in err.value.violations] == [field]  # the client's typed error reads it
    assert service.steps_run == steps_before  # refused before any model work
    # ... and the service still serves.
    assert len(service.client.generate(request_for(mode)).images) == 1


def test_stream_reports_bad_input_too(services):
    with pytest.raises(grpc.RpcError) as err:
        list(services["txt2img"].client.stream(request_for("txt2img", width=12)))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


# A Txt2ImgRequest whose params.prompt holds bytes that are not UTF-8 (field 1 > field 1, wire type 2).
NOT_UTF8 = b"\x0a\x04\x0a\x02\xff\xfe"


@pytest.mark.parametrize("method", ["Generate", "GenerateStream"])
def test_a_request_that_does_not_parse_is_invalid_argument_and_counted(services, method):
    service = services["txt2img"]
    before = service.metric("imagegen_requests_total", method=method, code="INVALID_ARGUMENT")
    path = f"/imagegen.v1.Txt2Img/{method}"
    call = (service.client.channel.unary_unary(path) if method == "Generate"
            else service.client.channel.unary_stream(path))
    with pytest.raises(grpc.RpcError) as err:
        reply = call(NOT_UTF8, timeout=10)
        list(reply) if method == "GenerateStream" else reply
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details().startswith("request: could not be parsed")
    assert service.metric("imagegen_requests_total", method=method, code="INVALID_ARGUMENT") == before + 1
    assert len(service.client.generate(request_for("txt2img")).images) == 1


def test_a_huge_scheduler_name_is_refused_with_a_short_message(services):
    with pytest.raises(grpc.RpcError) as err:
        services["txt2img"].client.generate(request_for("txt2img", scheduler="z" * 10_000))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # not RESOURCE_EXHAUSTED from the headers
    assert err.value.details().startswith("params.scheduler: unknown scheduler") and len(err.value.details()) < 300
