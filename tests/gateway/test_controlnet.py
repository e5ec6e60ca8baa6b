"""The tabs' ControlNet section through the real gateway and services: its inputs come after every earlier
one in each tab's API, an enabled unit reaches the request (or says what is missing), 💥's detection runs the
Preprocess RPC, and PNG Info shows the units an infotext records."""

from __future__ import annotations


import numpy as np
import pytest
from gradio_client import handle_file
from gradio_client.exceptions import AppError
from PIL import Image, PngImagePlugin

from gateway_ui.backend import ModeBackend
from gateway_ui.controlnet import UNIT_FIELDS, detect, unit_count
from tests.conftest import png
from tests.gateway.test_page_controls import PAGE_INPUTS

UNIT = ('ControlNet 0: "Module: canny, Model: edges [abcdef0123], Weight: 0.6, Resize Mode: Just Resize, '
        'Processor Res: 256, Threshold A: 50.0, Threshold B: 150.0, Guidance Start: 0.2, Guidance End: 0.8, '
        'Pixel Perfect: False, Control Mode: My prompt is more important"')


def test_each_tabs_controlnet_inputs_come_after_every_earlier_input_in_its_api(gateway, services):
    api = gateway.client().view_api(print_info=False, return_format="dict")
    for mode in ("txt2img", "img2img", "inpaint"):
        names = [p["parameter_name"] for p in api["named_endpoints"][f"/{mode}"]["parameters"]]
        # Only the page's own group (#23) came later.
        assert names[-len(PAGE_INPUTS[mode]):] == PAGE_INPUTS[mode]
        names = names[:-len(PAGE_INPUTS[mode])]
        count = unit_count(services[mode].client.info())
        expected = [f"controlnet_{i}_{name}" for i in range(count) for name in UNIT_FIELDS]
        assert names[-len(expected):] == expected
        # After every input of before: the styles, then outpainting's and the hires fix's groups (#25).
        before = {"txt2img": "hires_negative_prompt", "img2img": "styles", "inpaint": "outpaint_fill"}[mode]
        assert names[-len(expected) - 1] == before


def test_an_enabled_unit_says_what_it_lacks_and_a_disabled_one_changes_nothing(gateway, tmp_path):
    client = gateway.client()
    with pytest.raises(AppError, match="ControlNet Unit 1: choose a model"):
        client.predict(prompt="a fox", seed=4, controlnet_1_enabled=True, api_name="/txt2img")
    with pytest.raises(AppError, match="ControlNet Unit 0: upload a control image"):
        client.predict(prompt="a fox", seed=4, controlnet_0_enabled=True, controlnet_0_model="edges",
                       api_name="/txt2img")
    with pytest.raises(AppError, match="starting control step \\(0.9\\) must be below the ending one \\(0.1\\)"):
        path = tmp_path / "c.png"
        path.write_bytes(png())
        client.predict(prompt="a fox", seed=4, controlnet_0_enabled=True, controlnet_0_model="edges",
                       controlnet_0_image=handle_file(str(path)), controlnet_0_guidance_start=0.9,
                       controlnet_0_guidance_end=0.1, api_name="/txt2img")
    _g, seeds, infotext = client.predict(prompt="a fox", seed=4, controlnet_0_model="edges", api_name="/txt2img")
    assert seeds == "4" and "ControlNet" not in infotext


def test_the_preview_shows_the_detected_map_from_the_service(services, tmp_path):
    backend = ModeBackend("img2img", services["img2img"].address)
    try:
        path = tmp_path / "in.png"
        path.write_bytes(png((40, 32), seed=9))
        shown = detect(backend, str(path), "none", 512, 100, 200)
        assert shown.size == (40, 32)
        assert np.array_equal(np.asarray(shown.convert("RGB")), np.asarray(Image.open(path).convert("RGB")))
        # No control image: the tab's input image (img2img's path, the Inpainting editor's background)
        assert detect(backend, None, "none", 512, 100, 200, str(path)).size == (40, 32)
        assert detect(backend, None, "none", 512, 100, 200, {"background": Image.open(path)}).size == (40, 32)
    finally:
        backend.close()


def test_png_info_shows_the_controlnet_units(gateway, tmp_path):
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", f"a fox\nSteps: 20, Sampler: Euler, CFG scale: 7, Seed: 1, Size: 64x64, {UNIT}")
    path = tmp_path / "cn.png"
    Image.new("RGB", (64, 64)).save(path, pnginfo=info)
    _text, fields = gateway.client().predict(handle_file(str(path)), api_name="/png_info")
    unit = fields["controlnet"]["unit 0"]
    assert (unit["module"], unit["model"], unit["model_hash"], unit["weight"], unit["control_mode"]) == (
        "canny", "edges", "abcdef0123", 0.6, "My prompt is more important")
    assert (unit["processor_res"], unit["threshold_a"], unit["guidance_end"]) == (256, 50.0, 0.8)
    assert "ControlNet 0" not in fields.get("other", {})
