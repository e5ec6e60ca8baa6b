"""Several checkpoints per service (--models-dir): each request gets its model's image, the pool bounds
what is on the device, and files that are not checkpoints are skipped."""

from __future__ import annotations

import hashlib
import io
import shutil
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from services.client.errors import InvalidInput
from services.core.models.presets import ensure_tiny
from tests.conftest import CACHE_DIR, RunningService, request_for, wait_for
from tests.ldm_layout import write_single_file
from tests.model_folders import reseeded


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A models folder: alpha and beta (diffusers folders), gamma (a single file), an inpainting model,
    and two files that are no checkpoints."""
    root, spare = tmp_path_factory.mktemp("models"), tmp_path_factory.mktemp("spare")
    base = ensure_tiny(CACHE_DIR, False)
    reseeded(base, root / "alpha", 1)
    reseeded(base, root / "beta", 2)
    write_single_file(reseeded(base, spare / "gamma", 3), root / "gamma.safetensors")
    shutil.copytree(ensure_tiny(CACHE_DIR, True), root / "painter")
    (root / "notes.txt").write_text("not a model")
    (root / "broken.safetensors").write_bytes(b"not a safetensors file")
    return root


def start(models, *extra, engine="pipeline"):
    return RunningService("txt2img", "--warmup", "false", "--models-dir", str(models), "--model-config",
                          str(ensure_tiny(CACHE_DIR, False)), "--model", "alpha", "--engine", engine, *extra)


def pixels(image) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(image.data)).convert("RGB"))


# Requests batched into one pipeline call may round differently from one alone (as in the engine's tests);
# the models differ far more than that (checked below).
MAX_DIFF = 3


def close(a: np.ndarray, b: np.ndarray) -> bool:
    return int(np.abs(a.astype(int) - b.astype(int)).max()) <= MAX_DIFF


def alone(models, name: str, engine: str) -> dict:
    """{seed: image} of a service started with `name` as its only model."""
    path = models / (name + ".safetensors" if name == "gamma" else name)
    service = RunningService("txt2img", "--warmup", "false", "--model", str(path), "--model-config",
                             str(ensure_tiny(CACHE_DIR, False)), "--engine", engine)
    try:
        return {seed: pixels(service.client.generate(request_for("txt2img", seed=seed, steps=3)).images[0])
                for seed in (1, 2)}
    finally:
        service.stop()


@pytest.fixture(scope="module")
def reference_of(models):
    """engine -> {(name, seed): the image of that model alone}, made once per engine."""
    made = {}

    def of(engine):
        if engine not in made:
            made[engine] = {(name, seed): image for name in ("alpha", "beta", "gamma")
                            for seed, image in alone(models, name, engine).items()}
        return made[engine]
    return of


@pytest.fixture
def references(reference_of):
    return reference_of("pipeline")


def test_get_info_lists_the_folder_skipping_what_is_not_a_checkpoint(models, caplog):
    caplog.set_level("INFO", logger="services.core.models.catalog")
    service = start(models)
    try:
        listed = {m.name: m for m in service.client.info().models}
        assert list(listed) == ["alpha", "beta", "gamma", "painter"]  # the default first
        assert listed["alpha"].is_default and listed["alpha"].loaded and not listed["beta"].loaded
        assert all(m.family == "sd1" for m in listed.values())
        assert listed["painter"].inpaint and "inpainting UNet" in listed["painter"].unusable
        assert not listed["gamma"].unusable
        assert wait_for(lambda: all(m.hash for m in service.client.info().models))
        gamma = service.client.info().models[2]
        assert gamma.hash == hashlib.sha256((models / "gamma.safetensors").read_bytes()).hexdigest()[:10]
        assert "broken.safetensors" in caplog.text and "notes.txt" in caplog.text
        with pytest.raises(InvalidInput) as refused:  # listed, but this mode cannot use it
            service.client.generate(request_for("txt2img", steps=2, model="painter"))
        assert refused.value.violations[0].field == "params.model"
        assert service.client.generate(request_for("txt2img", steps=2, model="beta")).images
    finally:
        service.stop()


@pytest.mark.parametrize("engine", ["pipeline", "step"])
def test_each_request_gets_the_image_of_its_model_alone_and_the_pool_bounds_the_loads(models, reference_of, engine):
    references = reference_of(engine)
    service = start(models, "--max-loaded", "1", engine=engine)
    try:
        client = service.client
        names = [("alpha", "beta")[i % 2] for i in range(16)]  # 2 models x 8 requests, interleaved
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda i: client.generate(
                request_for("txt2img", seed=1 + i % 4 // 2, steps=3, model=names[i])), range(16)))
        for i, result in enumerate(results):
            other = {"alpha": "beta", "beta": "alpha"}[names[i]]
            made = pixels(result.images[0])
            assert close(made, references[names[i], 1 + i % 4 // 2]), i
            assert not close(made, references[other, 1 + i % 4 // 2]), i
            assert f"Model: {names[i]}," in result.images[0].infotext
        # alpha loaded at start, beta once; the rest are switches between device and host memory.
        loads = service.metric("imagegen_model_loads_total")
        assert loads <= 2 and service.metric("imagegen_models_resident") == 1
        assert service.metric("imagegen_model_switches_total") < len(results)
        gamma = client.generate(request_for("txt2img", seed=2, steps=3, model="gamma")).images[0]
        assert np.array_equal(pixels(gamma), references["gamma", 2])
        assert service.metric("imagegen_model_loads_total") == loads + 1
        assert [m.name for m in client.info().models if m.loaded] == ["gamma"]
        assert client.info().engine == engine
        # Admission counts a switch: none for the model on the device, a measured copy or load otherwise.
        pool = service.runtime.pool
        assert pool.switch_s("gamma") == 0 and pool.in_host("alpha") and pool.switch_s("alpha") > 0
    finally:
        service.stop()


def test_a_small_ram_cache_drops_models_and_they_come_back_from_disk(models, references):
    service = start(models, "--max-loaded", "1", "--ram-cache-gb", "0")
    try:
        for name in ("beta", "gamma", "beta"):
            image = service.client.generate(request_for("txt2img", seed=1, steps=3, model=name)).images[0]
            assert np.array_equal(pixels(image), references[name, 1])
        assert service.metric("imagegen_model_loads_total") == 3  # nothing kept but the default
        assert service.runtime.pool.host_bytes() == 0
    finally:
        service.stop()


@pytest.mark.parametrize("engine", ["pipeline", "step"])
def test_loras_load_per_model_and_one_of_another_family_is_invalid_argument(tmp_path, engine):
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    from tests.lora_files import write_lora

    folder, loras = tmp_path / "models", tmp_path / "loras"
    loras.mkdir()
    shutil.copytree(ensure_tiny(CACHE_DIR, False), folder / "base")
    shutil.copytree(ensure_tiny(CACHE_DIR, False, name="tiny-xl"), folder / "xl")
    write_lora(loras, "film", StableDiffusionPipeline.from_pretrained(ensure_tiny(CACHE_DIR, False)), seed=1)
    write_lora(loras, "xlfilm", StableDiffusionXLPipeline.from_pretrained(
        ensure_tiny(CACHE_DIR, False, name="tiny-xl")))
    service = RunningService("txt2img", "--warmup", "false", "--models-dir", str(folder), "--model", "base",
                             "--lora-dir", str(loras), "--engine", engine)
    try:
        client = service.client
        assert {m.name: m.family for m in client.info().models} == {"base": "sd1", "xl": "sdxl"}
        assert client.generate(request_for("txt2img", steps=2, model="base", loras={"film": 1.0})).images
        assert client.generate(request_for("txt2img", steps=2, model="xl", loras={"xlfilm": 1.0})).images
        with pytest.raises(InvalidInput) as refused:
            client.generate(request_for("txt2img", steps=2, model="xl", loras={"film": 1.0}))
        assert [v.field for v in refused.value.violations] == ["params.loras"]
        assert "cannot be applied to this model" in refused.value.violations[0].description
        assert client.generate(request_for("txt2img", steps=2, model="base", loras={"film": 0.5})).images
    finally:
        service.stop()
