"""The tabs' Advanced settings follow GetInfo: the clip skip slider's range is the model's, the size
sliders show the service's limit (the box clamps a larger typed value to it); set when the page is built
and again on every page load."""

from __future__ import annotations

import gradio as gr

from gateway_ui.tabs import TABS, build_tab
from imagegen.v1.contract import MAX_CLIP_SKIP, placeholder_info


def updates_by_slider(tab, info) -> dict:
    return dict(zip(map(id, tab.controls.ranged), tab.controls.updates(info)))


def test_the_clip_skip_slider_follows_get_info_s_max_clip_skip():
    spec = TABS[0]
    info = placeholder_info(spec.contract.name)
    assert info.max_clip_skip == MAX_CLIP_SKIP  # an unreachable service: the contract's bound
    info.max_clip_skip = 2
    with gr.Blocks():
        with gr.Tabs():
            tab, _button = build_tab(spec, info, [])
    slider = tab.controls.fields["clip_skip"]
    assert slider.maximum == 2
    info.max_clip_skip = 12  # the service now runs a model with a 12-layer text encoder
    assert updates_by_slider(tab, info)[id(slider)]["maximum"] == 12


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
    update = updates_by_slider(tab, info)[id(width)]
    assert update["maximum"] == 1024 and "up to 1024 px" in update["info"]
