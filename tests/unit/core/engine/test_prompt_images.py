"""Prompt syntax in images: plain prompts keep diffusers' own image, long prompts are not cut, clip skip
is diffusers' (shifted by one), and both engines make the same image of a weighted long prompt."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.unit.core.engine.test_denoise import MAX_DIFF, pipes, reference, served, spec_for  # noqa: F401
from tests.unit.core.test_prompts import LONG, diffusers_clip_skip

WEIGHTED_LONG = "a (red:1.3) fox, [blurry], ((sharp)) " + LONG + " BREAK at (dawn:0.8)"


def diffusers_image(mode, pipe, spec, **extra) -> np.ndarray:
    """diffusers' own pipeline, given the prompt strings (its own encoding, cut at 77 tokens)."""
    args = {"image": spec.init_image} if spec.init_image is not None else {"width": spec.width, "height": spec.height}
    if spec.init_image is not None:
        args["strength"] = spec.pipeline_strength
    with torch.inference_mode():
        image = pipe(prompt=spec.prompt, negative_prompt=spec.negative_prompt, num_inference_steps=spec.steps,
                     guidance_scale=spec.guidance_scale, generator=torch.Generator("cpu").manual_seed(spec.seeds[0]),
                     **args, **extra).images[0]
    return np.asarray(image, dtype=np.int16)


@pytest.mark.parametrize("model, mode_name", [("tiny", "txt2img"), ("tiny", "img2img"), ("tiny-xl", "txt2img")])
def test_a_plain_prompt_gives_diffusers_own_image(pipes, model, mode_name):
    mode, config, pipe = pipes(model, mode_name)
    spec = spec_for(mode, config, prompt="a red fox", negative_prompt="blurry")
    assert np.array_equal(reference(mode, pipe, spec)[0], diffusers_image(mode, pipe, spec))


@pytest.mark.parametrize("model", ["tiny", "tiny-xl"])
def test_weight_one_gives_the_image_of_the_plain_word(pipes, model):
    mode, config, pipe = pipes(model, "txt2img")
    plain, weighted = (spec_for(mode, config, prompt=p) for p in ("a red fox", "a red (fox:1.0)"))
    assert np.array_equal(reference(mode, pipe, plain)[0], reference(mode, pipe, weighted)[0])
    assert np.array_equal(served(mode, pipe, [plain])[0][0], served(mode, pipe, [weighted])[0][0])


def test_long_prompts_that_differ_past_77_tokens_give_different_images(pipes):
    mode, config, pipe = pipes("tiny", "txt2img")
    barn, wolf = (spec_for(mode, config, prompt=LONG + tail) for tail in ("and a red barn", "and a grey wolf"))
    assert not np.array_equal(reference(mode, pipe, barn)[0], reference(mode, pipe, wolf)[0])
    assert not np.array_equal(served(mode, pipe, [barn])[0][0], served(mode, pipe, [wolf])[0][0])
    # diffusers' own encoding cuts both at 77 tokens: one image
    assert np.array_equal(diffusers_image(mode, pipe, barn), diffusers_image(mode, pipe, wolf))


def test_clip_skip_2_gives_diffusers_clip_skip_1_image_on_sd1(pipes):
    mode, config, pipe = pipes("tiny", "txt2img")
    # Without guidance: diffusers applies clip_skip to the prompt only, A1111 (and we) to both prompts.
    spec = spec_for(mode, config, prompt="a red fox", guidance_scale=1.0, clip_skip=2)
    with diffusers_clip_skip(pipe):
        expected = diffusers_image(mode, pipe, spec, clip_skip=1)
    assert np.array_equal(reference(mode, pipe, spec)[0], expected)
    assert np.abs(served(mode, pipe, [spec])[0][0] - expected).max() <= MAX_DIFF
    assert not np.array_equal(expected, diffusers_image(mode, pipe, spec))


@pytest.mark.parametrize("model, mode_name", [("tiny", "txt2img"), ("tiny", "inpaint"), ("tiny-xl", "txt2img"),
                                              ("tiny-xl", "img2img")])
def test_both_engines_make_the_same_image_of_a_weighted_long_prompt(pipes, model, mode_name):
    mode, config, pipe = pipes(model, mode_name)
    spec = spec_for(mode, config, prompt=WEIGHTED_LONG, negative_prompt="(ugly:1.2), lowres", num_images=2)
    pipeline, step = reference(mode, pipe, spec), served(mode, pipe, [spec])[0]
    for a, b in zip(pipeline, step):
        assert np.abs(a - b).max() <= MAX_DIFF and a.std() > 1  # an image, not the black of NaN latents
    unweighted = spec_for(mode, config, prompt=WEIGHTED_LONG.replace("(red:1.3)", "red"),
                          negative_prompt="(ugly:1.2), lowres", num_images=2)
    assert not np.array_equal(reference(mode, pipe, unweighted)[0], pipeline[0])
