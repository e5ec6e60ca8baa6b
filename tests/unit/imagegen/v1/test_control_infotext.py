"""ControlNet units in infotext, in sd-webui-controlnet's own spelling."""

from imagegen.v1.control_infotext import format_unit, unit_key
from imagegen.v1.infotext import format_infotext


def test_a_unit_is_written_as_the_extension_writes_it():
    value = format_unit("canny", "control_canny [0123456789]", 1, "Crop and Resize", 0, 1, False, "Balanced",
                        processor_res=512, threshold_a=100, threshold_b=200)
    assert value == ("Module: canny, Model: control_canny [0123456789], Weight: 1.0, Resize Mode: Crop and Resize, "
                     "Processor Res: 512, Threshold A: 100.0, Threshold B: 200.0, Guidance Start: 0.0, Guidance End: "
                     "1.0, Pixel Perfect: False, Control Mode: Balanced")
    line = format_infotext("a fox", "", {unit_key(0): value}).splitlines()[-1]
    assert line == f'ControlNet 0: "{value}"'


def test_parameters_the_preprocessor_lacks_are_left_out():
    value = format_unit("none", "depth", 0.5, "Just Resize", 0.2, 0.8, True, "My prompt is more important")
    assert "Processor Res" not in value and "Threshold" not in value
    assert value.endswith("Guidance Start: 0.2, Guidance End: 0.8, Pixel Perfect: True, Control Mode: My prompt is "
                          "more important")
