"""The extra-networks cards: A1111's tag toggling as pure functions, and each tab's panel built from its
service's GetInfo, outside the API inputs."""

from __future__ import annotations

import gradio as gr
import pytest

from gateway_ui import networks
from gateway_ui.networks import embedding_text, toggle_embedding, toggle_lora, weight_text
from gateway_ui.tabs import TABS, build_tab
from imagegen.v1 import imagegen_pb2 as pb
from imagegen.v1.contract import placeholder_info


def test_a_lora_card_adds_its_tag_at_the_slider_s_weight():
    assert toggle_lora("a fox, ", "film grain") == "a fox, <lora:film grain:1>"  # A1111's default multiplier
    assert toggle_lora("", "film") == toggle_lora(None, "film") == "<lora:film:1>"
    assert toggle_lora("a fox", "film", 0.6) == "a fox <lora:film:0.6>"
    assert toggle_lora("a fox <lora:grain:1>", "film", -1.5) == "a fox <lora:grain:1> <lora:film:-1.5>"


def test_clicking_again_takes_the_tag_out_and_a_moved_slider_sets_its_weight():
    assert toggle_lora("a fox <lora:film:0.6>", "film", 0.6) == "a fox"
    assert toggle_lora("<lora:film:1> a fox", "film") == "a fox"
    assert toggle_lora("a <lora:film:1> fox", "film", 1.0) == "a fox"
    assert toggle_lora("a fox <lora:film>", "film") == "a fox"  # no weight: 1
    assert toggle_lora("<lora:film:1> <lora:film:1>  a fox", "film") == "a fox"  # every tag of that name
    assert toggle_lora("a fox <lora:film:0.6>, sharp", "film", 0.8) == "a fox <lora:film:0.8>, sharp"
    assert toggle_lora("a fox <lora:film:0.6>", "film", 1) == "a fox <lora:film:1>"
    assert toggle_lora("a fox <lora:film:oops>", "film", 1) == "a fox <lora:film:1>"  # a broken weight: set
    # Another LoRA's tag, or one whose name merely starts the same, is left as it is.
    assert toggle_lora("a <lora:film2:1> fox <lora:film:1>", "film") == "a <lora:film2:1> fox"


def test_weights_are_written_as_a1111_s_cards_write_them():
    assert [weight_text(w) for w in (1.0, 0.5, -1.25, 0.15000000000000002, -0.0, 4)] == [
        "1", "0.5", "-1.25", "0.15", "0", "4"]


def test_an_embedding_card_writes_its_name_or_a1111_s_attention_form_and_toggles():
    assert embedding_text("easynegative") == "easynegative"
    assert embedding_text("easynegative", 1.2) == "(easynegative:1.2)"
    assert toggle_embedding("blurry", "easynegative") == "blurry easynegative"
    assert toggle_embedding("blurry, ", "easynegative", 0.8) == "blurry, (easynegative:0.8)"
    assert toggle_embedding("blurry easynegative", "easynegative") == "blurry"
    assert toggle_embedding("blurry (easynegative:0.8)", "easynegative", 0.8) == "blurry"
    assert toggle_embedding("blurry easynegative", "easynegative", 0.8) == "blurry (easynegative:0.8)"
    assert toggle_embedding("blurry (easynegative:0.8)", "easynegative", 1) == "blurry easynegative"
    # A word that only contains the name is not the embedding.
    assert toggle_embedding("easynegative-v2", "easynegative") == "easynegative-v2 easynegative"


def info_with(mode: str, loras=(), embeddings=()) -> pb.ServiceInfo:
    info = placeholder_info(mode)
    info.loras.extend(loras)
    info.embeddings.extend(embeddings)
    return info


def build_all(make_info) -> dict:
    image_modes = [spec.contract for spec in TABS if spec.contract.takes_image]
    built = {}
    with gr.Blocks():
        with gr.Tabs():
            for spec in TABS:
                built[spec.contract.name], _button = build_tab(spec, make_info(spec.contract.name), image_modes)
    return built


def test_each_tab_shows_its_service_s_networks_outside_the_api_inputs():
    tabs = build_all(lambda mode: info_with(mode, ["film", f"{mode}-only"], [
        pb.EmbeddingInfo(name="tiny-xl-embedding"), pb.EmbeddingInfo(name="tiny-embedding", loaded=True)]))
    for mode, tab in tabs.items():
        nets = tab.networks
        assert nets.loras.samples == [["film"], [f"{mode}-only"]] and nets.loras.visible
        # The default model's own first; another family's said so.
        assert nets.embeddings.samples == [["tiny-embedding"], ["tiny-xl-embedding"]]
        assert nets.embeddings.sample_labels == ["tiny-embedding", "tiny-xl-embedding (not for the default model)"]
        assert (nets.lora_weight.minimum, nets.lora_weight.maximum, nets.lora_weight.value) == (-4, 4, 1)
        inputs = set(tab.inputs.values())
        assert not inputs & {nets.loras, nets.lora_weight, nets.embeddings, nets.embedding_weight,
                             nets.embedding_target}  # the prompt's tags are what is sent


def test_an_empty_list_says_how_to_add_some():
    tab = build_all(info_with)["txt2img"]
    assert not tab.networks.loras.visible and not tab.networks.embeddings.visible
    assert "--lora-dir DIR" in tab.networks.lora_note.value
    assert "--embeddings-dir DIR" in tab.networks.embedding_note.value


@pytest.mark.parametrize("loras", [[], ["film"]])
def test_a_refresh_updates_the_cards_and_their_notes(loras):
    cards, note, embeddings, embedding_note = networks.Networks.updates(info_with("txt2img", loras))
    assert cards["samples"] == [[name] for name in loras] and cards["visible"] == bool(loras)
    assert note["value"] == (networks.LORA_HINT if loras else networks.NO_LORAS)
    assert embeddings["samples"] == [] and not embeddings["visible"]
    assert embedding_note["value"] == networks.NO_EMBEDDINGS
