"""The tabs' Advanced settings follow GetInfo: the clip skip slider's range is the model's, set when the
page is built and again on every page load."""

from __future__ import annotations

import gradio as gr

from gateway_ui.tabs import TABS, build_tab
from imagegen.v1.contract import MAX_CLIP_SKIP, placeholder_info


def test_the_clip_skip_slider_follows_get_info_s_max_clip_skip():
    spec = TABS[0]
    info = placeholder_info(spec.contract.name)
    assert info.max_clip_skip == MAX_CLIP_SKIP  # an unreachable service: the contract's bound
    info.max_clip_skip = 2
    with gr.Blocks():
        tab, _button = build_tab(spec, info, [])
    slider = tab.controls.fields["clip_skip"]
    assert slider.maximum == 2
    info.max_clip_skip = 12  # the service now runs a model with a 12-layer text encoder
    updates = dict(zip(map(id, tab.controls.ranged), tab.controls.updates(info)))
    assert updates[id(slider)]["maximum"] == 12
