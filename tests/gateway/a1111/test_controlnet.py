"""sd-webui-controlnet's API on the gateway, driven by webuiapi (ControlNetUnit, controlnet_detect) and
plain HTTP, against the session's real services."""

from __future__ import annotations

import io

import numpy as np
import pytest
import requests
import webuiapi
from PIL import Image

from gateway_ui.control_catalog import model_title
from tests.conftest import png

from .conftest import SMALL
from .test_webuiapi import client


def test_version_settings_and_lists(gateway, services):
    api = client(gateway)
    assert api.controlnet_version() == 2
    modules = api.controlnet_module_list()
    assert modules[0] == "none"
    # Whatever the services list (none until a --controlnet-dir is given), as "name [hash]".
    info = services["txt2img"].client.info()
    assert api.controlnet_model_list() == [model_title(cn) for cn in info.controlnets]
    root = gateway.url + "controlnet"
    settings = requests.get(f"{root}/settings", timeout=30).json()
    assert settings == {"control_net_unit_count": info.limits.max_control_units}
    detail = requests.get(f"{root}/module_list", params={"alias_names": "true"}, timeout=30).json()
    assert set(detail["module_detail"]) == set(detail["module_list"]) and detail["module_detail"]["none"] == {
        "model_free": False, "sliders": []}
    types = requests.get(f"{root}/control_types", timeout=30).json()["control_types"]
    assert types["All"]["module_list"] == modules and types["All"]["default_option"] == "none"


def test_detect_with_module_none_gives_the_image_back(gateway):
    source = Image.open(io.BytesIO(png((48, 40), seed=5)))
    result = client(gateway).controlnet_detect([source], module="none")  # sends `controlnet_images`
    (detected,) = result.images
    assert detected.size == (48, 40)
    assert np.array_equal(np.asarray(detected.convert("RGB")), np.asarray(source.convert("RGB")))
    assert result.info == "Success"
    # The extension's own key too
    answer = requests.post(gateway.url + "controlnet/detect", timeout=60, json={
        "controlnet_module": "none", "controlnet_input_images": [webuiapi.raw_b64_img(source)]})
    assert answer.status_code == 200 and len(answer.json()["images"]) == 1


def test_detect_refuses_an_unknown_module_and_no_image(gateway):
    url = gateway.url + "controlnet/detect"
    image = webuiapi.raw_b64_img(Image.open(io.BytesIO(png())))
    answer = requests.post(url, json={"controlnet_module": "depth_leres", "controlnet_images": [image]}, timeout=60)
    assert answer.status_code == 422 and answer.json()["detail"] == "Module not available"
    answer = requests.post(url, json={"controlnet_module": "none", "controlnet_images": []}, timeout=60)
    assert answer.status_code == 422 and answer.json()["detail"] == "No image selected"
    answer = requests.post(url, json={"controlnet_module": "none", "controlnet_images": ["bm90IGFuIGltYWdl"]},
                           timeout=60)
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["body", "controlnet_images", "0"]


def unit(**overrides) -> webuiapi.ControlNetUnit:
    return webuiapi.ControlNetUnit(image=Image.open(io.BytesIO(png(seed=2))), **overrides)


@pytest.mark.parametrize("bad, field, says", [
    ({"model": "no-such-controlnet"}, "model", "model(no-such-controlnet) not found"),
    ({"model": "None"}, "model", "a ControlNet model"),
])
def test_a_bad_unit_from_webuiapi_is_a_422_naming_its_field(gateway, bad, field, says):
    with pytest.raises(RuntimeError) as caught:
        client(gateway).txt2img(prompt="a fox", seed=1, width=64, height=64, alwayson_scripts={},
                                controlnet_units=[unit(enabled=False, model="whatever"), unit(**bad)])
    status, text = caught.value.args
    assert status == 422
    detail = requests.models.complexjson.loads(text)["detail"][0]
    assert detail["loc"] == ["body", "alwayson_scripts", "ControlNet", "args", 1, field]  # webuiapi's key
    assert says in detail["msg"]


@pytest.mark.parametrize("bad, field", [
    ({"weight": 3}, "weight"), ({"guidance_start": 0.9, "guidance_end": 0.1}, "guidance_start"),
    ({"control_mode": "Prompt first"}, "control_mode"), ({"resize_mode": "Stretch"}, "resize_mode"),
])
def test_the_gateway_checks_a_units_fields(api, bad, field):
    # A model the service lists is not needed: these are checked before the model is looked up.
    body = {**SMALL, "prompt": "a fox", "alwayson_scripts": {"controlnet": {"args": [{"model": "x", **bad}]}}}
    answer = requests.post(f"{api}/txt2img", json=body, timeout=120)
    assert answer.status_code == 422
    (detail,) = answer.json()["detail"]
    assert detail["loc"] == ["body", "alwayson_scripts", "controlnet", "args", 0, field]


def test_disabled_units_and_empty_args_generate_as_without(gateway):
    api = client(gateway)
    # alwayson_scripts given each time: webuiapi's default is one dict shared by every call, and it puts the
    # units there, so a call without units would send the last call's.
    plain = api.txt2img(prompt="a fox", seed=3, width=64, height=64, alwayson_scripts={})
    skipped = api.txt2img(prompt="a fox", seed=3, width=64, height=64, alwayson_scripts={},
                          controlnet_units=[unit(enabled=False, model="no-such-controlnet")])
    assert np.array_equal(np.asarray(plain.image), np.asarray(skipped.image))
    assert "ControlNet" not in skipped.info["infotexts"][0]
