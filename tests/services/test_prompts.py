"""Prompt syntax over gRPC: both engines make the same image of a weighted long prompt, prompts of
different lengths served together get their images alone, clip skip is checked and recorded."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from services.client import InvalidInput
from tests.conftest import RunningService, request_for
from tests.unit.core.engine.test_prompt_images import WEIGHTED_LONG
from tests.unit.core.test_prompts import LONG
from tests.services.crowds import all_at_once


@pytest.fixture(scope="module")
def engines():
    running = {engine: RunningService("txt2img", "--engine", engine, "--max-batch-size", "8",
                                      "--batch-wait-ms", "300") for engine in ("step", "pipeline")}
    yield running
    for service in running.values():
        service.stop()


def pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.int16)


def test_both_engines_make_the_same_image_of_a_weighted_long_prompt(engines):
    request = request_for("txt2img", prompt=WEIGHTED_LONG, negative_prompt="(ugly:1.2)", clip_skip=2)
    step, pipeline = (engines[name].client.generate(request).images[0] for name in ("step", "pipeline"))
    assert np.abs(pixels(step.data) - pixels(pipeline.data)).max() <= 3
    assert pixels(step.data).std() > 1  # an image, not the black of NaN latents
    assert "Clip skip: 2" in step.infotext and step.infotext.startswith(WEIGHTED_LONG + "\n")


@pytest.mark.parametrize("engine", ["step", "pipeline"])
def test_prompts_of_different_lengths_served_together_get_their_images_alone(engines, engine):
    client = engines[engine].client
    prompts = [WEIGHTED_LONG, "a red fox", WEIGHTED_LONG + " BREAK snow", "a (red:1.2) fox"]
    alone = [client.generate(request_for("txt2img", prompt=prompt, seed=i)) for i, prompt in enumerate(prompts)]
    together = all_at_once([lambda i=i: client.generate(request_for("txt2img", prompt=prompts[i], seed=i))
                            for i in range(len(prompts))])
    for one, crowd in zip(alone, together):
        assert np.abs(pixels(one.images[0].data) - pixels(crowd.images[0].data)).max() <= 3


@pytest.mark.parametrize("value", [0, 13])
def test_a_bad_clip_skip_is_invalid_argument_naming_it(engines, value):
    with pytest.raises(InvalidInput) as info:
        engines["step"].client.generate(request_for("txt2img", clip_skip=value))
    assert [v.field for v in info.value.violations] == ["params.clip_skip"]


@pytest.mark.parametrize("engine", ["step", "pipeline"])
def test_clip_skip_past_the_model_s_layers_is_invalid_argument_and_get_info_says_the_most(engines, engine):
    """Before: clip_skip 4..12 on the tiny model's 2-layer text encoder was INTERNAL."""
    client = engines[engine].client
    assert client.info().max_clip_skip == 2
    for value in (3, 12):
        with pytest.raises(InvalidInput) as info:
            client.generate(request_for("txt2img", clip_skip=value))
        assert [v.field for v in info.value.violations] == ["params.clip_skip"] and "1..2" in str(info.value)
    assert "Clip skip: 2" in client.generate(request_for("txt2img", clip_skip=2)).images[0].infotext


@pytest.mark.parametrize("field", ["prompt", "negative_prompt"])
def test_prompts_past_the_chunk_limit_are_refused_before_any_work(engines, field):
    client = engines["step"].client
    with pytest.raises(InvalidInput) as info:
        client.generate(request_for("txt2img", **{field: "BREAK " * 80}))
    assert [v.field for v in info.value.violations] == [f"params.{field}"]
    assert client.generate(request_for("txt2img", prompt="a fox")).images  # still serving


def test_both_engines_make_the_same_image_of_prompts_whose_chunk_counts_are_coprime(engines):
    """3 chunks against 2: the negative padded with the empty prompt's chunk, as A1111's pad_cond, in
    either engine (before: both repeated to the lcm)."""
    request = request_for("txt2img", prompt=LONG + "barn BREAK at dawn", negative_prompt="(blur:1.2), " + LONG)
    step, pipeline = (pixels(engines[name].client.generate(request).images[0].data) for name in ("step", "pipeline"))
    assert np.abs(step - pipeline).max() <= 3 and step.std() > 1


def test_sdxl_serves_long_weighted_prompts():
    service = RunningService("txt2img", "--engine", "step", "--model", "tiny-xl", "--warmup", "false")
    try:
        images = [service.client.generate(request_for("txt2img", prompt=prompt)).images[0]
                  for prompt in (WEIGHTED_LONG, WEIGHTED_LONG.replace("(red:1.3)", "red"))]
        assert not np.array_equal(pixels(images[0].data), pixels(images[1].data))
    finally:
        service.stop()
