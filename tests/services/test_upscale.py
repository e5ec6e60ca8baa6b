"""The Upscale RPC over a real channel (img2img only): the tiny ESRGAN's image as the core makes it, sizes
by factor or to a size, bad input INVALID_ARGUMENT naming the field while the service keeps serving,
cancel stops the work, metrics count it; the other modes have no Upscale."""

from __future__ import annotations

import io

import grpc
import numpy as np
import pytest
from PIL import Image

from imagegen.v1 import imagegen_pb2 as pb
from imagegen.v1 import imagegen_pb2_grpc as pb_grpc
from services.client import InvalidInput
from services.core.models.upscalers import Upscalers
from tests.conftest import RunningService, png, wait_for
from tests.upscaler_files import upscaler_folder


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return upscaler_folder(tmp_path_factory.mktemp("upscalers"))


@pytest.fixture(scope="module")
def img2img(folder):
    service = RunningService("img2img", "--upscaler-dir", str(folder), "--warmup", "false")
    yield service
    service.stop()


def request(**fields) -> pb.UpscaleRequest:
    fields.setdefault("image", pb.Image(data=png((40, 32), seed=5)))
    fields.setdefault("upscaler", "esrgan")
    return pb.UpscaleRequest(**fields)


def decoded(image: pb.GeneratedImage) -> Image.Image:
    return Image.open(io.BytesIO(image.data))


def test_getinfo_lists_the_upscalers(img2img):
    listed = {u.name: u for u in img2img.client.info().upscalers}
    assert list(listed)[:3] == ["None", "Lanczos", "Nearest"]
    assert (listed["esrgan"].scale, listed["esrgan"].architecture, listed["esrgan"].file) == (2, "ESRGAN",
                                                                                            "esrgan.safetensors")
    assert listed["evil"].unusable and not listed["esrgan"].unusable


def test_an_upscale_is_the_core_s_image_at_the_asked_size(img2img, folder):
    answer = img2img.client.upscale(request(scale=3))
    img = decoded(answer.image)
    assert (answer.image.width, answer.image.height) == img.size == (120, 96)
    source = Image.open(io.BytesIO(png((40, 32), seed=5))).convert("RGB")
    expected = Upscalers(folder).upscale(source, "esrgan", (120, 96))
    assert np.array_equal(np.asarray(img.convert("RGB")), np.asarray(expected))
    assert answer.image.infotext == "Postprocess upscale by: 3, Postprocess upscaler: esrgan"
    assert img.info["postprocessing"] == answer.image.infotext
    assert answer.timings.total_ms >= answer.timings.inference_ms > 0
    sized = img2img.client.upscale(request(width=100, height=50, upscaler="Nearest",
                                           output_format=pb.IMAGE_FORMAT_JPEG))
    assert decoded(sized.image).size == (100, 50) and sized.image.mime_type == "image/jpeg"


@pytest.mark.parametrize("fields, field", [
    (dict(upscaler="nope"), "upscaler"),
    (dict(scale=9), "scale"),
    (dict(scale=0.5), "scale"),
    (dict(width=64), "height"),
    (dict(upscaler="evil"), "upscaler"),
    (dict(image=pb.Image(data=b"nope")), "image"),
])
def test_bad_input_is_invalid_argument_naming_the_field(img2img, fields, field):
    with pytest.raises(InvalidInput) as caught:
        img2img.client.upscale(request(**fields))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in caught.value.violations] == [field]
    assert caught.value.details().startswith(field + ":")
    assert img2img.client.upscale(request(upscaler="Lanczos")).image.width == 80  # still serving


def test_a_cancelled_upscale_stops_and_the_service_keeps_serving(img2img):
    before = img2img.metric("imagegen_images_upscaled_total")
    stub = pb_grpc.Img2ImgStub(img2img.client.channel)
    big = pb.Image(data=png((600, 400), seed=1))  # 4 x 3 tiles a pass: long enough to cancel within
    future = stub.Upscale.future(request(image=big, scale=2), timeout=300)
    assert wait_for(lambda: img2img.runtime.upscale_lane._running, timeout=60)
    future.cancel()
    assert wait_for(lambda: img2img.metric("imagegen_requests_total", method="Upscale", code="CANCELLED") == 1,
                    timeout=120)
    assert img2img.metric("imagegen_images_upscaled_total") == before  # it never finished
    assert wait_for(lambda: not img2img.runtime.upscale_lane._running, timeout=60)
    img2img.client.upscale(request(upscaler="Lanczos"))
    assert img2img.metric("imagegen_images_upscaled_total") == before + 1
    assert img2img.metric("imagegen_requests_total", method="Upscale", code="OK") >= 1


def test_the_other_modes_have_no_upscale():
    txt2img = RunningService("txt2img", "--warmup", "false", load=False)
    try:
        # It lists A1111's resizers (no --upscaler-dir), but has no Upscale.
        assert [u.name for u in txt2img.client.info().upscalers] == ["None", "Lanczos", "Nearest"]
        with pytest.raises(ValueError, match="no Upscale"):
            txt2img.client.upscale(request())
        # The method is not on its service: the generic call is UNIMPLEMENTED.
        call = txt2img.client.channel.unary_unary("/imagegen.v1.Txt2Img/Upscale",
                                                  request_serializer=pb.UpscaleRequest.SerializeToString,
                                                  response_deserializer=pb.UpscaleResponse.FromString)
        with pytest.raises(grpc.RpcError) as caught:
            call(request(), timeout=10)
        assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        txt2img.stop()


def test_the_command_line_upscales_a_file(img2img, tmp_path, capsys):
    from services.client import cli

    source = tmp_path / "in.png"
    source.write_bytes(png((40, 32), seed=5))
    code = cli.main(["upscale", str(source), "--upscaler", "esrgan", "--scale", "2", "--addr", img2img.address,
                     "--out", str(tmp_path / "out.png")])
    assert code == 0
    assert Image.open(tmp_path / "out.png").size == (80, 64)
    assert "80x64  Postprocess upscale by: 2, Postprocess upscaler: esrgan" in capsys.readouterr().out
    assert cli.main(["upscale", str(source), "--upscaler", "nope", "--addr", img2img.address,
                     "--out", str(tmp_path / "bad.png")]) == 1
    assert "INVALID_ARGUMENT: upscaler: unknown upscaler 'nope'" in capsys.readouterr().err
    assert cli.main(["upscale", str(source), "--upscaler", "esrgan", "--width", "80", "--addr", img2img.address,
                     "--out", str(tmp_path / "bad.png")]) == 2
