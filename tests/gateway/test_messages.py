"""What the browser is told when something fails: plain words and a short id, never internals.

Internals are exception text, file paths, library error names and service addresses: they go to the
gateway's log (logger "gateway") with the id the message shows.
"""

from __future__ import annotations

import logging
import re
import shutil

import pytest
from gradio_client import handle_file
from gradio_client.exceptions import AppError

from tests.conftest import FailingPipeline, RunningGateway, RunningService, box_mask, png

INTERNAL = re.compile(r"^txt2img failed with an internal error \(id ([0-9a-f]{8})\); the operator's logs have the details$")
READABLE = "is not a readable image (PNG, JPEG, WEBP, BMP or GIF)."
INTERNALS = ("Traceback", "Error:", "/tmp", "gradio", "preprocess", "UnidentifiedImageError", "127.0.0.1")


def shows_no_internals(message: str) -> None:
    for leak in INTERNALS:
        assert leak not in message, message


def test_an_internal_error_of_the_service_shows_its_id_not_its_text(services, caplog):
    own = RunningService("txt2img", "--warmup", "false")
    own.runtime.model.pipe = FailingPipeline(
        own.runtime.model.pipe, RuntimeError("secret: weights at /opt/models/unet.safetensors are corrupt"))
    addresses = {mode: service.address for mode, service in services.items()}
    addresses["txt2img"] = own.address
    gw = RunningGateway(addresses, timeout_s=60)
    try:
        with caplog.at_level(logging.INFO):
            with pytest.raises(AppError) as err:
                gw.client().predict("fox", "", 4, 7.5, 64, 64, 1, 1, "model default", api_name="/txt2img")
        message = str(err.value)
        match = INTERNAL.match(message)
        assert match, message
        assert "secret" not in message and "/opt" not in message
        shows_no_internals(message)
        error_id = match.group(1)
        # The same id in the service's log line (with the details) and in the gateway's (with the address).
        service_lines = [r.getMessage() for r in caplog.records if r.name != "gateway"]
        assert any(error_id in line and "secret" in line for line in service_lines), service_lines
        gateway_lines = [r.getMessage() for r in caplog.records if r.name == "gateway"]
        assert any(error_id in line and own.address in line for line in gateway_lines), gateway_lines
    finally:
        gw.close()
        own.stop()


def test_a_fault_of_the_gateway_itself_shows_a_fresh_id_and_logs_the_traceback(gateway, caplog):
    results = gateway.gateway.out_dir
    shutil.rmtree(results)  # the gateway's own results folder vanishes (a disk cleaner, an operator)
    try:
        with caplog.at_level(logging.INFO, logger="gateway"):
            with pytest.raises(AppError) as err:
                gateway.client().predict("fox", "", 2, 7.5, 64, 64, 1, 1, "model default", api_name="/txt2img")
        message = str(err.value)
        match = INTERNAL.match(message)
        assert match, message
        assert str(results) not in message and "FileNotFoundError" not in message
        shows_no_internals(message)
        logged = [r for r in caplog.records if r.name == "gateway" and match.group(1) in r.getMessage()]
        assert logged and logged[0].exc_info is not None  # the traceback is in the gateway's log
    finally:
        results.mkdir(exist_ok=True)
    _g, seeds, _i = gateway.client().predict("fox", "", 2, 7.5, 64, 64, 1, 1, "model default", api_name="/txt2img")
    assert seeds == "1"


@pytest.fixture
def files(tmp_path):
    def write(name: str, data: bytes):
        path = tmp_path / name
        path.write_bytes(data)
        return handle_file(str(path))

    return write


ARGS_IMG2IMG = ("x", "", 0.6, 4, 7.5, 0, 0, 1, 1, "model default")
ARGS_INPAINT = ("x", "", 1.0, 4, 4, 7.5, 0, 0, 1, 1, "model default")


@pytest.mark.parametrize("blob", [b"not an image", b"GIF89a" + b"\0" * 20, b"%PDF-1.4 not an image"])
def test_uploads_that_are_not_images_are_named_in_plain_words(gateway, files, blob):
    client = gateway.client()
    with pytest.raises(AppError) as err:
        client.predict(files("upload.png", blob), *ARGS_IMG2IMG, api_name="/img2img")
    assert str(err.value) == f"Img2Img: the input image {READABLE}"

    bad = {"background": files("upload.png", blob), "layers": [], "composite": None}
    with pytest.raises(AppError) as err:
        client.predict(bad, files("mask.png", box_mask()), *ARGS_INPAINT, api_name="/inpaint")
    assert str(err.value) == f"Inpainting: the editor's image or a brush layer {READABLE}"

    bad_layer = {"background": files("in.png", png()), "layers": [files("layer.png", blob)], "composite": None}
    with pytest.raises(AppError) as err:
        client.predict(bad_layer, None, *ARGS_INPAINT, api_name="/inpaint")
    assert str(err.value) == f"Inpainting: the editor's image or a brush layer {READABLE}"

    good = {"background": files("in.png", png()), "layers": [], "composite": None}
    with pytest.raises(AppError) as err:
        client.predict(good, files("mask.png", blob), *ARGS_INPAINT, api_name="/inpaint")
    assert str(err.value) == f"Inpainting: the uploaded mask {READABLE}"


def test_a_truncated_upload_is_refused_by_the_service_naming_the_field(gateway, files):
    with pytest.raises(AppError) as err:
        gateway.client().predict(files("cut.png", png()[:200]), *ARGS_IMG2IMG, api_name="/img2img")
    message = str(err.value)
    assert message.startswith("img2img: invalid input - init_image.data: "), message
    assert "/tmp" not in message and "gradio" not in message


def test_a_jpeg_input_works(gateway, files):
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.open(io.BytesIO(png((96, 64)))).save(buf, format="JPEG")
    gallery, seeds, _i = gateway.client().predict(files("in.jpg", buf.getvalue()), *ARGS_IMG2IMG,
                                                  api_name="/img2img")
    assert seeds == "1" and Image.open(gallery[0]["image"]).size == (96, 64)


def test_each_tab_names_the_model_family_its_service_loaded(gateway):
    lines = {mode: gateway.gateway.status_line(mode) for mode in ("txt2img", "img2img", "inpaint")}
    assert lines["txt2img"].endswith("**serving** · tiny (SD 1.x model)")
    # The tiny inpaint UNet: 9 channels.
    assert lines["inpaint"].endswith("**serving** · tiny (SD 1.x inpainting model)")
    xl = RunningService("inpaint", "--warmup", "false", "--model", "tiny-xl")
    gw = RunningGateway({"txt2img": "127.0.0.1:1", "img2img": "127.0.0.1:1", "inpaint": xl.address}, timeout_s=10)
    try:
        assert gw.gateway.status_line("inpaint") == (
            "**inpaint** service: **serving** · tiny-xl (SDXL inpainting model)")
        assert gw.gateway.status_line("txt2img") == "**txt2img** service: **unreachable**"  # no family
    finally:
        gw.close()
        xl.stop()


def test_the_status_line_shows_the_mode_and_state_only(gateway, services, caplog):
    gw = gateway.gateway
    gw._states.clear()  # log the next state seen
    with caplog.at_level(logging.INFO, logger="gateway"):
        line = gw.status_line("img2img")
    assert line == "**img2img** service: **serving** · tiny (SD 1.x model)"
    assert services["img2img"].address in caplog.text  # the address is in the gateway's log instead
