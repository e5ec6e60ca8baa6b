"""The step engine against diffusers' own pipelines: for every mode and scheduler, a row served alone
gives the pipeline's image for the same seed, and a row served in a mixed crowd gives its image alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from services.core.engine.denoise import decode, unet_step
from services.core.engine.rows import encode_prompt
from services.core.models import schedulers
from services.core.models.loading import load_pipeline
from tests.conftest import SERVER_MODES, box_mask, png, request_for, service_config

SCHEDULERS = ["", *schedulers.names()]  # "": the model's own
MAX_DIFF = 3  # of 255, per channel


@pytest.fixture(scope="module")
def pipes():
    loaded = {}
    for name, mode in SERVER_MODES.items():
        config = service_config(name)
        loaded[name] = (mode, config, load_pipeline(mode, config)[0])
    return loaded


def spec_for(mode, config, **fields):
    extra = {"image": png((64, 64), seed=3)} if mode.contract.takes_image else {}
    if mode.contract.takes_mask:
        extra["mask"] = box_mask((64, 64), (8, 8, 40, 48))
    return mode.check(request_for(mode.name, **{"steps": 6, **extra, **fields}), config)


def reference(mode, pipe, spec) -> list[np.ndarray]:
    """diffusers' own pipeline call (what the pipeline engine makes), one image per seed."""
    base = pipe.scheduler
    try:
        pipe.scheduler = schedulers.fresh(spec.scheduler, base)
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
                rows.append([mode.admit(pipe, spec, embeds, seed, schedulers.fresh(spec.scheduler, base))
                             for seed in spec.seeds])
            active = [row for spec_rows in rows for row in spec_rows]
            while active:
                unet_step(pipe.unet, active)
                active = [row for row in active if not row.done]
            return [[np.asarray(mode.finish(spec, image), dtype=np.int16) for image in decode(pipe, spec_rows)]
                    for spec, spec_rows in zip(specs, rows)]
    finally:
        pipe.scheduler = base


@pytest.mark.parametrize("scheduler", SCHEDULERS)
@pytest.mark.parametrize("mode_name", list(SERVER_MODES))
def test_a_row_alone_is_the_pipeline_s_image(pipes, mode_name, scheduler):
    mode, config, pipe = pipes[mode_name]
    spec = spec_for(mode, config, scheduler=scheduler, num_images=2)
    for expected, got in zip(reference(mode, pipe, spec), served(mode, pipe, [spec])[0]):
        assert np.abs(expected - got).max() <= MAX_DIFF


@pytest.mark.parametrize("mode_name", list(SERVER_MODES))
def test_a_row_in_a_mixed_crowd_is_its_image_alone(pipes, mode_name):
    mode, config, pipe = pipes[mode_name]
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
