"""What a service loads: single-file checkpoints in A1111's layout, and GetInfo saying what was loaded."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from services.core.models.loading import ModelLoadError, load_pipeline
from services.client.errors import InvalidInput
from services.client.infotext import parse_parameters
from services.client.replay import replay_request
from services.core.models.catalog import unet_weights
from services.core.models.presets import ensure_tiny
from tests.conftest import (CACHE_DIR, SERVER_MODES, RunningService, box_mask, png, request_for,
                            service_config, wait_for)
from tests.ldm_layout import write_single_file

ROOT = Path(__file__).resolve().parents[2]
# The weights are equal (tested below); the float sums may round differently with the tensors' memory
# placement (mmapped file vs fresh allocation), as in the engine's reference tests.
MAX_DIFF = 3  # of 255, per channel


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """The embedded models written as single files in the original layout: {(name, inpaint): file}."""
    root = tmp_path_factory.mktemp("checkpoints")
    return {(name, inpaint): write_single_file(ensure_tiny(CACHE_DIR, inpaint, name),
                                               root / f"{name}{'-inpaint' if inpaint else ''}.safetensors")
            for name, inpaint in [("tiny", False), ("tiny-xl", False), ("tiny", True)]}


def pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def images_of(mode: str, *args: str):
    """(the images of two requests, GetInfo) from a service of `mode` loading `args`."""
    service = RunningService(mode, "--warmup", "false", *args)
    try:
        made = [service.client.generate(request_for(mode, seed=seed, steps=3)) for seed in (5, 9)]
        return [pixels(image.data) for result in made for image in result.images], service.client.info()
    finally:
        service.stop()


@pytest.mark.parametrize("mode, name, inpaint, family", [
    ("txt2img", "tiny", False, "sd1"), ("txt2img", "tiny-xl", False, "sdxl"), ("inpaint", "tiny", True, "sd1")])
def test_a_single_file_makes_the_pixels_of_the_folder_it_came_from(checkpoints, mode, name, inpaint, family):
    folder = ensure_tiny(CACHE_DIR, inpaint, name)
    from_file, info = images_of(mode, "--model", str(checkpoints[name, inpaint]), "--model-config", str(folder))
    from_folder, folder_info = images_of(mode, "--model", name)
    assert len(from_file) == 2 and not np.array_equal(from_file[0], from_file[1])  # the seeds matter
    for a, b in zip(from_file, from_folder):
        assert np.abs(a.astype(int) - b.astype(int)).max() <= MAX_DIFF
    assert (info.model_family, info.inpaint_model) == (family, inpaint)
    assert (folder_info.model_family, folder_info.inpaint_model) == (family, inpaint)
    assert info.model == str(checkpoints[name, inpaint])
    # Named by the file's name without extension; A1111's short hash is of the file itself.
    digest = hashlib.sha256(checkpoints[name, inpaint].read_bytes()).hexdigest()[:10]
    listed = [(m.name, m.family, m.inpaint) for m in info.models]
    assert listed == [(checkpoints[name, inpaint].stem, family, inpaint)]
    assert info.models[0].hash in ("", digest)  # computed in the background: here, or not yet


@pytest.mark.parametrize("mode, model, family, inpaint", [
    ("txt2img", "tiny", "sd1", False), ("img2img", "tiny-xl", "sdxl", False), ("inpaint", "tiny-xl", "sdxl", True)])
def test_get_info_says_what_an_embedded_model_is(mode, model, family, inpaint):
    service = RunningService(mode, "--warmup", "false", "--model", model)
    try:
        info = service.client.info()
        assert (info.model_family, info.inpaint_model) == (family, inpaint)
    finally:
        service.stop()


def test_get_info_says_sd2_for_a_v_prediction_folder(tmp_path):
    import json
    import shutil

    folder = shutil.copytree(ensure_tiny(CACHE_DIR, False), tmp_path / "tiny-v")
    config_file = folder / "scheduler" / "scheduler_config.json"
    config_file.write_text(json.dumps({**json.loads(config_file.read_text()), "prediction_type": "v_prediction"}))
    service = RunningService("txt2img", "--warmup", "false", "--model", str(folder))
    try:
        assert (service.client.info().model_family, service.client.info().inpaint_model) == ("sd2", False)
    finally:
        service.stop()


def test_a_config_folder_of_another_architecture_is_named(checkpoints):
    xl_folder = ensure_tiny(CACHE_DIR, False, "tiny-xl")
    config = service_config("txt2img", "--model", str(checkpoints["tiny", False]), "--model-config", str(xl_folder))
    with pytest.raises(ModelLoadError, match="is an SDXL model but the checkpoint is sd1"):
        load_pipeline(SERVER_MODES["txt2img"], config)
    plain = ensure_tiny(CACHE_DIR, False)
    config = service_config("inpaint", "--model", str(checkpoints["tiny", True]), "--model-config", str(plain))
    with pytest.raises(ModelLoadError, match="UNet of 4 input channels but the checkpoint's takes 9"):
        load_pipeline(SERVER_MODES["inpaint"], config)


@pytest.mark.parametrize("mode, name, inpaint, suffix", [
    ("txt2img", "tiny", False, ".ckpt"), ("img2img", "tiny-xl", False, ".safetensors"),
    ("inpaint", "tiny-xl", True, ".safetensors")])
def test_a_single_file_holds_the_weights_of_its_folder(tmp_path, mode, name, inpaint, suffix):
    folder = ensure_tiny(CACHE_DIR, inpaint, name)
    checkpoint = write_single_file(folder, tmp_path / f"model{suffix}")  # .ckpt: plain tensors, pickled
    pipe = load_pipeline(SERVER_MODES[mode], service_config(
        mode, "--model", str(checkpoint), "--model-config", str(folder), "--device", "cpu"))[0]
    reference = load_pipeline(SERVER_MODES[mode], service_config(mode, "--model", name, "--device", "cpu"))[0]
    assert type(pipe) is type(reference)
    for component in ("unet", "vae", "text_encoder", "text_encoder_2"):
        if getattr(reference, component, None) is None:
            continue
        ours, theirs = getattr(pipe, component).state_dict(), getattr(reference, component).state_dict()
        assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours), component


class RunsCode:
    """Unpickling this runs a shell command: what a malicious .ckpt does."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def bad_files(tmp_path: Path) -> dict:
    random_tensors = tmp_path / "random.safetensors"
    save_file({"weight": torch.randn(4, 4), "bias": torch.randn(4)}, str(random_tensors))
    text = tmp_path / "notes.safetensors"
    text.write_text("these are not weights\n")
    payload = tmp_path / "payload.ckpt"
    torch.save({"state_dict": {"model.diffusion_model.input_blocks.0.0.weight": RunsCode(tmp_path / "ran")}},
               payload)
    return {"random": random_tensors, "text": text, "pickle": payload}


@pytest.mark.parametrize("kind, message", [
    ("random", "not a Stable Diffusion 1.x/2.x/XL checkpoint: no UNet in the original layout"),
    ("text", "not a readable safetensors file"),
    ("pickle", "refused: this .ckpt needs to run pickled code to load"),
])
def test_a_file_that_is_not_a_checkpoint_is_one_error_line_and_exit_code_2(tmp_path, kind, message):
    path = bad_files(tmp_path)[kind]
    done = subprocess.run(
        [sys.executable, "-m", "services.txt2img", "--model", str(path), "--model-config",
         str(ensure_tiny(CACHE_DIR, False)), "--port", "0", "--device", "cpu", "--metrics-port", "-1",
         "--health-port", "-1"],
        cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1", "IMAGEGEN_CACHE_DIR": str(CACHE_DIR)},
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(f"error: txt2img: {path}: {message}"), done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "ran").exists()  # the payload never ran


def tiny_hash(inpaint: bool) -> str:
    """The tiny preset's short hash: of its built UNet weights file in the cache."""
    return hashlib.sha256(unet_weights(ensure_tiny(CACHE_DIR, inpaint)).read_bytes()).hexdigest()[:10]


def test_get_info_lists_the_one_model_with_its_hash(service):
    inpaint = service.mode == "inpaint"
    assert wait_for(lambda: service.client.info().models[0].hash != "")
    [model] = service.client.info().models
    assert (model.name, model.family, model.inpaint, model.loaded, model.is_default, model.unusable) == (
        "tiny", "sd1", inpaint, True, True, "")
    assert model.hash == tiny_hash(inpaint)


def test_a_request_names_the_model_or_none_and_the_infotext_records_its_hash(services):
    client = services["txt2img"].client
    assert wait_for(lambda: client.info().models[0].hash != "")
    named = client.generate(request_for("txt2img", seed=3, steps=3, model="tiny")).images[0]
    unnamed = client.generate(request_for("txt2img", seed=3, steps=3)).images[0]
    assert named.data == unnamed.data
    assert f"Model: tiny, Model hash: {tiny_hash(False)}" in named.infotext
    params = parse_parameters(named.infotext)
    assert (params.model, params.model_hash) == ("tiny", tiny_hash(False))


@pytest.mark.parametrize("name", ["other", "tiny.safetensors", "/tmp/tiny", "../tiny", str(CACHE_DIR)])
def test_a_model_not_listed_is_refused_naming_the_field(services, name):
    client = services["txt2img"].client
    with pytest.raises(InvalidInput) as refused:
        client.generate(request_for("txt2img", steps=2, model=name))
    [violation] = refused.value.violations
    assert violation.field == "params.model" and "this service has tiny" in violation.description
    assert client.generate(request_for("txt2img", steps=2)).images  # and it keeps serving


def test_a_replay_sends_the_model_of_the_recorded_hash_and_remakes_the_pixels(services):
    service = services["inpaint"]
    assert wait_for(lambda: service.client.info().models[0].hash != "")
    image, mask = png(seed=4), box_mask()
    made = service.client.generate(request_for("inpaint", seed=11, steps=3, image=image, mask=mask)).images[0]
    # Renamed in the infotext: the hash still finds the model.
    renamed = made.infotext.replace("Model: tiny", "Model: my-tiny")
    info = service.client.info()
    request, warnings = replay_request(parse_parameters(renamed), info, image=image, mask=mask)
    assert request.params.model == "tiny" and warnings == []
    assert service.client.generate(request).images[0].data == made.data
