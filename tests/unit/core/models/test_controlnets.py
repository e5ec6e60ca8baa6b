"""ControlNet files by name: what is listed, each one's family from its config or its tensors, hashes once."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
from safetensors.torch import save_file

from services.core.errors import InvalidArgument
from services.core.models import controlnets


def write_folder(root, name, **config):
    folder = root / name
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"_class_name": "ControlNetModel", **config}))
    (folder / "diffusion_pytorch_model.safetensors").write_bytes(b"weights of " + name.encode())
    return folder


def write_single(root, name, width, xl=False):
    """A single file in the original (ldm) layout: a zero conv and a cross-attention of `width`."""
    tensors = {"control_model.zero_convs.0.0.weight": torch.zeros(4, 4, 1, 1),
               "control_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": torch.zeros(8, width)}
    if xl:
        tensors["control_model.label_emb.0.0.weight"] = torch.zeros(8, 4)
    save_file(tensors, str(root / f"{name}.safetensors"))


@pytest.mark.parametrize("config, family", [
    ({"cross_attention_dim": 768}, "sd1"),
    ({"cross_attention_dim": 32}, "sd1"),  # the tiny model's width: SD 1.x, as family.py tells the tiny model
    ({"cross_attention_dim": 1024}, "sd2"),
    ({"cross_attention_dim": 2048, "addition_embed_type": "text_time"}, "sdxl"),
    ({"cross_attention_dim": 80, "addition_embed_type": "text_time"}, "sdxl"),  # tiny-xl's
])
def test_a_folder_s_family_comes_from_its_config(config, family):
    assert controlnets.family_of_config(config) == family


def test_the_folder_lists_controlnet_folders_and_single_files_by_name_and_skips_the_rest(tmp_path, caplog):
    write_folder(tmp_path, "canny", cross_attention_dim=768)
    write_folder(tmp_path, "xl depth", cross_attention_dim=2048, addition_embed_type="text_time")
    write_single(tmp_path, "control_v11p_sd15_openpose", 768)
    write_single(tmp_path, "control_sd21_depth", 1024)
    write_single(tmp_path, "xl_single", 2048, xl=True)
    (tmp_path / "unet").mkdir()
    (tmp_path / "unet" / "config.json").write_text(json.dumps({"_class_name": "UNet2DConditionModel"}))
    (tmp_path / "notes.txt").write_text("not a ControlNet")
    (tmp_path / "broken.safetensors").write_bytes(b"\x00" * 3)
    found = controlnets.available(tmp_path)
    assert {name: entry.family for name, entry in found.items()} == {
        "canny": "sd1", "control_sd21_depth": "sd2", "control_v11p_sd15_openpose": "sd1", "xl depth": "sdxl",
        "xl_single": "sdxl"}
    assert "broken.safetensors" in caplog.text and "unet" in caplog.text
    assert controlnets.available(None) == {} and controlnets.available(tmp_path / "missing") == {}


def test_the_hash_is_a1111_s_short_sha256_of_the_weights(tmp_path):
    write_folder(tmp_path, "canny", cross_attention_dim=768)
    entry = controlnets.available(tmp_path)["canny"]
    expected = hashlib.sha256(b"weights of canny").hexdigest()[:10]
    assert controlnets.known_hash(entry) == ""  # GetInfo never waits for one
    assert controlnets.short_hash(entry) == expected == controlnets.known_hash(entry)


def test_the_cache_loads_once_and_refuses_a_vanished_or_broken_file_naming_the_field(tmp_path):
    from services.core.models.presets import build_tiny_controlnet

    build_tiny_controlnet("tiny").save_pretrained(tmp_path / "tiny-controlnet")
    write_folder(tmp_path, "broken", cross_attention_dim=768)
    cache = controlnets.ControlNetCache(tmp_path, capacity=1)
    net = cache.get("tiny-controlnet", "cpu", torch.float32, "params.control[0].model")
    assert cache.get("tiny-controlnet", "cpu", torch.float32, "params.control[0].model") is net
    assert cache.is_loaded("tiny-controlnet")
    with pytest.raises(InvalidArgument) as refused:
        cache.get("broken", "cpu", torch.float32, "params.control[1].model")
    assert refused.value.field == "params.control[1].model" and str(tmp_path) not in refused.value.message
    with pytest.raises(InvalidArgument) as gone:
        cache.get("nope", "cpu", torch.float32, "params.control[0].model")
    assert "no longer" in gone.value.message
