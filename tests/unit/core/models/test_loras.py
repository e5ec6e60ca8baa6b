"""The LoRA folder and the adapter cache on a real tiny pipeline: names only, A1111's hash, least recently
used adapters unloaded beyond the bound, and a LoRA loaded again gives the same image."""

from __future__ import annotations

import hashlib
import os

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


@pytest.fixture(autouse=True)
def no_adapters_left(pipe):
    """Each test's cache starts on a pipeline without LoRA layers (a service has one cache per pipeline)."""
    yield
    pipe.unload_lora_weights()


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


def use(adapters, loras) -> None:
    """Run with a set as a request does: pinned, active, then unpinned."""
    pinned = adapters.pin(loras)
    adapters.activate(pinned)
    adapters.unpin(pinned)


def test_the_cache_unloads_the_least_recently_used_and_a_reloaded_lora_gives_the_same_image(pipe, folder):
    loads = []
    adapters = LoraAdapters(pipe, folder, capacity=2, on_load=lambda: loads.append(1))
    plain = image(pipe)
    use(adapters, (("a", 1.0),))
    first = image(pipe)
    assert np.abs(first - plain).max() > 3
    use(adapters, (("b", 1.0),))
    use(adapters, (("a", 0.5),))  # a: used last; b is the least recently used
    use(adapters, (("c", 1.0),))
    assert adapters.loaded == ["a", "c"] and len(loads) == 3
    adapters_on_pipe = {name for names in pipe.get_list_adapters().values() for name in names}
    assert len(adapters_on_pipe) == 2  # b's layers are gone from the UNet and the text encoder
    use(adapters, (("b", 1.0),))  # loaded again; a leaves
    pinned = adapters.pin((("a", 1.0),))
    adapters.activate(pinned)
    assert len(loads) == 5
    assert np.array_equal(image(pipe), first)
    adapters.activate(())
    assert np.array_equal(image(pipe), plain)
    adapters.unpin(pinned)


def test_an_adapter_in_use_is_never_evicted_and_a_set_without_room_is_told(pipe, folder):
    adapters = LoraAdapters(pipe, folder, capacity=2)
    running = adapters.pin((("a", 1.0),))
    other = adapters.pin((("b", 1.0),))
    assert not adapters.room_for((("c", 1.0),))  # both places used by running requests
    assert adapters.room_for((("a", 0.3),))  # loaded already: no place needed
    with pytest.raises(InvalidArgument):
        adapters.pin((("c", 1.0),))
    assert sorted(adapters.loaded) == ["a", "b"]
    adapters.unpin(other)
    assert adapters.room_for((("c", 1.0),))
    adapters.unpin(adapters.pin((("c", 1.0),)))  # b, unused, made room
    assert sorted(adapters.loaded) == ["a", "c"]
    adapters.unpin(running)


def test_a_file_replaced_on_disk_keeps_its_old_weights_for_those_running_with_them(pipe, folder, tmp_path):
    import shutil

    lora_dir = tmp_path / "loras"
    lora_dir.mkdir()
    shutil.copy(folder / "a.safetensors", lora_dir / "x.safetensors")
    adapters = LoraAdapters(pipe, lora_dir)
    old = adapters.pin((("x", 1.0),))
    adapters.activate(old)
    old_image = image(pipe)
    shutil.copy(folder / "b.safetensors", lora_dir / "x.safetensors")
    os.utime(lora_dir / "x.safetensors", ns=(1, 1))  # a different stamp even within the clock's resolution
    new = adapters.pin((("x", 1.0),))  # a later request: the new file, as another adapter
    assert new != old and adapters.loaded == ["x", "x"]
    adapters.activate(old)
    assert np.array_equal(image(pipe), old_image)  # the running request's weights did not change
    adapters.activate(new)
    assert not np.array_equal(image(pipe), old_image)
    adapters.unpin(old)  # its last user left: the old weights go
    assert adapters.loaded == ["x"]
    adapters.unpin(new)


def test_a_file_that_does_not_fit_the_model_is_invalid_argument(pipe, tmp_path):
    from safetensors.torch import save_file

    save_file({"lora_unet_down_blocks_9_attentions_0_proj_in.lora_down.weight": torch.ones(4, 7),
               "lora_unet_down_blocks_9_attentions_0_proj_in.lora_up.weight": torch.ones(7, 4)},
              str(tmp_path / "other.safetensors"))
    adapters = LoraAdapters(pipe, tmp_path)
    with pytest.raises(InvalidArgument) as info:
        adapters.pin((("other", 1.0),))
    assert info.value.field == "params.loras" and "'other'" in info.value.problem
    adapters.activate(())  # the pipeline still serves
    assert adapters.loaded == []


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
