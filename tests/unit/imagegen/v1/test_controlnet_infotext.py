"""ControlNet units in infotext: written as sd-webui-controlnet writes them, read back the same, and the
extension's own texts (older versions' extra keys, -1 for unused sliders) read."""

from __future__ import annotations

import pytest

from imagegen.v1.infotext import (ControlNetEntry, controlnet_index, controlnet_infotext, format_infotext,
                                  parse_controlnet, split_infotext)

CANNY = ControlNetEntry(module="canny", model="control_canny", model_hash="d14c016b", weight=0.5,
                        resize_mode="Just Resize", processor_res=512, threshold_a=100, threshold_b=200,
                        guidance_start=0.1, guidance_end=0.9, pixel_perfect=True,
                        control_mode="My prompt is more important")


def test_written_as_the_extension_writes_it():
    pairs = controlnet_infotext([CANNY, ControlNetEntry(model="depth")])
    assert pairs == {
        "ControlNet 0": "Module: canny, Model: control_canny [d14c016b], Weight: 0.5, Resize Mode: Just Resize, "
                        "Processor Res: 512, Threshold A: 100.0, Threshold B: 200.0, Guidance Start: 0.1, "
                        "Guidance End: 0.9, Pixel Perfect: True, Control Mode: My prompt is more important",
        # a preprocessor without parameters: none written (the extension's -1 left out)
        "ControlNet 1": "Module: none, Model: depth, Weight: 1.0, Resize Mode: Crop and Resize, Guidance Start: 0.0, "
                        "Guidance End: 1.0, Pixel Perfect: False, Control Mode: Balanced",
    }


def test_round_trip_through_the_whole_infotext():
    units = [CANNY, ControlNetEntry(module="none", model="depth", control_mode="ControlNet is more important")]
    text = format_infotext("a fox", "", {"Steps": 20, "Seed": 7, "Size": "64x64", **controlnet_infotext(units)})
    assert 'ControlNet 0: "Module: canny, ' in text  # quoted as a whole: it holds commas and colons
    _, _, pairs = split_infotext(text)
    assert [parse_controlnet(pairs[f"ControlNet {i}"]) for i in range(2)] == units


def test_reads_the_extensions_text_with_its_older_keys_and_unused_sliders():
    text = ("Module: canny, Model: control_v11p_sd15_canny [d14c016b], Weight: 1, Resize Mode: Crop and Resize, "
            "Low Vram: False, Processor Res: 512, Threshold A: 100, Threshold B: -1, Guidance Start: 0, "
            "Guidance End: 1, Pixel Perfect: False, Control Mode: Balanced, Save Detected Map: True, Hr Option: Both")
    unit = parse_controlnet(text)
    assert (unit.model, unit.model_hash, unit.threshold_a, unit.threshold_b) == (
        "control_v11p_sd15_canny", "d14c016b", 100.0, None)
    assert parse_controlnet("Module: none, Model: None, Weight: 1").model == ""  # the extension's "no model"


@pytest.mark.parametrize("text, says", [
    ("Module: canny, Weight: heavy", "Weight 'heavy' is not a number"),
    ("Module: canny, Pixel Perfect: yes", "Pixel Perfect 'yes' is not True or False"),
    ("Module: canny, Colour: red", "unknown key 'Colour'"),
    ("canny", "not sd-webui-controlnet's"),
])
def test_a_broken_unit_says_what(text, says):
    with pytest.raises(ValueError, match=says):
        parse_controlnet(text)


def test_reads_the_extensions_older_form():
    # before 1.1.4xx, a lone unit's key was "ControlNet"
    _, _, pairs = split_infotext('x\nSteps: 20, Seed: 1, Size: 64x64, ControlNet: "preprocessor: canny, model: '
                                 'control_canny [e3fe7712], weight: 0.8, starting/ending: (0.1, 0.9), resize mode: '
                                 'ResizeMode.OUTER_FIT, pixel perfect: True, control mode: ControlMode.PROMPT, '
                                 'preprocessor params: (512, 100, -1)"')
    assert controlnet_index("ControlNet") == 0 and controlnet_index("ControlNet 2") == 2
    assert controlnet_index("ControlNetX") is None
    assert parse_controlnet(pairs["ControlNet"]) == ControlNetEntry(
        module="canny", model="control_canny", model_hash="e3fe7712", weight=0.8, resize_mode="Resize and Fill",
        processor_res=512, threshold_a=100, guidance_start=0.1, guidance_end=0.9, pixel_perfect=True,
        control_mode="My prompt is more important")
    with pytest.raises(ValueError, match="starting/ending '\\(0\\)' is not 2 numbers"):
        parse_controlnet("preprocessor: none, starting/ending: (0)")
