"""The `webuiapi` package (a test dependency) against the gateway, as scripts built on it use it."""

from __future__ import annotations

import io
import threading
from urllib.parse import urlparse

import numpy as np
import pytest
import webuiapi
from PIL import Image

from tests.conftest import RunningGateway, box_mask, png, wait_for

from .conftest import SLOW, title_of


@pytest.fixture(scope="module")
def locked(services):
    gw = RunningGateway({m: s.address for m, s in services.items()}, api_auth=(("script", "pw"),))
    yield gw
    gw.close()


def client(gateway, **kwargs) -> webuiapi.WebUIApi:
    url = urlparse(gateway.url)
    return webuiapi.WebUIApi(host=url.hostname, port=url.port, steps=4, **kwargs)


def pil(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


def test_txt2img(gateway):
    result = client(gateway).txt2img(prompt="a red fox", seed=11, width=64, height=64, batch_size=2)
    assert [image.size for image in result.images] == [(64, 64), (64, 64)]
    assert result.info["all_seeds"] == [11, 12] and result.info["sampler_name"] == "Euler a"
    assert result.parameters["prompt"] == "a red fox"
    assert result.image.info["parameters"].startswith("a red fox\n")  # the PNG's own infotext chunk


def test_img2img_and_inpainting_with_a_mask(gateway):
    api = client(gateway)
    source = pil(png((64, 64), seed=4))
    plain = api.img2img(images=[source], prompt="watercolour", seed=3, width=64, height=64, denoising_strength=0.6)
    assert plain.image.size == (64, 64) and plain.info["denoising_strength"] == 0.6
    masked = api.img2img(images=[source], mask_image=pil(box_mask()), prompt="a hole", seed=3, width=64, height=64,
                         denoising_strength=0.6)
    assert "Mask blur: 4" in masked.info["infotexts"][0]
    # The mask keeps the outside: the corners are the input's, which plain img2img changes.
    inpainted, img2img = np.asarray(masked.image.convert("RGB")), np.asarray(plain.image.convert("RGB"))
    original = np.asarray(source.convert("RGB"))
    assert np.abs(inpainted[:8, :8].astype(int) - original[:8, :8]).max() <= 2
    assert np.abs(img2img[:8, :8].astype(int) - original[:8, :8]).max() > 2


def test_options_models_and_util_set_model(locked, services):
    api, tiny = client(locked, username="script", password="pw"), title_of(services["txt2img"])
    assert api.util_get_model_names() == [tiny]
    api.util_set_model("TINY")  # the closest title
    assert api.util_get_current_model() == tiny
    options = api.get_options()
    assert options["CLIP_stop_at_last_layers"] == 1 and options["samples_format"] == "png"
    api.set_options({"CLIP_stop_at_last_layers": 2})
    result = api.txt2img(prompt="a fox", seed=1, width=64, height=64)
    assert result.info["clip_skip"] == 2 and "Clip skip: 2" in result.info["infotexts"][0]  # the option applies
    api.set_options({"CLIP_stop_at_last_layers": 1})
    refused = api.set_options({"sd_model_checkpoint": "no such model"})  # webuiapi returns the 422's body
    assert refused["detail"][0]["loc"] == ["body", "sd_model_checkpoint"]
    assert api.util_get_current_model() == tiny


def test_progress_and_interrupt(locked):
    api = client(locked, username="script", password="pw")
    assert api.get_progress()["state"]["job_count"] == 0
    done = {}

    def generate():
        done["result"] = api.txt2img(prompt="a slow fox", seed=1, steps=SLOW["steps"], width=SLOW["width"],
                                     height=SLOW["height"])

    thread = threading.Thread(target=generate, daemon=True)
    thread.start()
    assert wait_for(lambda: api.get_progress()["state"]["sampling_step"] > 0, timeout=60)
    progress = api.get_progress()
    assert 0 < progress["progress"] < 1 and progress["state"]["sampling_steps"] == SLOW["steps"]
    assert api.interrupt() == {}
    thread.join(60)
    assert done["result"].images == []
    api.util_wait_for_ready(check_interval=0.1)  # idle again: progress 0 and job_count 0


def test_poor_mans_outpainting_extends_the_canvas_and_keeps_the_input(gateway):
    api, source = client(gateway), pil(png((64, 64), seed=6))
    result = api.img2img(images=[source], prompt="more of it", seed=3, denoising_strength=0.8,
                         script_name="Poor man's outpainting", script_args=[16, 4, 1, ["left", "down"]])
    assert result.image.size == (80, 80)  # the request's width and height (A1111's 512) are not used
    out = np.asarray(result.image.convert("RGB"))
    assert np.array_equal(out[:64, 16:], np.asarray(source.convert("RGB")))
    assert "Outpaint: left 16 right 0 up 0 down 16 fill edge" in result.info["infotexts"][0]
    assert "Mask blur: 8" in result.info["infotexts"][0]  # the script's blur, doubled as A1111 does
    with pytest.raises(RuntimeError, match="multiple of 8"):
        api.img2img(images=[source], prompt="x", script_name="Poor man's outpainting", script_args=[12])
    with pytest.raises(RuntimeError, match="outpainting direction"):
        api.img2img(images=[source], prompt="x", script_name="Poor man's outpainting", script_args=[8, 4, 0, []])
