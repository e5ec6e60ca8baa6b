"""Each tab's LoRA picker: GetInfo's LoRAs, inserting A1111's tag into that tab's prompt; not an API input."""

from __future__ import annotations

import gradio as gr

from gateway_ui.tabs import TABS, add_lora_tag, build_tab
from imagegen.v1.contract import placeholder_info


def test_each_tab_offers_its_service_s_loras_outside_the_api_inputs():
    image_modes = [spec.contract for spec in TABS if spec.contract.takes_image]
    with gr.Blocks():
        with gr.Tabs():
            for spec in TABS:
                info = placeholder_info(spec.contract.name)
                info.loras.extend(["film", f"{spec.contract.name}-only"])
                tab, _button = build_tab(spec, info, image_modes)
                assert [choice[0] for choice in tab.lora_picker.choices] == ["film", f"{spec.contract.name}-only"]
                assert tab.lora_picker not in tab.inputs.values()  # the prompt's tag is what is sent


def test_picking_a_lora_adds_its_tag_to_the_prompt_and_clears_the_picker():
    assert add_lora_tag("a fox, ", "film grain") == ("a fox, <lora:film grain:1>", None)
    assert add_lora_tag("", "film") == ("<lora:film:1>", None)
    assert add_lora_tag(None, "film") == ("<lora:film:1>", None)
    prompt, picker = add_lora_tag("a fox", None)
    assert picker is None and prompt == gr.update()
