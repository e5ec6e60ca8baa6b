"""Parameters read back from an image fill a tab's fields ("Send to <tab>")."""

from __future__ import annotations

import gradio as gr
import pytest

from gateway_ui.controlnet import recall_targets
from gateway_ui.hires import HIRES_INPUTS
from gateway_ui.recall import FIELDS, targets, updates, values_for
from gateway_ui.tabs import MODEL_DEFAULT, TABS, build_tab
from imagegen.v1.contract import placeholder_info
from services.client.infotext import RECALLABLE, parse_parameters

A1111 = ("a castle\nNegative prompt: lowres\nSteps: 30, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, "
         "Seed: 1234, Size: 512x768, Denoising strength: 0.75, Mask blur: 4, Lora hashes: \"add_detail: 7c6b\"")


@pytest.fixture(scope="module")
def tabs():
    image_modes = [spec.contract for spec in TABS if spec.contract.takes_image]
    with gr.Blocks():
        with gr.Tabs() as row:
            built = {spec.contract.name: build_tab(spec, placeholder_info(spec.contract.name), image_modes)[0]
                     for spec in TABS}
    return built, row


def test_every_recorded_field_the_tab_has_is_filled(tabs):
    built, _row = tabs
    params = parse_parameters(A1111)
    values, warnings = values_for(built["inpaint"], params)
    assert values == {"prompt": "a castle", "negative_prompt": "lowres", "steps": 30, "guidance": 7.0,
                      "width": 512, "height": 768, "seed": 1234, "scheduler": "dpmpp_2m", "schedule_type": "karras",
                      "strength": 0.75, "mask_blur": 4, "invert_mask": False,  # no Mask mode: inpaint masked
                      "only_masked": False}  # no Inpaint area: whole picture
    # A LoRA is sent as its prompt tag; one recorded without a tag has no weight to send.
    assert warnings == ["LoRAs recorded without a <lora:...> tag in the prompt are left out: add_detail"]
    values, warnings = values_for(built["txt2img"], parse_parameters("a castle <lora:add_detail:0.8>\n" +
                                                                     A1111.split("\n", 2)[2]))
    assert values["prompt"] == "a castle <lora:add_detail:0.8>" and warnings == []
    values, _ = values_for(built["img2img"], params)
    assert "mask_blur" not in values and values["strength"] == 0.75
    values, _ = values_for(built["txt2img"], params)
    assert "strength" not in values and values["seed"] == 1234


def test_a1111s_inpaint_area_padding_masked_content_and_resize_mode_fill_the_inpainting_tab(tabs):
    built, _row = tabs
    params = parse_parameters(A1111 + ", Inpaint area: Only masked, Masked area padding: 16, "
                                      "Masked content: latent nothing, Resize mode: Crop and resize")
    values, _warnings = values_for(built["inpaint"], params)
    assert (values["only_masked"], values["only_masked_padding"], values["masked_content"], values["fit"]) == (
        True, 16, "latent nothing", "crop")
    assert values_for(built["img2img"], params)[0]["fit"] == "crop"


def test_an_unknown_sampler_chooses_the_model_default_and_says_so(tabs):
    built, _row = tabs
    params = parse_parameters("x\nSteps: 4, Sampler: DPM++ 2S a, CFG scale: 7, Seed: 1, Size: 64x64")
    values, warnings = values_for(built["txt2img"], params)
    assert values["scheduler"] == MODEL_DEFAULT
    assert warnings == ["unknown sampler 'DPM++ 2S a': the model's default is chosen instead"]


def test_the_schedule_type_and_mask_mode_fill_their_controls(tabs):
    built, _row = tabs
    line = "x\nSteps: 4, Sampler: {}, CFG scale: 7, Seed: 1, Size: 64x64"
    values, warnings = values_for(built["txt2img"], parse_parameters(line.format("Euler, Schedule type: Karras")))
    assert (values["scheduler"], values["schedule_type"], warnings) == ("euler", "karras", [])
    # No Schedule type written: Automatic (""), the sampler's own.
    assert values_for(built["img2img"], parse_parameters(line.format("Euler")))[0]["schedule_type"] == ""
    values, _ = values_for(built["inpaint"], parse_parameters(line.format("Euler") + ", Mask blur: 4, "
                                                                                    "Mask mode: Inpaint not masked"))
    assert values["invert_mask"] is True


def test_a_send_fills_the_fields_then_the_image_then_the_controlnet_units_then_opens_the_tab(tabs):
    built, row = tabs
    units = recall_targets(built["img2img"].controlnet)
    out = targets(built["img2img"], row)
    assert out[-1] is row and out[-1 - len(units):-1] == units
    out = out[:-1 - len(units)]
    assert out[-1] is built["img2img"].image_target and out[-2] is built["img2img"].styles
    assert out[-3] is built["img2img"].model
    txt2img = targets(built["txt2img"], row)[:-1 - len(units)]  # no image to take
    assert txt2img[-1] is built["txt2img"].styles and txt2img[-2] is built["txt2img"].model
    assert txt2img[-3] is built["txt2img"].inputs["hires_negative_prompt"]  # the Hires. fix controls, last
    assert txt2img[txt2img.index(built["txt2img"].inputs["hires"]) - 1] is built["txt2img"].inputs["clip_skip"]


def test_every_tab_field_but_the_images_and_their_number_is_a_recallable_one(tabs):
    built, _row = tabs
    recalled = {field.tab_input for field in RECALLABLE if field.tab_input}
    assert set(FIELDS.values()) == recalled
    named = set()
    for tab in built.values():
        images = {name for name, component in tab.inputs.items() if isinstance(component, (gr.Image, gr.ImageEditor))}
        # The checkpoint is recalled by the recorded hash, then name, among the service's (checkpoints.py);
        # the styles are in the recorded prompts (a send clears the picker); an outpainted image is sent as
        # the extended canvas, so its sides are not sent with it (they would extend it again).
        outpaint = {name for name in tab.inputs if name.startswith("outpaint_")}
        # The Hires. fix controls are filled from the one recallable `hires` (test_hires.py checks each is);
        # ControlNet units are recalled by gateway_ui/controlnet.py (recall_updates).
        second_pass = set(tab.inputs) & set(HIRES_INPUTS)
        fields = (set(tab.inputs) - images - outpaint - second_pass - {"num_images", "batch_count", "model", "styles"}
                  - set(tab.controlnet.fields))
        assert fields <= recalled, f"{tab.mode}: {fields - recalled} is not in services.client.infotext.RECALLABLE"
        named |= fields
    assert named == recalled  # and each recallable input is some tab's


def test_absurd_values_are_left_out_with_a_warning_and_the_rest_fits_the_tab(tabs):
    built, _row = tabs
    text = ("a castle\nSteps: 1000000000, Sampler: Euler a, CFG scale: nan, Seed: 18446744073709551616, "
            "Size: 512x99999, Denoising strength: 1e400, Mask blur: 4, Clip skip: -1")
    values, warnings = values_for(built["inpaint"], parse_parameters(text))
    assert values == {"prompt": "a castle", "negative_prompt": "", "scheduler": "euler_a", "schedule_type": "",
                      "mask_blur": 4, "invert_mask": False, "only_masked": False}
    for key in ("Steps '1000000000'", "CFG scale 'nan'", "Seed '18446744073709551616'", "Size '512x99999'",
                "Denoising strength '1e400'", "Clip skip '-1'"):
        assert any(found.startswith(key) and "is outside" in found for found in warnings), (key, warnings)
    # What is filled lies within each control's range (no "Error" badge on a slider).
    values, _ = values_for(built["inpaint"], parse_parameters(A1111 + ", Clip skip: 2"))
    for name, value in values.items():
        component = built["inpaint"].inputs[name]
        if getattr(component, "maximum", None) is not None:
            assert component.minimum <= value <= component.maximum, (name, value)


def test_a_send_clears_the_picked_styles_the_recorded_prompts_already_hold(tabs):
    built, row = tabs
    tab = built["txt2img"]
    sent = updates(tab, parse_parameters(A1111))
    assert sent[targets(tab, row).index(tab.styles)]["value"] == []
    assert "value" not in updates(tab, None)[targets(tab, row).index(tab.styles)]  # nothing read: left as is
