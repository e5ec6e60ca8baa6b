"""LoRA per request over gRPC: the image is diffusers' own load_lora_weights + set_adapters result, weight 0
is the plain image, requests with different LoRA sets served together get their images alone (both
engines), kohya files load, bad names and weights are INVALID_ARGUMENT naming the field, infotext
records A1111's `Lora hashes`."""

from __future__ import annotations

import hashlib
import io
import threading

import numpy as np
import pytest
import torch
from PIL import Image

from services.client import InvalidInput
from services.client.infotext import parse_parameters
from services.client.replay import replay_request
from services.core.models.presets import ensure_tiny
from tests.conftest import CACHE_DIR, RunningService, request_for
from tests.lora_files import write_lora
from tests.services.crowds import all_at_once

MAX_DIFF = 3  # of 255, per channel


@pytest.fixture(scope="module")
def lora_dir(tmp_path_factory):
    from diffusers import StableDiffusionPipeline

    folder = tmp_path_factory.mktemp("loras")
    pipe = StableDiffusionPipeline.from_pretrained(ensure_tiny(CACHE_DIR, False))
    write_lora(folder, "film", pipe, seed=1)
    write_lora(folder, "pixel art", pipe, seed=2, text_encoder=False)  # a name with a space; UNet only
    write_lora(folder, "kohya_film", pipe, seed=1, kohya=True)  # film's very weights, in kohya's keys
    (folder / "notes.txt").write_text("not a LoRA")
    return folder


@pytest.fixture(scope="module")
def engines(lora_dir):
    running = {engine: RunningService("txt2img", "--engine", engine, "--lora-dir", str(lora_dir),
                                      "--max-batch-size", "8", "--batch-wait-ms", "300")
               for engine in ("step", "pipeline")}
    yield running
    for service in running.values():
        service.stop()


def pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.int16)


def generate(service, **fields):
    return service.client.generate(request_for("txt2img", **fields)).images[0]


def diffusers_image(lora_dir, loras: dict, prompt="a red fox", seed=7, steps=4) -> np.ndarray:
    """diffusers' own: the pipeline with load_lora_weights + set_adapters, called for the same image."""
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(ensure_tiny(CACHE_DIR, False))
    for index, name in enumerate(loras):
        pipe.load_lora_weights(str(lora_dir / f"{name}.safetensors"), adapter_name=f"a{index}")
    pipe.set_adapters([f"a{index}" for index in range(len(loras))], list(loras.values()))
    image = pipe(prompt, num_inference_steps=steps, width=64, height=64,
                 generator=torch.Generator("cpu").manual_seed(seed)).images[0]
    return np.asarray(image, dtype=np.int16)


def test_get_info_lists_the_folder_s_loras(engines):
    assert list(engines["step"].client.info().loras) == ["film", "kohya_film", "pixel art"]


@pytest.mark.parametrize("engine", ["step", "pipeline"])
def test_a_lora_image_is_diffusers_own_and_differs_from_the_plain_one(engines, lora_dir, engine):
    service = engines[engine]
    loras = {"film": 0.8, "pixel art": -1.5}
    got = pixels(generate(service, loras=loras).data)
    assert np.abs(got - diffusers_image(lora_dir, loras)).max() <= MAX_DIFF
    plain = pixels(generate(service).data)
    assert np.abs(got - plain).max() > 3 * MAX_DIFF


def test_prompt_tags_and_the_field_give_the_same_image(engines):
    service = engines["step"]
    by_field = generate(service, loras={"film": 0.8})
    by_tag = generate(service, prompt="a red fox <lora:film:0.8>")
    assert np.array_equal(pixels(by_field.data), pixels(by_tag.data))
    # The field's LoRAs are recorded as tags, so A1111 tools read their weights from the prompt.
    assert by_field.infotext.startswith("a red fox <lora:film:0.8>\n")


def test_a_kohya_file_gives_the_image_of_the_same_weights_in_diffusers_format(engines):
    service = engines["step"]
    kohya, diffusers = (generate(service, loras={name: 1.0}) for name in ("kohya_film", "film"))
    assert np.abs(pixels(kohya.data) - pixels(diffusers.data)).max() <= MAX_DIFF


@pytest.mark.parametrize("engine", ["step", "pipeline"])
def test_weight_zero_is_exactly_the_plain_image(engines, engine):
    service = engines[engine]
    generate(service, loras={"film": 1.0})  # loaded and active before: weight 0 must still be plain
    zero = generate(service, loras={"film": 0.0})
    assert np.array_equal(pixels(zero.data), pixels(generate(service).data))
    assert "Lora hashes" not in zero.infotext


@pytest.mark.parametrize("engine", ["step", "pipeline"])
def test_requests_with_different_lora_sets_sent_together_get_their_images_alone(engines, engine):
    service = engines[engine]
    sets = [{}, {"film": 1.0}, {"film": 0.5}, {"pixel art": 1.0, "film": 1.0}, {"film": 1.0}]
    alone = [pixels(generate(service, loras=loras, seed=i).data) for i, loras in enumerate(sets)]
    together = all_at_once([lambda i=i: pixels(generate(service, loras=sets[i], seed=i).data)
                            for i in range(len(sets))])
    for one, crowd in zip(alone, together):
        assert np.abs(one - crowd).max() <= MAX_DIFF


@pytest.mark.parametrize("fields, field", [
    (dict(loras={"../film": 1.0}), "params.loras"),
    (dict(loras={"/tmp/film": 1.0}), "params.loras"),
    (dict(loras={"unknown": 1.0}), "params.loras"),
    (dict(loras={"notes": 1.0}), "params.loras"),  # notes.txt is no LoRA
    (dict(loras={"film": 4.5}), "params.loras"),
    (dict(loras={"film": float("nan")}), "params.loras"),
    (dict(prompt="a fox <lora:../film:1>"), "params.prompt"),
    (dict(prompt="a fox <lora:film:-5>"), "params.prompt"),
    (dict(negative_prompt="<lora:missing:1>"), "params.negative_prompt"),
])
def test_a_bad_lora_is_invalid_argument_naming_the_field(engines, fields, field):
    with pytest.raises(InvalidInput) as info:
        generate(engines["step"], **fields)
    assert [v.field for v in info.value.violations] == [field]


def test_infotext_records_a1111_lora_hashes_and_replay_sends_them_back(engines, lora_dir):
    service = engines["step"]
    image = generate(service, loras={"film": 0.8, "pixel art": 1.0})
    # A1111's hash: sha256 of the file's tensor data (past the header), first 12 hex digits.
    data = (lora_dir / "film.safetensors").read_bytes()
    film = hashlib.sha256(data[8 + int.from_bytes(data[:8], "little"):]).hexdigest()[:12]
    params = parse_parameters(image.infotext)
    assert params.loras["film"] == film and set(params.loras) == {"film", "pixel art"}
    assert f'Lora hashes: "film: {film}, pixel art: ' in image.infotext
    request, warnings = replay_request(params, service.client.info())
    assert warnings == []
    again = service.client.generate(request).images[0]
    assert np.array_equal(pixels(again.data), pixels(image.data))


@pytest.mark.parametrize("model, mode", [("tiny-xl", "img2img"), ("tiny", "inpaint")])
def test_a_lora_in_the_image_modes_and_on_sdxl_is_diffusers_own(tmp_path, model, mode):
    # The same code path as txt2img; here with SDXL's two text encoders, and with input images and masks.
    import diffusers

    from tests.conftest import SERVER_MODES, box_mask, png

    contract = SERVER_MODES[mode].contract
    folder = ensure_tiny(CACHE_DIR, SERVER_MODES[mode].contract.takes_mask, name=model)
    cls = getattr(diffusers, SERVER_MODES[mode].pipeline_class)
    pipe = cls.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    write_lora(tmp_path, "grain", pipe, seed=3)
    service = RunningService(mode, "--model", model, "--lora-dir", str(tmp_path))
    try:
        inputs = {"image": png(seed=4), **({"mask": box_mask()} if contract.takes_mask else {})}
        fields = dict(seed=7, steps=5, strength=0.8, **inputs)
        got = pixels(service.client.generate(request_for(mode, loras={"grain": 0.7}, **fields)).images[0].data)
        plain = pixels(service.client.generate(request_for(mode, **fields)).images[0].data)
        assert np.abs(got - plain).max() > 10  # the LoRA changes the image
        spec = service.runtime.check(request_for(mode, loras={"grain": 0.7}, **fields))
        pipe.load_lora_weights(str(tmp_path / "grain.safetensors"), adapter_name="grain")
        pipe.set_adapters(["grain"], [0.7])
        args = dict(prompt=spec.prompt, negative_prompt=spec.negative_prompt, num_inference_steps=spec.steps,
                    guidance_scale=spec.guidance_scale, image=spec.init_image, strength=spec.pipeline_strength,
                    generator=torch.Generator("cpu").manual_seed(7))
        if contract.takes_mask:
            args.update(mask_image=spec.mask, width=spec.width, height=spec.height)
        expected = SERVER_MODES[mode].finish(spec, pipe(**args).images[0])
        assert np.abs(got - np.asarray(expected, dtype=np.int16)).max() <= MAX_DIFF
    finally:
        service.stop()


def test_a_lora_file_replaced_on_disk_leaves_the_requests_running_with_it_as_they_were(tmp_path, lora_dir):
    import os
    import shutil

    from services.client import Progress, Result

    folder = tmp_path / "loras"
    folder.mkdir()
    shutil.copy(lora_dir / "film.safetensors", folder / "swap.safetensors")
    shutil.copy(lora_dir / "pixel art.safetensors", folder / "pixel art.safetensors")
    service = RunningService("txt2img", "--engine", "step", "--lora-dir", str(folder), "--warmup", "false")
    try:
        request = dict(loras={"swap": 1.0}, steps=30, seed=11)
        before = generate(service, **request)
        stream = service.client.stream(request_for("txt2img", **request))
        assert any(isinstance(event, Progress) for event in stream)  # running, with the old file's weights
        shutil.copy(lora_dir / "pixel art.safetensors", folder / "swap.safetensors")  # rewritten in place
        os.utime(folder / "swap.safetensors", ns=(1, 1))
        result = [event for event in stream if isinstance(event, Result)][0]
        assert result.images[0].data == before.data  # neither the new weights nor a mix of both
        after = generate(service, **request)  # a later request runs with the new file
        same_weights = generate(service, loras={"pixel art": 1.0}, steps=30, seed=11)
        assert np.array_equal(pixels(after.data), pixels(same_weights.data))  # (the infotext names "swap")
        assert not np.array_equal(pixels(after.data), pixels(before.data))
        # A replacement that cannot be loaded fails the requests that start after it, not the running one.
        stream = service.client.stream(request_for("txt2img", **request))
        assert any(isinstance(event, Progress) for event in stream)
        (folder / "swap.safetensors").write_bytes(b"\x02\x00\x00\x00\x00\x00\x00\x00{}")
        assert [event for event in stream if isinstance(event, Result)][0].images[0].data == after.data
        with pytest.raises(InvalidInput):
            generate(service, **request)
    finally:
        service.stop()


@pytest.mark.parametrize("engine", ["step", "pipeline"])
def test_more_concurrent_loras_than_the_cache_holds_load_each_file_once(tmp_path, engine):
    from diffusers import StableDiffusionPipeline

    from services.core.models.loras import CACHE_SIZE

    pipe = StableDiffusionPipeline.from_pretrained(ensure_tiny(CACHE_DIR, False))
    names = [f"style{i}" for i in range(CACHE_SIZE + 1)]
    for seed, name in enumerate(names):
        write_lora(tmp_path, name, pipe, seed=seed + 20)
    service = RunningService("txt2img", "--engine", engine, "--lora-dir", str(tmp_path), "--max-batch-size", "16",
                             "--warmup", "false")
    try:
        results = {}

        def run(name):
            results[name] = generate(service, loras={name: 1.0}, steps=6, seed=3)

        threads = [threading.Thread(target=run, args=(name,)) for name in names]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        # Each file loaded once: the last one waited for a place instead of evicting one in use.
        assert service.metric("imagegen_lora_loads_total") == len(names)
        for name in names[:3]:
            assert np.abs(pixels(generate(service, loras={name: 1.0}, steps=6, seed=3).data)
                          - pixels(results[name].data)).max() <= MAX_DIFF
    finally:
        service.stop()


# -- hardening: statuses stay small and carry no path; what the service records it accepts back ------------

@pytest.fixture(scope="module")
def odd_dir(tmp_path_factory):
    """A folder as operators have them: many LoRAs, one for another model, corrupt downloads, names a tag
    cannot carry, and one whose name is odd but carried."""
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    folder = tmp_path_factory.mktemp("odd-loras")
    pipe = StableDiffusionPipeline.from_pretrained(ensure_tiny(CACHE_DIR, False))
    write_lora(folder, "film", pipe, seed=1)
    write_lora(folder, ODD_BUT_CARRIED, pipe, seed=2)
    xl = StableDiffusionXLPipeline.from_pretrained(ensure_tiny(CACHE_DIR, False, name="tiny-xl"))
    write_lora(folder, "xl", xl)
    for index in range(300):  # valid, tensor-less files: enough to be listed
        (folder / f"style-{index:03d}.safetensors").write_bytes((2).to_bytes(8, "little") + b"{}")
    for name in SKIPPED:
        (folder / f"{name}.safetensors").write_bytes((2).to_bytes(8, "little") + b"{}")
    data = (folder / "film.safetensors").read_bytes()
    for name, broken in {"header-2^63": (2**63).to_bytes(8, "little") + data[8:],
                         "header-2^64-1": (2**64 - 1).to_bytes(8, "little") + data[8:],
                         "header-past-the-end": len(data).to_bytes(8, "little") + data[8:],
                         "truncated": data[: len(data) // 2]}.items():
        (folder / f"{name}.safetensors").write_bytes(broken)
    return folder


ODD_BUT_CARRIED = 'film "v2" (soft) [x]'
SKIPPED = ("a:b", "x<y", "p>q")
CORRUPT = ("header-2^63", "header-2^64-1", "header-past-the-end", "truncated")


@pytest.fixture(scope="module")
def odd(odd_dir):
    service = RunningService("txt2img", "--lora-dir", str(odd_dir))
    yield service
    service.stop()


def assert_no_path(error, folder):
    texts = [error.details(), *(v.description for v in error.violations)]
    assert not any(str(folder) in text or "/" in text for text in texts), texts


def test_a_lora_for_another_model_is_refused_by_name_with_the_detail_only_in_the_log(odd, odd_dir, caplog):
    with caplog.at_level("WARNING"):
        with pytest.raises(InvalidInput) as info:
            generate(odd, loras={"xl": 1.0})
    error = info.value
    assert [v.field for v in error.violations] == ["params.loras"]
    assert error.violations[0].description == (f"LoRA 'xl' cannot be applied to this model (details in the "
                                                f"service log, id {error.error_id})")
    assert_no_path(error, odd_dir)
    logged = [r.getMessage() for r in caplog.records if error.error_id in r.getMessage()]
    assert len(logged) == 1 and str(odd_dir / "xl.safetensors") in logged[0] and "size mismatch" in logged[0]
    assert generate(odd, loras={"film": 1.0}).data  # still serving, LoRAs too


@pytest.mark.parametrize("name", CORRUPT)
def test_a_corrupt_lora_file_is_invalid_argument_not_internal(odd, odd_dir, name):
    with pytest.raises(InvalidInput) as info:
        generate(odd, loras={name: 1.0})
    assert [v.field for v in info.value.violations] == ["params.loras"]
    description = info.value.violations[0].description
    assert description.startswith(f"LoRA {name!r} is not a readable .safetensors file")
    assert_no_path(info.value, odd_dir)
    assert generate(odd).data


def test_a_typo_in_a_big_folder_gets_a_small_status_with_the_closest_names(odd):
    assert len(odd.client.info().loras) == 300 + 4 + 3  # style-*, corrupt, film, the odd one, xl
    with pytest.raises(InvalidInput) as info:
        generate(odd, prompt="a fox <lora:flim:1>")
    (violation,) = info.value.violations
    assert violation.field == "params.prompt" and len(info.value.details()) < 400
    assert violation.description.startswith("unknown LoRA 'flim'; closest: 'film'")
    assert violation.description.endswith("307 LoRAs in the folder; GetInfo lists them")


def test_names_a_tag_cannot_carry_are_not_listed_nor_accepted(odd, caplog):
    listed = set(odd.client.info().loras)
    assert ODD_BUT_CARRIED in listed and not listed & set(SKIPPED)
    with pytest.raises(InvalidInput) as info:
        generate(odd, loras={"a:b": 1.0})
    assert "'a:b' is not a LoRA name: it contains ':'" in info.value.violations[0].description


def test_an_odd_but_carried_name_replays_to_the_same_image(odd):
    image = generate(odd, loras={ODD_BUT_CARRIED: 0.7, "film": 0.5})
    params = parse_parameters(image.infotext)
    assert set(params.loras) == {ODD_BUT_CARRIED, "film"}
    request, warnings = replay_request(params, odd.client.info())
    assert warnings == [] and list(request.params.loras) == []  # the weights travel as the prompt's tags
    again = odd.client.generate(request).images[0]
    assert np.array_equal(pixels(again.data), pixels(image.data))


def test_a_prompt_at_the_limit_with_field_loras_replays_and_one_past_it_is_refused(engines):
    service = engines["step"]
    limit = service.client.info().limits.max_prompt_chars
    tags = " <lora:film:0.8>"  # what infotext appends for loras={"film": 0.8}
    prompt = ("a red fox, " * limit)[: limit - len(tags)]
    with pytest.raises(InvalidInput) as info:
        generate(service, prompt=prompt + "x", loras={"film": 0.8})
    assert [v.field for v in info.value.violations] == ["params.prompt"]
    assert f"{limit + 1} with params.loras" in info.value.violations[0].description
    image = generate(service, prompt=prompt, loras={"film": 0.8}, steps=2)
    params = parse_parameters(image.infotext)
    assert len(params.prompt) == limit
    request, _ = replay_request(params, service.client.info())
    assert np.array_equal(pixels(service.client.generate(request).images[0].data), pixels(image.data))
