"""The Extras tab (driven by gradio_client) and A1111's Extras API (driven by webuiapi) on a real gateway in
front of a real img2img service with the tiny ESRGAN: the service's image as the core makes it, A1111's
sizes and fields, bad input named."""

from __future__ import annotations

import io
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest
import requests
import webuiapi
from gradio_client import handle_file
from PIL import Image

from services.core.models.upscalers import Upscalers
from tests.conftest import RunningGateway, RunningService, png
from tests.upscaler_files import upscaler_folder


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return upscaler_folder(tmp_path_factory.mktemp("upscalers"))


@pytest.fixture(scope="module")
def gateway(services, folder):
    img2img = RunningService("img2img", "--upscaler-dir", str(folder), "--warmup", "false")
    addresses = {mode: service.address for mode, service in services.items()}
    running = RunningGateway({**addresses, "img2img": img2img.address})
    yield running
    running.close()
    img2img.stop()


def source(size=(40, 32), seed=7) -> bytes:
    return png(size, seed=seed)


def core(folder, data: bytes, name: str, size) -> np.ndarray:
    """What the core's upscaler makes of the image: what every path below must answer."""
    img = Image.open(io.BytesIO(data)).convert("RGB")
    return np.asarray(Upscalers(folder).upscale(img, name, size))


def rgb(img: Image.Image) -> np.ndarray:
    return np.asarray(img.convert("RGB"))


def webui(gateway) -> webuiapi.WebUIApi:
    url = urlparse(gateway.url)
    return webuiapi.WebUIApi(host=url.hostname, port=url.port)


def test_the_extras_tab_scales_by_and_to(gateway, folder, tmp_path):
    path = tmp_path / "in.png"
    path.write_bytes(source())
    client = gateway.client()
    result, info = client.predict(handle_file(str(path)), "Scale by", 3, 512, 512, True, "esrgan", "None", 0,
                                  api_name="/extras")
    assert np.array_equal(rgb(Image.open(result)), core(folder, source(), "esrgan", (120, 96)))
    assert info == "Postprocess upscale by: 3, Postprocess upscaler: esrgan"
    kept = list(Path(gateway.config.outputs_dir, "extras").glob("*/*.png"))  # the outputs folder keeps it
    assert len(kept) == 1 and Image.open(kept[0]).info["postprocessing"] == info
    result, info = client.predict(handle_file(str(path)), "Scale to", 1, 104, 64, True, "Lanczos", "Nearest", 0.5,
                                  api_name="/extras")
    assert Image.open(result).size == (104, 64)
    assert "Postprocess crop to: 104x64" in info and "Postprocess upscaler 2: Nearest" in info
    # Upscaler 1 "None" upscales nothing, as in A1111 (upscaler 2 neither).
    result, info = client.predict(handle_file(str(path)), "Scale by", 3, 512, 512, True, "None", "Nearest", 1,
                                  api_name="/extras")
    assert np.array_equal(rgb(Image.open(result)), rgb(Image.open(io.BytesIO(source()))))


def test_the_extras_tab_names_a_bad_upscaler(gateway, tmp_path):
    path = tmp_path / "in.png"
    path.write_bytes(source())
    with pytest.raises(Exception, match="upscaler: unknown upscaler 'nope'"):
        gateway.client().predict(handle_file(str(path)), "Scale by", 2, 512, 512, True, "nope", "None", 0,
                                 api_name="/extras")


def test_upscalers_lists_the_service_s_models_in_a1111_s_shape(gateway):
    listed = webui(gateway).get_upscalers()
    assert [u["name"] for u in listed] == ["None", "Lanczos", "Nearest", "esrgan", "esrgan-pth"]  # usable ones
    assert listed[0] == {"name": "None", "model_name": None, "model_path": None, "model_url": None, "scale": 4.0}
    assert listed[3] == {"name": "esrgan", "model_name": "ESRGAN", "model_path": "esrgan.safetensors",
                         "model_url": None, "scale": 2.0}


def test_webuiapi_extra_single_image(gateway, folder):
    api = webui(gateway)
    picture = Image.open(io.BytesIO(source()))
    result = api.extra_single_image(picture, upscaler_1="esrgan", upscaling_resize=2)
    assert np.array_equal(rgb(result.image), core(folder, source(), "esrgan", (80, 64)))
    assert result.info == "<p>Postprocess upscale by: 2, Postprocess upscaler: esrgan</p>"
    # resize_mode 1 without crop: A1111 scales by the larger ratio (80/40 > 48/32), each side rounded to 8.
    result = api.extra_single_image(picture, resize_mode=1, upscaling_resize_w=80, upscaling_resize_h=48,
                                    upscaling_crop=False, upscaler_1="Lanczos")
    assert result.image.size == (80, 64)
    # upscaler_1 "None" (A1111's default): the image as it is.
    result = api.extra_single_image(picture)
    assert np.array_equal(rgb(result.image), rgb(picture))


def test_webuiapi_extra_batch_images(gateway, folder):
    first, second = source((40, 32), seed=1), source((24, 48), seed=2)
    result = webui(gateway).extra_batch_images([Image.open(io.BytesIO(d)) for d in (first, second)],
                                               upscaler_1="esrgan", upscaling_resize=2)
    assert [image.size for image in result.images] == [(80, 64), (48, 96)]
    assert np.array_equal(rgb(result.images[1]), core(folder, second, "esrgan", (48, 96)))


def test_extras_bad_fields_are_a1111_s_422_naming_them(gateway):
    url = gateway.url + "sdapi/v1"
    import base64

    image = base64.b64encode(source()).decode()
    answer = requests.post(f"{url}/extra-single-image", json={"image": image, "upscaler_1": "nope"}, timeout=60)
    assert answer.status_code == 422 and answer.json()["detail"][0]["loc"] == ["body", "upscaler_1"]
    answer = requests.post(f"{url}/extra-single-image", json={"image": image, "upscaler_1": "Lanczos",
                                                              "upscaling_resize": 20}, timeout=60)
    assert answer.status_code == 422 and answer.json()["detail"][0]["loc"] == ["body", "upscaling_resize"]
    answer = requests.post(f"{url}/extra-batch-images", json={"imageList": [
        {"data": image, "name": "a"}, {"data": base64.b64encode(b"not an image").decode(), "name": "b"}],
        "upscaler_1": "Lanczos"}, timeout=60)
    assert answer.status_code == 422 and answer.json()["detail"][0]["loc"] == ["body", "imageList", "1", "data"]
    answer = requests.post(f"{url}/extra-single-image", json={"image": image, "gfpgan_visibility": 1}, timeout=60)
    assert answer.status_code == 422 and answer.json()["detail"][0]["loc"] == ["body", "gfpgan_visibility"]


def test_the_extras_tab_without_an_image_says_so(gateway):
    with pytest.raises(Exception, match="choose a source image first"):
        gateway.client().predict(None, "Scale by", 2, 512, 512, True, "Lanczos", "None", 0, api_name="/extras")
