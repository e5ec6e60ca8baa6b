"""A tab's ControlNet values -> the request's units, and a send's updates from recorded units."""

from __future__ import annotations

import gradio as gr
import pytest

from gateway_ui.controlnet import add_units, api_name, build_controlnet, recall_targets, recall_updates, unit_of
from gateway_ui.masks import InputError
from imagegen.v1 import imagegen_pb2 as pb
from imagegen.v1.contract import placeholder_info
from services.client import make_request
from services.client.infotext import parse_parameters

INFO = pb.ServiceInfo(mode="img2img", limits=pb.Limits(max_control_units=2),
                      controlnets=[pb.ControlNetInfo(name="edges", hash="abcdef0123")],
                      preprocessors=[pb.PreprocessorInfo(name="none"), pb.PreprocessorInfo(name="canny", params=[
                          pb.PreprocessorParam(field="threshold_a", label="Canny Low Threshold", default_value=100,
                                               min=1, max=255, step=1)])])


def values(i: int = 0, **fields) -> dict:
    return {api_name(i, name): value for name, value in fields.items()}


def test_an_enabled_unit_becomes_the_requests_unit_and_others_are_left_out():
    request = make_request("img2img", "x", image=b"png")
    add_units(request, {**values(0, enabled=False, model="edges"),
                        **values(1, enabled=True, model="edges", preprocessor="canny", threshold_a=50, weight=1.5,
                                 guidance_start=0.25, guidance_end=0.75, control_mode="ControlNet is more important",
                                 resize_mode="Resize and Fill", pixel_perfect=True)}, takes_image=True, count=2)
    (unit,) = request.params.control
    assert (unit.model, unit.preprocessor, unit.threshold_a, unit.weight) == ("edges", "canny", 50, 1.5)
    assert (unit.guidance_start, unit.guidance_end, unit.pixel_perfect) == (0.25, 0.75, True)
    assert (unit.control_mode, unit.resize_mode) == (pb.CONTROL_MODE_CONTROLNET, pb.FIT_MODE_FILL)
    assert not unit.HasField("image")  # img2img: the input image


@pytest.mark.parametrize("fields, takes_image, says", [
    ({"enabled": True}, True, "ControlNet Unit 0: choose a model"),
    ({"enabled": True, "model": "edges"}, False, "upload a control image"),
    ({"enabled": True, "model": "edges", "weight": "lots"}, True, "weight must be a number"),
    ({"enabled": True, "model": "edges", "control_mode": "Prompt first"}, True, "unknown control mode"),
])
def test_what_a_unit_lacks_is_said(fields, takes_image, says):
    with pytest.raises(InputError, match=says):
        unit_of(values(**fields), 0, takes_image)


def test_a_send_restores_recorded_units_and_warns_about_the_image():
    with gr.Blocks():
        section = build_controlnet("img2img", INFO, True, lambda component, _what: component)
    assert len(section.units) == 2 and len(recall_targets(section)) == 2 * 12
    params = parse_parameters('x\nSteps: 4, Sampler: Euler, CFG scale: 7, Seed: 1, Size: 64x64, ControlNet 0: '
                              '"Module: canny, Model: renamed [ABCDEF0123], Weight: 0.5, Threshold A: 60, '
                              'Control Mode: Balanced"')
    updates, warnings = recall_updates(section, params, INFO)
    first = dict(zip(("enabled", "preprocessor", "processor_res", "threshold_a", "threshold_b", "model", "weight"),
                     updates[:7]))
    assert first["enabled"]["value"] is True and first["preprocessor"]["value"] == "canny"
    assert first["model"]["value"] == "edges"  # by its hash
    assert first["threshold_a"] == {**first["threshold_a"], "value": 60.0, "visible": True,
                                    "label": "Canny Low Threshold"}
    assert first["processor_res"]["visible"] is False  # canny here has no resolution
    assert updates[12]["value"] is False  # unit 1: not recorded, disabled
    assert warnings == ["ControlNet Unit 0: its control image is not in the PNG: upload it"]
    assert placeholder_info("txt2img").limits.max_control_units == 3  # a tab shows 3 units while unreachable
