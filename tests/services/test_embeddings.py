"""Textual-inversion embeddings over gRPC (--embeddings-dir): the image of a prompt naming one is diffusers'
own load_textual_inversion result, in both engines, in the prompt and the negative prompt; a prompt without
the name is unchanged; GetInfo lists them; a file that is no embedding is skipped with a log line; an
embedding of another family is skipped for that model (A1111's behaviour), an SDXL one loads into an SDXL
checkpoint of the same service; infotext records A1111's `TI hashes`."""

from __future__ import annotations

import hashlib
import io
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from services.core.models.presets import ensure_tiny
from tests.conftest import CACHE_DIR, RunningService, request_for
from tests.embedding_files import write_pt, write_safetensors, write_sdxl

MAX_DIFF = 3  # of 255, per channel (as the LoRA and prompt reference tests)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("embeddings")
    write_pt(root, "foxemb", count=3, seed=1)  # A1111's .pt, three vectors
    write_safetensors(root / "negative", "BadHands", count=2, seed=2)  # in a subfolder, as A1111 finds them
    write_sdxl(root, "xlemb", count=2, seed=3)  # SDXL's: skipped for the SD model
    (root / "broken.pt").write_bytes(b"not an embedding at all")
    lora_like = {"a.weight": torch.ones(2, 32), "b.weight": torch.ones(2, 32)}  # two terms: not an embedding
    save_file(lora_like, str(root / "lora_like.safetensors"))
    (root / "notes.txt").write_text("not an embedding")
    return root


@pytest.fixture(scope="module")
def engines(folder):
    running = {engine: RunningService("txt2img", "--engine", engine, "--embeddings-dir", str(folder))
               for engine in ("step", "pipeline")}
    yield running
    for service in running.values():
        service.stop()


def pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.int16)


def generate(service, **fields):
    return service.client.generate(request_for("txt2img", **fields)).images[0]


def diffusers_image(files: dict, prompt: str, negative_prompt: str = "", seed: int = 7) -> np.ndarray:
    """diffusers' own: StableDiffusionPipeline with load_textual_inversion(file, token=name) of each."""
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(ensure_tiny(CACHE_DIR, False))
    for name, path in files.items():
        pipe.load_textual_inversion(str(path), token=name)
    image = pipe(prompt, negative_prompt=negative_prompt or None, num_inference_steps=4, width=64, height=64,
                 generator=torch.Generator("cpu").manual_seed(seed)).images[0]
    return np.asarray(image, dtype=np.int16)


def test_get_info_lists_the_embeddings_skipping_what_is_not_one(folder, caplog):
    caplog.set_level("INFO", logger="services.core.models.embeddings")
    service = RunningService("txt2img", "--embeddings-dir", str(folder), "--warmup", "false")
    try:
        listed = {e.name: e for e in service.client.info().embeddings}
        assert list(listed) == ["BadHands", "foxemb", "xlemb"]
        fox = listed["foxemb"]
        assert (fox.vectors, fox.shape, fox.family, fox.loaded) == (3, 32, "", True)
        assert fox.hash == hashlib.sha256((folder / "foxemb.pt").read_bytes()).hexdigest()[:12]
        assert fox.HasField("step") and fox.step == 1500 and fox.sd_checkpoint_name == "tiny"
        assert not listed["BadHands"].HasField("step") and listed["BadHands"].vectors == 2
        xl = listed["xlemb"]
        assert (xl.family, xl.shape, xl.loaded) == ("sdxl", 32 + 48, False)
        assert "broken.pt is skipped" in caplog.text  # the log says which file, and why
        assert "lora_like.safetensors is skipped: it is not an embedding" in caplog.text
        assert "xlemb is skipped for model tiny" in caplog.text
        assert generate(service, prompt="foxemb, broken").data  # still serving
    finally:
        service.stop()


@pytest.mark.parametrize("engine", ["step", "pipeline"])
def test_an_embedding_s_image_is_diffusers_own_load_textual_inversion(engines, folder, engine):
    service = engines[engine]
    prompt = "a foxemb in the snow"
    got = generate(service, prompt=prompt)
    reference = diffusers_image({"foxemb": folder / "foxemb.pt"}, prompt)
    assert np.abs(pixels(got.data) - reference).max() <= MAX_DIFF
    plain = generate(service, prompt="a fox in the snow")
    assert np.abs(pixels(got.data) - pixels(plain.data)).max() > 3 * MAX_DIFF  # it does something
    digest = hashlib.sha256((folder / "foxemb.pt").read_bytes()).hexdigest()[:12]
    assert f'TI hashes: "foxemb: {digest}"' in got.infotext and "TI hashes" not in plain.infotext


@pytest.mark.parametrize("engine", ["step", "pipeline"])
def test_a_safetensors_embedding_in_the_negative_prompt_is_diffusers_own(engines, folder, engine):
    service = engines[engine]
    got = generate(service, prompt="a red fox", negative_prompt="BadHands, blurry")
    # diffusers' maybe_convert_prompt finds a multi-vector name among the tokenizer's lower-cased tokens,
    # so it expands a mixed-case one (BadHands) to none of its vectors after the first: its reference is
    # the same file loaded as lower-case "badhands". Ours is that in any case the prompt writes it.
    reference = diffusers_image({"badhands": folder / "negative" / "BadHands.safetensors"}, "a red fox",
                                "badhands, blurry")
    assert np.abs(pixels(got.data) - reference).max() <= MAX_DIFF
    assert 'TI hashes: "BadHands: ' in got.infotext
    lower = generate(service, prompt="a red fox", negative_prompt="badhands, blurry")
    assert np.array_equal(pixels(lower.data), pixels(got.data)) and "BadHands: " in lower.infotext


def test_a_prompt_without_an_embedding_s_name_is_unchanged(engines, services):
    """The service with embeddings loaded gives the very image of the one without."""
    with_them = generate(engines["step"], prompt="a red fox, blurry", negative_prompt="ugly")
    without = generate(services["txt2img"], prompt="a red fox, blurry", negative_prompt="ugly")
    assert np.array_equal(pixels(with_them.data), pixels(without.data))


def test_weights_apply_to_every_vector_and_both_engines_agree(engines):
    images = {engine: [pixels(generate(engines[engine], prompt=f"a {name} fox").data)
                       for name in ("(foxemb:3)", "foxemb")] for engine in engines}
    assert np.abs(images["step"][0] - images["pipeline"][0]).max() <= MAX_DIFF
    # The tiny model hardly reacts to weights (see the unit tests for the vectors): not the same image.
    assert not np.array_equal(images["step"][0], images["step"][1])


def test_an_sdxl_embedding_loads_into_the_service_s_sdxl_checkpoint(folder, tmp_path):
    """One service, two checkpoints of two families: each model gets the embeddings that fit it (the SDXL
    one's vectors against diffusers' own: tests/unit/core/models/test_embeddings.py)."""
    models = tmp_path / "models"
    models.mkdir()
    shutil.copytree(ensure_tiny(CACHE_DIR, False, "tiny-xl"), models / "xl")
    common = ("--engine", "pipeline", "--warmup", "false", "--embeddings-dir", str(folder))
    both = RunningService("txt2img", *common, "--models-dir", str(models))
    alone = RunningService("txt2img", *common, "--model", str(models / "xl"))
    try:
        fields = dict(prompt="a xlemb fox", negative_prompt="blurry")
        got = generate(both, model="xl", **fields)
        assert np.abs(pixels(got.data) - pixels(generate(alone, **fields).data)).max() <= MAX_DIFF
        assert "xlemb: " in got.infotext
        plain = generate(both, model="xl", prompt="a fox", negative_prompt="blurry")
        assert np.abs(pixels(got.data) - pixels(plain.data)).max() > 3 * MAX_DIFF
        assert [e.name for e in alone.client.info().embeddings if e.loaded] == ["xlemb"]
        # The SD embedding does not fit the SDXL model: its name is plain text there, as in A1111.
        assert "TI hashes" not in generate(both, model="xl", prompt="a foxemb fox").infotext
    finally:
        both.stop()
        alone.stop()
