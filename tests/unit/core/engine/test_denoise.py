"""The step engine against diffusers' own pipelines: for every mode and scheduler, on SD 1.x and SDXL
(and SD 2.x-style v-prediction, and 4-channel models used for inpainting), a row served alone gives the
pipeline's image for the same seed, and a row served in a mixed crowd gives its image alone."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from services.core.engine.denoise import decode, unet_step
from services.core.engine.rows import encode_prompt
from services.core.models import schedulers
from services.core.models.loading import load_pipeline
from services.core.models.presets import ensure_tiny
from tests.conftest import CACHE_DIR, SERVER_MODES, box_mask, png, request_for, service_config

SCHEDULERS = ["", *schedulers.names()]  # "": the model's own
MAX_DIFF = 3  # of 255, per channel
# (model, mode): the embedded SD 1.x and SDXL models in every mode; an SD 2.x-style v-prediction model;
# text-to-image models used for inpainting (4-channel UNets: the unmasked latents are kept every step).
CASES = [(model, mode) for model in ("tiny", "tiny-xl") for mode in SERVER_MODES] + [
    ("tiny-v", mode) for mode in SERVER_MODES] + [("tiny-4ch", "inpaint"), ("tiny-xl-4ch", "inpaint")]
# Every scheduler on SD 1.x and SDXL in every mode, and on v-prediction from noise; a few on the rest
# (each scheduler's prediction-type and 4-channel arithmetic is the same whatever the mode).
MATRIX = [(model, mode, scheduler) for model, mode in CASES for scheduler in SCHEDULERS
          if model in ("tiny", "tiny-xl") or (model, mode) == ("tiny-v", "txt2img")
          or scheduler in ("", "euler_a", "dpmpp_2m_karras")]


def model_folder(model: str, tmp_root) -> str:
    """The --model value for a case: an embedded model, or a folder made from one."""
    if model in ("tiny", "tiny-xl"):
        return model
    if model.endswith("-4ch"):  # the text-to-image folder, loaded by the inpainting mode
        return str(ensure_tiny(CACHE_DIR, inpaint=False, name=model.removesuffix("-4ch")))
    # v-prediction: SD 2.x models differ from 1.x in what the UNet predicts, set in the scheduler config.
    folder = tmp_root / "tiny-v"
    if not folder.exists():
        for inpaint in (False, True):
            shutil.copytree(ensure_tiny(CACHE_DIR, inpaint), folder / ("inpaint" if inpaint else "base"))
            config_file = folder / ("inpaint" if inpaint else "base") / "scheduler" / "scheduler_config.json"
            config = json.loads(config_file.read_text())
            config_file.write_text(json.dumps({**config, "prediction_type": "v_prediction"}))
    return str(folder / "base")


@pytest.fixture(scope="module")
def pipes(tmp_path_factory):
    root, loaded = tmp_path_factory.mktemp("models"), {}

    def get(model, mode_name):
        if (model, mode_name) not in loaded:
            mode = SERVER_MODES[mode_name]
            folder = model_folder(model, root)
            if model == "tiny-v" and mode.contract.takes_mask:
                folder = folder.replace("base", "inpaint")
            config = service_config(mode_name, "--model", folder)
            loaded[model, mode_name] = (mode, config, load_pipeline(mode, config)[0])
        return loaded[model, mode_name]

    return get


def spec_for(mode, config, **fields):
    extra = {"image": png((64, 64), seed=3)} if mode.contract.takes_image else {}
    if mode.contract.takes_mask:
        extra["mask"] = box_mask((64, 64), (8, 8, 40, 48))
    return mode.check(request_for(mode.name, **{"steps": 6, **extra, **fields}), config)


def reference(mode, pipe, spec) -> list[np.ndarray]:
    """diffusers' own pipeline call (what the pipeline engine makes), one image per seed."""
    base = pipe.scheduler
    try:
        pipe.scheduler = schedulers.fresh(spec.scheduler, base, spec.schedule_type, spec.seeds)
        with torch.inference_mode():
            images = mode.run(pipe, [spec], [torch.Generator("cpu").manual_seed(s) for s in spec.seeds],
                              lambda p, i, t, kwargs: kwargs)
    finally:
        pipe.scheduler = base
    return [np.asarray(image, dtype=np.int16) for image in images]


def served(mode, pipe, specs) -> list[list[np.ndarray]]:
    """The specs' rows admitted together and stepped together until each is done."""
    base = pipe.scheduler
    try:
        with torch.inference_mode():
            rows = []
            for spec in specs:
                embeds = encode_prompt(pipe, spec)
                rows.append([mode.admit(pipe, spec, embeds, seed,
                                        schedulers.fresh(spec.scheduler, base, spec.schedule_type, (seed,)))
                             for seed in spec.seeds])
            active = [row for spec_rows in rows for row in spec_rows]
            while active:
                unet_step(pipe.unet, active)
                active = [row for row in active if not row.done]
            return [[np.asarray(mode.finish(spec, image), dtype=np.int16) for image in decode(pipe, spec_rows)]
                    for spec, spec_rows in zip(specs, rows)]
    finally:
        pipe.scheduler = base


@pytest.mark.parametrize("model, mode_name, scheduler", MATRIX)
def test_a_row_alone_is_the_pipeline_s_image(pipes, model, mode_name, scheduler):
    mode, config, pipe = pipes(model, mode_name)
    spec = spec_for(mode, config, scheduler=scheduler, num_images=2)
    for expected, got in zip(reference(mode, pipe, spec), served(mode, pipe, [spec])[0]):
        assert np.abs(expected - got).max() <= MAX_DIFF


@pytest.mark.parametrize("model, mode_name", CASES)
def test_a_row_in_a_mixed_crowd_is_its_image_alone(pipes, model, mode_name):
    mode, config, pipe = pipes(model, mode_name)
    crowd = [spec_for(mode, config, steps=steps, guidance_scale=guidance, scheduler=scheduler, seed=seed,
                      prompt=prompt, **({"strength": strength} if mode.contract.takes_image else {}))
             for steps, guidance, scheduler, seed, prompt, strength in (
                 (4, 7.5, "euler_a", 1, "a fox", 0.9), (7, 1.0, "dpmpp_2m", 2, "a cat", 0.6),
                 (5, 3.0, "", 3, "", 1.0), (6, 9.0, "heun", 4, "a red fox at dawn", 0.75))]
    together = served(mode, pipe, crowd)
    for spec, images in zip(crowd, together):
        alone = served(mode, pipe, [spec])[0]
        for a, b in zip(alone, images):
            assert np.abs(a - b).max() <= MAX_DIFF
