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
    (dict(loras=[pb.LoraWeight(name="d", weight=1)]), "params.loras",
     "unknown LoRA 'd'; choose one of 'a', 'b', 'c'"),
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


# -- hardening: what a request sees never carries a path, stays small, and reads back as it was -----------

def empty_safetensors(path) -> None:
    """A valid .safetensors file with no tensors: enough for the folder's listing."""
    path.write_bytes((2).to_bytes(8, "little") + b"{}")


def test_a_file_the_loader_cannot_read_is_refused_without_its_path_and_logged_with_an_id(pipe, tmp_path,
                                                                                          caplog):
    # Reached when a file changes after the checks: the loader's words name the file's path.
    (tmp_path / "garbage.safetensors").write_bytes((16).to_bytes(8, "little") + b"not json at all!rest")
    adapters = LoraAdapters(pipe, tmp_path)
    with caplog.at_level("WARNING", logger="services.core.models.loras"):
        with pytest.raises(InvalidArgument) as info:
            adapters.pin((("garbage", 1.0),))
    error = info.value
    assert error.field == "params.loras" and str(tmp_path) not in error.message and "/" not in error.problem
    assert error.problem.startswith("LoRA 'garbage' cannot be applied to this model (details in the service "
                                    "log, id ")
    logged = [r.getMessage() for r in caplog.records if error.metadata["error_id"] in r.getMessage()]
    assert len(logged) == 1 and str(tmp_path / "garbage.safetensors") in logged[0]
    adapters.activate(())


def test_a_second_lora_loads_without_peft_s_multiple_adapters_warning(pipe, folder):
    import warnings

    adapters = LoraAdapters(pipe, folder)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        adapters.pin((("a", 1.0), ("b", 1.0), ("c", 1.0)))
        # Only the warning of our loads is silenced, not the same words elsewhere.
        warnings.warn("Already found a `peft_config` attribute elsewhere", UserWarning)
    assert [str(w.message) for w in caught if "peft_config" in str(w.message)] == [
        "Already found a `peft_config` attribute elsewhere"]
    adapters.activate(())


@pytest.mark.parametrize("make", [
    lambda data: (2**63).to_bytes(8, "little") + data[8:],  # reached seek before: INTERNAL
    lambda data: (2**64 - 1).to_bytes(8, "little") + data[8:],
    lambda data: (len(data)).to_bytes(8, "little") + data[8:],  # a header longer than the file
    lambda data: data[: len(data) // 2],  # cut short in the tensor data
    lambda data: data[:5],  # not even a header length
], ids=["2^63", "2^64-1", "past-the-end", "truncated", "5-bytes"])
def test_a_corrupt_lora_file_is_refused_naming_the_field(folder, tmp_path, make, caplog):
    (tmp_path / "broken.safetensors").write_bytes(make((folder / "a.safetensors").read_bytes()))
    with pytest.raises(loras.NotSafetensors):
        loras.short_hash(tmp_path / "broken.safetensors")
    for fields, field in ((dict(loras=[pb.LoraWeight(name="broken", weight=1)]), "params.loras"),
                          (dict(prompt="a fox <lora:broken:0.5>"), "params.prompt")):
        with pytest.raises(InvalidArgument) as info:
            checked(tmp_path, **fields)
        assert info.value.field == field and str(tmp_path) not in info.value.message
        assert info.value.problem.startswith("LoRA 'broken' is not a readable .safetensors file (details in "
                                             "the service log, id ")
    assert any(str(tmp_path / "broken.safetensors") in r.getMessage() for r in caplog.records)


def test_an_unknown_name_in_a_big_folder_gets_the_closest_names_and_a_count(tmp_path):
    for index in range(300):
        empty_safetensors(tmp_path / f"style-{index:03d}-{'x' * 60}.safetensors")
    empty_safetensors(tmp_path / "film-grain.safetensors")
    with pytest.raises(InvalidArgument) as info:
        checked(tmp_path, loras=[pb.LoraWeight(name="film-grian", weight=1)])
    problem = info.value.problem
    assert problem.startswith("unknown LoRA 'film-grian'; closest: 'film-grain'")
    assert problem.endswith("301 LoRAs in the folder; GetInfo lists them") and len(info.value.message) < 400
    with pytest.raises(InvalidArgument) as info:
        checked(tmp_path, loras=[pb.LoraWeight(name="../film-grain", weight=1)])
    assert "not paths" in info.value.problem and len(info.value.message) < 400


# Names a tag carries read back as themselves through both readers (the service's take_lora_tags, the
# client's prompt_lora_names) and `Lora hashes`; names it cannot are not listed. Control characters read
# back in our infotext but are refused too: no log line or picker shows them plainly.
CARRIED = ['film "v2" (soft) [x]', "é-ß", "back\\slash", "semi;colon", "BREAK", "pct%", "a=b", "in side"]
NOT_CARRIED = ["a:b", "x<y", "p>q", "c,d", " lead", "trail "]


def reads_back(name: str) -> bool:
    from imagegen.v1.infotext import format_infotext, format_lora_hashes
    from services.client.infotext import parse_parameters, prompt_lora_names
    from services.core.prompts import lora_tags, take_lora_tags

    text = format_infotext("a fox" + lora_tags([(name, 0.6)]), "", {
        "Steps": 4, "Seed": 1, "Size": "64x64", "Lora hashes": format_lora_hashes([(name, "0123456789ab")])})
    params = parse_parameters(text)
    try:
        service_reads = take_lora_tags(params.prompt)[1]
    except ValueError:  # e.g. "a:b" reads as two weights
        return False
    return (service_reads == ((name, 0.6),) and prompt_lora_names(params) == {name}
            and params.loras == {name: "0123456789ab"})


@pytest.mark.parametrize("name", CARRIED + NOT_CARRIED + ["new\nline", "tab\tbed"])
def test_a_name_is_listed_only_when_it_reads_back_from_the_recorded_tag_and_hashes(name):
    from services.core.prompts import lora_name_problem

    problem = lora_name_problem(name)
    if name in CARRIED:
        assert problem is None and reads_back(name)
    elif name in NOT_CARRIED:
        assert problem is not None and not reads_back(name)
    else:
        assert problem is not None and "which a <lora:name:weight> tag cannot carry" in problem


def test_files_whose_names_a_tag_cannot_carry_are_not_listed_and_are_logged_once(tmp_path, caplog):
    for name in ("ok", "a:b", "x<y", "p>q", "c,d", " lead"):
        empty_safetensors(tmp_path / f"{name}.safetensors")
    with caplog.at_level("WARNING", logger="services.core.models.loras"):
        assert loras.names(tmp_path) == ["ok"]
        assert loras.names(tmp_path) == ["ok"]
    skipped = [r.getMessage() for r in caplog.records if "is skipped" in r.getMessage()]
    assert len(skipped) == 5 and any("a:b.safetensors is skipped: it contains ':'" in m for m in skipped)
    with pytest.raises(InvalidArgument) as info:
        checked(tmp_path, loras=[pb.LoraWeight(name="a:b", weight=1)])
    assert info.value.field == "params.loras" and "is not a LoRA name: it contains ':'" in info.value.problem


def test_a_lora_folder_gone_at_request_time_is_said_so_without_its_path(tmp_path, caplog):
    gone = tmp_path / "loras"
    gone.mkdir()
    config = service_config("txt2img", "--lora-dir", str(gone))
    gone.rmdir()
    with pytest.raises(InvalidArgument) as info:
        check_params(pb.GenerationParams(prompt="<lora:a:1>"), config)
    problem = info.value.problem
    assert info.value.field == "params.prompt" and "--lora-dir" not in problem and str(gone) not in problem
    assert problem.startswith("the service's LoRA folder is missing or cannot be read now (details in the")
    assert any(str(gone) in r.getMessage() and info.value.metadata["error_id"] in r.getMessage()
               for r in caplog.records)
    gone.mkdir()  # there again, but empty
    with pytest.raises(InvalidArgument) as info:
        check_params(pb.GenerationParams(loras=[pb.LoraWeight(name="a", weight=1)]), config)
    assert "has no LoRAs" in info.value.problem and "--lora-dir" not in info.value.problem


def test_the_prompt_with_the_field_s_loras_as_tags_keeps_within_the_limit(folder):
    tags = " <lora:a:0.5> <lora:b:1>"
    fits = "x" * (4000 - len(tags))
    result = checked(folder, prompt=fits, loras=[pb.LoraWeight(name="a", weight=0.5),
                                                  pb.LoraWeight(name="b", weight=1)])
    assert len(fits + tags) == 4000 and result.requested_loras == (("a", 0.5), ("b", 1.0))
    with pytest.raises(InvalidArgument) as info:
        checked(folder, prompt=fits + "x", loras=[pb.LoraWeight(name="a", weight=0.5),
                                                   pb.LoraWeight(name="b", weight=1)])
    assert info.value.field == "params.prompt" and "4001 with params.loras" in info.value.problem
    # The recorded prompt (what a replay sends, with no field) is accepted back.
    assert checked(folder, prompt=fits + tags).loras == (("a", 0.5), ("b", 1.0))


def test_the_sample_loras_change_their_tiny_model_s_image_and_are_written_once(tmp_path, pipe):
    from services.core.models.presets import SAMPLE_LORAS, ensure_sample_loras

    folder = ensure_sample_loras(tmp_path)
    assert loras.names(folder) == sorted(SAMPLE_LORAS) == ["tiny-lora", "tiny-xl-lora"]
    written = {name: (folder / f"{name}.safetensors").stat().st_mtime_ns for name in SAMPLE_LORAS}
    assert ensure_sample_loras(tmp_path) == folder  # once: the files are kept
    assert {name: (folder / f"{name}.safetensors").stat().st_mtime_ns for name in SAMPLE_LORAS} == written
    adapters = LoraAdapters(pipe, folder)
    plain = image(pipe)
    use(adapters, (("tiny-lora", 1.0),))
    assert np.abs(image(pipe) - plain).max() > 3  # kohya's keys, converted by diffusers' loader
    with pytest.raises(InvalidArgument, match="cannot be applied to this model"):
        use(adapters, (("tiny-xl-lora", 1.0),))  # the other family's: refused, naming the field
