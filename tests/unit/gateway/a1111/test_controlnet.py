"""sd-webui-controlnet's units as the A1111 API takes them: its labels, legacy integers and aliases, its
defaults, disabled units skipped, and every bad field a 422 naming it."""

from __future__ import annotations

import base64

import pytest

from gateway_ui.a1111.controlnet import control_types, field_namer, module_lists, read_units
from gateway_ui.a1111.errors import ApiError
from gateway_ui.a1111.models import Txt2ImgRequest
from imagegen.v1 import imagegen_pb2 as pb

IMAGE = base64.b64encode(b"\x89PNG not decoded here").decode()
CANNY = pb.PreprocessorInfo(name="canny", params=[
    pb.PreprocessorParam(field="processor_res", label="Preprocessor Resolution", default_value=512, min=64, max=2048,
                         step=1),
    pb.PreprocessorParam(field="threshold_a", label="Canny Low Threshold", default_value=100, min=1, max=255, step=1),
    pb.PreprocessorParam(field="threshold_b", label="Canny High Threshold", default_value=200, min=1, max=255, step=1)])
TILE = pb.PreprocessorInfo(name="tile_resample", params=[
    pb.PreprocessorParam(field="threshold_a", label="Down Sampling Rate", default_value=1, min=1, max=8, step=0.01)])
INFO = pb.ServiceInfo(mode="txt2img", limits=pb.Limits(max_control_units=3),
                      controlnets=[pb.ControlNetInfo(name="edges", family="sd1", hash="0123abcd")],
                      preprocessors=[pb.PreprocessorInfo(name="none"), CANNY, TILE,
                                     pb.PreprocessorInfo(name="invert")])


def units(*args, info=INFO):
    return read_units(Txt2ImgRequest(alwayson_scripts={"controlnet": {"args": list(args)}}), info)


def refused(unit: dict) -> tuple[list, str]:
    with pytest.raises(ApiError) as caught:
        units(unit)
    assert caught.value.status == 422
    (detail,) = caught.value.detail
    return detail["loc"], detail["msg"]


def test_a_webuiapi_unit_becomes_a_control_unit():
    # webuiapi's ControlNetUnit.to_dict(), as it sends it
    sent = {"image": IMAGE, "mask": None, "module": "canny", "model": "edges [0123abcd]", "weight": 0.7,
            "resize_mode": "Resize and Fill", "low_vram": False, "processor_res": 512, "threshold_a": 64,
            "threshold_b": 64, "guidance_start": 0.1, "guidance_end": 0.9, "control_mode": "My prompt is more important",
            "pixel_perfect": True, "hr_option": "Both", "enabled": True}
    (unit,), places = units(sent)
    assert places == ["alwayson_scripts.controlnet.args.0"]
    assert (unit.model, unit.preprocessor, unit.image.data) == ("edges", "canny", base64.b64decode(IMAGE))
    assert (unit.processor_res, unit.threshold_a, unit.threshold_b) == (512, 64, 64)
    assert unit.weight == pytest.approx(0.7) and unit.guidance_start == pytest.approx(0.1)
    assert (unit.resize_mode, unit.control_mode, unit.pixel_perfect) == (pb.FIT_MODE_FILL, pb.CONTROL_MODE_PROMPT, True)


def test_the_extensions_defaults_legacy_names_and_values():
    (unit,), _ = units({"input_image": {"image": IMAGE, "mask": None}, "model": "edges", "guidance": 0.5,
                        "resize_mode": 0, "control_mode": 2, "module": "invert (from white bg & black line)"})
    assert (unit.image.data, unit.guidance_end, unit.guidance_start) == (base64.b64decode(IMAGE), 0.5, 0)
    assert (unit.resize_mode, unit.control_mode, unit.preprocessor) == (pb.FIT_MODE_RESIZE, pb.CONTROL_MODE_CONTROLNET,
                                                                        "invert")
    (unit,), _ = units({"model": "renamed [0123ABCD]", "resize_mode": "Inner Fit (Scale to Fit)"})  # by hash
    assert (unit.model, unit.resize_mode, unit.preprocessor, unit.weight) == ("edges", pb.FIT_MODE_CROP, "none", 1.0)
    assert not unit.HasField("image")  # img2img: the init image, as the extension does


def test_parameters_the_extension_would_reset_are_left_to_the_default():
    # "none" has no parameters; -1 and values off the slider are the preprocessor's default
    (plain, tile), _ = units({"model": "edges", "processor_res": 512, "threshold_a": 64},
                             {"model": "edges", "module": "tile_resample", "threshold_a": 40, "threshold_b": 3})
    assert not any(plain.HasField(f) for f in ("processor_res", "threshold_a", "threshold_b"))
    assert not any(tile.HasField(f) for f in ("processor_res", "threshold_a", "threshold_b"))
    (canny,), _ = units({"model": "edges", "module": "canny", "processor_res": -1, "threshold_a": 50})
    assert not canny.HasField("processor_res") and canny.threshold_a == 50


def test_disabled_units_are_skipped_and_errors_name_the_unit_in_the_args():
    found, places = units({"enabled": False, "model": "missing"}, {"model": "edges", "weight": 2})
    assert places == ["alwayson_scripts.controlnet.args.1"] and found[0].weight == 2
    name = field_namer(places)
    assert name("params.control[0].weight") == "alwayson_scripts.controlnet.args.1.weight"
    assert name("params.width") == "width"


@pytest.mark.parametrize("unit, field, says", [
    ({"model": "missing"}, "model", "model(missing) not found; the txt2img's service has: edges [0123abcd]"),
    ({"model": "None"}, "model", "a ControlNet model"),
    ({"model": "edges", "module": "depth_leres"}, "module", "not found in supported modules"),
    ({"model": "edges", "weight": 2.5}, "weight", "must be 0..2, got 2.5"),
    ({"model": "edges", "weight": "strong"}, "weight", "a number"),
    ({"model": "edges", "guidance_start": 0.8, "guidance_end": 0.2}, "guidance_start", "must be below guidance_end"),
    ({"model": "edges", "guidance_end": 1.5}, "guidance_end", "must be 0..1"),
    ({"model": "edges", "control_mode": "Prompt first"}, "control_mode", "is not one of 'Balanced'"),
    ({"model": "edges", "control_mode": 3}, "control_mode", "is not one of"),
    ({"model": "edges", "resize_mode": "Stretch"}, "resize_mode", "'Crop and Resize'"),
    ({"model": "edges", "image": "not base64!"}, "image", "not valid base64"),
    ({"model": "edges", "image": {"image": IMAGE, "mask": IMAGE}}, "image.mask", "not supported"),
    ({"model": "edges", "pixel_perfect": "yes"}, "pixel_perfect", "true or false"),
    ({"model": "edges", "input_image": IMAGE, "image": IMAGE}, "input_image", "not both"),
])
def test_a_bad_unit_is_a_422_naming_its_field(unit, field, says):
    loc, msg = refused(unit)
    assert loc == ["body", "alwayson_scripts", "controlnet", "args", 0, *field.split(".")]
    assert says in msg


def test_no_model_listed_says_how_to_add_one_and_too_many_units_are_refused():
    with pytest.raises(ApiError) as caught:
        units({"model": "edges"}, info=pb.ServiceInfo(mode="txt2img"))
    assert "--controlnet-dir DIR" in caught.value.detail[0]["msg"]
    with pytest.raises(ApiError) as caught:
        units(*[{"model": "edges"}] * 4)
    assert caught.value.detail[0]["loc"] == ["body", "alwayson_scripts", "controlnet", "args"]


def test_module_list_with_aliases_and_sliders_and_control_types():
    plain = module_lists([INFO], alias_names=False)
    assert plain["module_list"] == ["none", "canny", "tile_resample", "invert"]
    assert plain["module_detail"]["canny"]["sliders"][1] == {
        "name": "Canny Low Threshold", "value": 100, "min": 1, "max": 255, "step": 1}
    assert plain["module_detail"]["tile_resample"]["sliders"][0] is None  # no resolution, a threshold a
    aliased = module_lists([INFO], alias_names=True)
    assert "invert (from white bg & black line)" in aliased["module_list"]
    assert "invert (from white bg & black line)" in aliased["module_detail"]
    types = control_types([INFO])["control_types"]
    assert types["Canny"] == {"module_list": ["none", "canny"], "model_list": ["None"], "default_option": "canny",
                              "default_model": "None"}
    assert types["All"]["module_list"] == plain["module_list"]
