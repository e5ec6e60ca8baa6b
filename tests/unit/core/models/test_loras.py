"""The LoRA folder and the adapter cache on a real tiny pipeline: names only, A1111's hash, least recently
used adapters unloaded beyond the bound, and a LoRA loaded again gives the same image."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from imagegen.v1 import imagegen_pb2 as pb
from services.core.checks import check_params
from services.core.errors import InvalidArgument
from services.core.models import loras
from services.core.models.loras import LoraAdapters
from services.core.models.presets import ensure_tiny
from tests.conftest import CACHE_DIR, service_config
from tests.lora_files import write_lora


@pytest.fixture(scope="module")
def pipe():
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline.from_pretrained(ensure_tiny(CACHE_DIR, False))


@pytest.fixture(scope="module")
def folder(tmp_path_factory, pipe):
    folder = tmp_path_factory.mktemp("loras")
    for seed, name in enumerate(("a", "b", "c")):
        write_lora(folder, name, pipe, seed=seed + 1)
    (folder / ".safetensors").write_bytes(b"")  # no name
    (folder / "sub.safetensors").mkdir()  # a folder, not a file
    return folder


def image(pipe) -> np.ndarray:
    out = pipe("a fox", num_inference_steps=3, width=64, height=64,
               generator=torch.Generator("cpu").manual_seed(3)).images[0]
    return np.asarray(out, dtype=np.int16)


def test_the_folder_s_loras_are_its_safetensors_files_by_name(folder):
    assert loras.names(folder) == ["a", "b", "c"]
    assert loras.names(None) == [] and loras.names(folder / "missing") == []


def test_the_short_hash_is_a1111_s_addnet_hash(folder):
    data = (folder / "a.safetensors").read_bytes()
    header = int.from_bytes(data[:8], "little")
    assert loras.short_hash(folder / "a.safetensors") == hashlib.sha256(data[8 + header:]).hexdigest()[:12]
    assert loras.short_hash(folder / "a.safetensors") != loras.short_hash(folder / "b.safetensors")


def test_the_cache_unloads_the_least_recently_used_and_a_reloaded_lora_gives_the_same_image(pipe, folder):
    loads = []
    adapters = LoraAdapters(pipe, folder, capacity=2, on_load=lambda: loads.append(1))
    plain = image(pipe)
    adapters.activate((("a", 1.0),))
    first = image(pipe)
    assert np.abs(first - plain).max() > 3
    adapters.activate((("b", 1.0),))
    adapters.activate((("a", 0.5),))  # a: used last; b is the least recently used
    adapters.activate((("c", 1.0),))
    assert adapters.loaded == ["a", "c"] and len(loads) == 3
    adapters_on_pipe = {name for names in pipe.get_list_adapters().values() for name in names}
    assert len(adapters_on_pipe) == 2  # b's layers are gone from the UNet and the text encoder
    adapters.activate((("b", 1.0),))  # loaded again; a leaves
    adapters.activate((("a", 1.0),))
    assert len(loads) == 5
    assert np.array_equal(image(pipe), first)
    adapters.activate(())
    assert np.array_equal(image(pipe), plain)


def test_a_file_that_does_not_fit_the_model_is_invalid_argument(pipe, tmp_path):
    from safetensors.torch import save_file

    save_file({"lora_unet_down_blocks_9_attentions_0_proj_in.lora_down.weight": torch.ones(4, 7),
               "lora_unet_down_blocks_9_attentions_0_proj_in.lora_up.weight": torch.ones(7, 4)},
              str(tmp_path / "other.safetensors"))
    adapters = LoraAdapters(pipe, tmp_path)
    with pytest.raises(InvalidArgument) as info:
        adapters.activate((("other", 1.0),))
    assert info.value.field == "params.loras" and "'other'" in info.value.problem
    adapters.activate(())  # the pipeline still serves


def checked(folder, **fields):
    return check_params(pb.GenerationParams(**fields), service_config("txt2img", "--lora-dir", str(folder)))


def test_field_and_tags_merge_by_name_and_zero_weights_run_nothing(folder):
    result = checked(folder, prompt="a fox <lora:b:0.5>", negative_prompt="<lora:c:0>",
                     loras=[pb.LoraWeight(name="b", weight=0.25), pb.LoraWeight(name="a", weight=0.6)])
    assert result.loras == (("a", 0.6), ("b", 0.75))
    assert result.requested_loras == (("b", 0.25), ("a", 0.6))
    assert [name for name, _ in result.lora_hashes] == ["a", "b"]


@pytest.mark.parametrize("fields, field, words", [
    (dict(loras=[pb.LoraWeight(name="../a", weight=1)]), "params.loras", "not paths"),
    (dict(loras=[pb.LoraWeight(name="d", weight=1)]), "params.loras", "unknown LoRA 'd'; choose one of a, b, c"),
    (dict(loras=[pb.LoraWeight(name="a", weight=-4.5)]), "params.loras", "outside -4..4"),
    (dict(loras=[pb.LoraWeight(name="a", weight=3)], prompt="<lora:a:2>"), "params.loras", "add up to 5"),
    (dict(prompt="x <lora:sub:1>"), "params.prompt", "unknown LoRA 'sub'"),
])
def test_bad_loras_are_refused_naming_the_field(folder, fields, field, words):
    with pytest.raises(InvalidArgument) as info:
        checked(folder, **fields)
    assert info.value.field == field and words in info.value.problem


def test_without_a_lora_folder_every_lora_is_refused():
    config = service_config("txt2img")
    with pytest.raises(InvalidArgument) as info:
        check_params(pb.GenerationParams(loras=[pb.LoraWeight(name="a", weight=1)]), config)
    assert "without --lora-dir" in info.value.problem
