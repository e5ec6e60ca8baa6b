"""The gateway given fuzzed input through gradio_client: an error or images, and it keeps serving."""

from __future__ import annotations

import re

import pytest
from gradio_client import handle_file
from gradio_client.exceptions import AppError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import png

GATEWAY_FUZZ = settings(max_examples=12, deadline=None, derandomize=True,
                        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
numbers = st.one_of(st.integers(-10, 10_000), st.floats(allow_nan=False, allow_infinity=False, width=32))
# What a refused input may say: Gradio's own range and choice checks, the gateway naming a field or
# an input, or the service naming a request field. Anything else fails the test: Gradio's own upload
# errors ("Could not preprocess input component ...") carry temporary file paths and library error names.
REFUSALS = re.compile(
    r"^(Value .+ is (less|greater) than (minimum|maximum) value"
    r"|Value: .+ is not in the list of choices"
    r"|(Txt2Img|Img2Img|Inpainting): \w+ "
    r"|(txt2img|img2img|inpaint): invalid input - (params\.\w+|init_image\.data|mask_image\.data|strength|mask_blur): )"
)


INTERNALS = re.compile(r"/tmp/|gradio|Traceback|UnidentifiedImageError|Could not preprocess")


def refused_clearly(err: AppError) -> bool:
    return bool(REFUSALS.match(str(err))) and not INTERNALS.search(str(err))


def still_serves(client) -> None:
    _gallery, seeds, _info = client.predict("fox", "", 2, 7.5, 64, 64, 3, 1, "model default", api_name="/txt2img")
    assert seeds == "3"


def test_fuzzed_txt2img_inputs(gateway):
    client = gateway.client()

    @GATEWAY_FUZZ
    @given(st.text(max_size=40), numbers, numbers, numbers, numbers, numbers,
           st.one_of(st.sampled_from(["model default", "euler"]), st.text(max_size=8)))
    def check(prompt, steps, guidance, width, height, seed, scheduler):
        try:
            client.predict(prompt, "", steps, guidance, width, height, seed, 1, scheduler, api_name="/txt2img")
        except AppError as err:
            assert refused_clearly(err), str(err)
        still_serves(client)

    check()


@pytest.mark.parametrize("blob", [b"not an image", png()[:50], b"", png((1, 1))])
def test_bad_uploads(gateway, tmp_path, blob):
    client = gateway.client()
    path = tmp_path / "upload.png"
    path.write_bytes(blob)
    with pytest.raises(AppError) as err:
        client.predict(handle_file(str(path)), "x", "", 0.6, 4, 7.5, 0, 0, 1, 1, "model default", api_name="/img2img")
    assert refused_clearly(err.value), str(err.value)
    editor = {"background": handle_file(str(path)), "layers": [handle_file(str(path))], "composite": None}
    with pytest.raises(AppError) as err:
        client.predict(editor, None, "x", "", 1.0, 4, 4, 7.5, 0, 0, 1, 1, "model default", api_name="/inpaint")
    assert refused_clearly(err.value), str(err.value)
    still_serves(client)


def test_upload_size_limit(services, tmp_path):
    from tests.conftest import RunningGateway

    gw = RunningGateway({m: s.address for m, s in services.items()}, max_upload_mb=0.05)
    try:
        big = tmp_path / "big.png"
        big.write_bytes(png((256, 256)))  # about 200 KB of noise
        with pytest.raises(Exception) as err:
            gw.client().predict(handle_file(str(big)), "x", "", 0.6, 4, 7.5, 0, 0, 1, 1, "model default",
                                api_name="/img2img")
        assert "size" in str(err.value).lower() or "large" in str(err.value).lower()
        still_serves(gw.client())
    finally:
        gw.close()
