"""The tabs' size sliders show the service's limit (the box clamps a larger typed value to it)."""

from __future__ import annotations

import gradio as gr

from gateway_ui.tabs import TABS, build_tab
from imagegen.v1.contract import placeholder_info


def test_the_size_sliders_show_the_service_s_limit_and_follow_it():
    spec = TABS[0]
    info = placeholder_info(spec.contract.name)
    info.limits.max_width, info.limits.max_height = 2048, 1536
    with gr.Blocks():
        with gr.Tabs():
            tab, _button = build_tab(spec, info, [])
    width, height = tab.controls.fields["width"], tab.controls.fields["height"]
    assert width.maximum == 2048 and "up to 2048 px" in width.info
    assert height.maximum == 1536 and "up to 1536 px" in height.info
    info.limits.max_width = 1024
    updates = tab.controls.updates(info)
    assert updates[2]["maximum"] == 1024 and "up to 1024 px" in updates[2]["info"]
