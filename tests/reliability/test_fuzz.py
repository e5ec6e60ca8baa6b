"""Property-based fuzzing of every request of every mode: never UNKNOWN or INTERNAL, never a dead service."""

from __future__ import annotations

import io

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from imagegen.v1 import imagegen_pb2 as pb
from tests.conftest import RunningService, box_mask, png, request_for

ALLOWED = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED}
FIELDS = ("params.", "strength", "fit", "mask_blur", "init_image.", "mask_image.")
FUZZ = settings(max_examples=40, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _encode(img: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def _bomb() -> bytes:
    return _encode(Image.new("1", (30000, 30000)), "PNG")


IMAGES = [
    png(), png((100, 70)), png((1, 1)), png((300, 300)), png((64, 64), mode="RGBA"), png((64, 64), mode="L"),
    _encode(Image.new("P", (64, 64)), "GIF"), _encode(Image.new("RGB", (80, 64), "blue"), "JPEG"),
    _encode(Image.new("RGB", (64, 64), "red"), "WEBP"), box_mask(), box_mask((32, 32), (0, 0, 16, 16)),
    _bomb(), png()[:60], b"", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, b"GIF89a",
]
image_bytes = st.one_of(st.sampled_from(IMAGES), st.binary(max_size=300))
floats = st.floats(width=32, allow_nan=True, allow_infinity=True)
texts = st.one_of(st.text(max_size=60), st.just("fox " * 1200), st.just("\x00"), st.just("🦊" * 100))

params = st.builds(
    lambda prompt, negative, steps, guidance, width, height, seed, count, scheduler, fmt, quality: _params(
        prompt, negative, steps, guidance, width, height, seed, count, scheduler, fmt, quality),
    texts, texts, st.integers(0, 2**32 - 1), st.one_of(st.none(), floats),
    st.one_of(st.integers(0, 5000), st.sampled_from([0, 64, 72, 128, 256])),
    st.one_of(st.integers(0, 5000), st.sampled_from([0, 64, 72, 128, 256])),
    st.one_of(st.none(), st.integers(0, 2**64 - 1)), st.integers(0, 50),
    st.one_of(st.sampled_from(["", "ddim", "euler_a", "dpmpp_2m", "lms"]), st.text(max_size=12)),
    st.integers(0, 2**31 - 1), st.integers(0, 2**32 - 1),
)


def _params(prompt, negative, steps, guidance, width, height, seed, count, scheduler, fmt, quality):
    p = pb.GenerationParams(prompt=prompt, negative_prompt=negative, num_inference_steps=steps, width=width,
                            height=height, num_images=count, scheduler=scheduler, output_format=fmt,
                            quality=quality)
    if guidance is not None:
        p.guidance_scale = guidance
    if seed is not None:
        p.seed = seed
    return p


def image_request(cls, **extra):
    def build(p, image, strength, fit, *rest):
        request = cls(params=p, init_image=pb.Image(data=image), fit=fit)
        if strength is not None:
            request.strength = strength
        if rest:
            mask, blur, invert = rest
            request.mask_image.CopyFrom(pb.Image(data=mask))
            request.invert_mask = invert
            if blur is not None:
                request.mask_blur = blur
        return request

    strategies = [params, image_bytes, st.one_of(st.none(), floats), st.integers(0, 2**31 - 1)]
    if extra:
        strategies += [image_bytes, st.one_of(st.none(), st.integers(0, 2**32 - 1)), st.booleans()]
    return st.builds(build, *strategies)


REQUESTS = {
    "txt2img": st.builds(lambda p: pb.Txt2ImgRequest(params=p), params),
    "img2img": image_request(pb.Img2ImgRequest),
    "inpaint": image_request(pb.InpaintRequest, mask=True),
}


@pytest.fixture(scope="module", params=["txt2img", "img2img", "inpaint"])
def small_service(request):
    # Small limits keep the accepted requests cheap; everything else is the normal service.
    service = RunningService(request.param, "--max-size", "256", "--max-pixels", str(256 * 256),
                             "--max-steps", "4", "--max-images", "2", "--warmup", "false")
    yield service
    service.stop()


def test_fuzzed_requests_end_cleanly_and_the_service_keeps_serving(small_service):
    mode, client = small_service.mode, small_service.client
    seen = set()

    @FUZZ
    @given(REQUESTS[mode])
    def check(request):
        try:
            for method in (client.generate, lambda r: list(client.stream(r))[-1]):
                method(request)
            code = grpc.StatusCode.OK
        except grpc.RpcError as err:
            code = err.code()
            assert code in ALLOWED, f"{code.name}: {err.details()}"
            assert err.details(), "an error with no message"
            if code == grpc.StatusCode.INVALID_ARGUMENT:
                assert err.details().startswith(FIELDS), err.details()
        seen.add(code)
        assert len(client.generate(request_for(mode, steps=2)).images) == 1

    check()
    assert grpc.StatusCode.INVALID_ARGUMENT in seen  # the fuzzing reached validation
