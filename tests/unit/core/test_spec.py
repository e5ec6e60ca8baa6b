"""GenerationSpec: built from checked params, immutable, batched by key, described by infotext."""

import dataclasses

import pytest

from imagegen.v1 import imagegen_pb2 as pb
from imagegen.v1.infotext import split_infotext
from services.core.checks import check_params, denoising_steps
from services.core.config import load_config
from services.core.spec import GenerationSpec
from services.txt2img.mode import MODE

CONFIG = load_config(MODE, [], environ={})


def spec(width=64, height=64, strength=None, **fields):
    params = pb.GenerationParams(**{"prompt": "a fox", "seed": 3, "num_inference_steps": 4, **fields})
    steps = fields.get("num_inference_steps", 4)
    extra = {} if strength is None else {"strength": strength, "denoise_steps": denoising_steps(steps, strength)}
    return GenerationSpec.build(check_params(params, CONFIG), width, height, **extra)


def test_build_takes_the_checked_params_and_the_settled_size():
    built = spec(width=128, height=64, negative_prompt="blurry", num_images=2)
    assert (built.prompt, built.negative_prompt, built.steps) == ("a fox", "blurry", 4)
    assert (built.width, built.height, built.seeds) == (128, 64, (3, 4))
    assert built.strength is None and built.init_image is None and built.mask is None


def test_spec_is_immutable():
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec().steps = 50


def test_batch_key_ignores_prompts_and_seeds_but_not_the_shape_of_the_work():
    assert spec().batch_key() == spec(prompt="a cat", seed=9, num_images=3).batch_key()
    base = spec().batch_key()
    for other in (spec(width=128), spec(num_inference_steps=5), spec(scheduler="ddim"),
                  spec(guidance_scale=3.0), spec(strength=0.5)):
        assert other.batch_key() != base
    # Strengths that run the same steps do the same work.
    assert spec(strength=0.5).batch_key() == spec(strength=0.6).batch_key()


def test_the_pipeline_gets_a_strength_that_runs_exactly_the_checked_steps():
    for steps in range(1, 151):
        for runs in range(1, steps + 1):
            built = spec(num_inference_steps=steps, strength=runs / steps)
            assert built.steps_run == runs
            assert min(int(steps * built.pipeline_strength), steps) == runs  # what diffusers counts
    assert spec(strength=1.0).pipeline_strength == 1.0 and spec().pipeline_strength is None


def test_infotext_describes_one_image():
    built = GenerationSpec.build(
        check_params(pb.GenerationParams(prompt="a fox", negative_prompt="blurry", seed=3,
                                         num_inference_steps=4, guidance_scale=7.5), CONFIG),
        64, 128, strength=0.6, infotext_extra=(("Denoising strength", 0.6),))
    prompt, negative, params = split_infotext(built.infotext(seed=3, sampler={"Sampler": "Euler a"}, model="tiny"))
    assert prompt == "a fox" and negative == "blurry"
    assert params == {"Steps": "4", "Sampler": "Euler a", "CFG scale": "7.5", "Seed": "3",
                                "Size": "64x128", "Model": "tiny", "Denoising strength": "0.6"}


def test_infotext_carries_clip_skip_when_not_the_last_layer():
    _prompt, _negative, params = split_infotext(spec(clip_skip=2).infotext(seed=3, sampler={"Sampler": "Euler"}, model="tiny"))
    assert params["Clip skip"] == "2"
    for unskipped in (spec(), spec(clip_skip=1)):
        assert "Clip skip" not in split_infotext(unskipped.infotext(seed=3, sampler={"Sampler": "Euler"}, model="tiny"))[2]


def test_only_prompts_of_equal_chunk_counts_share_a_batch():
    assert dataclasses.replace(spec(), prompt_chunks=2).batch_key() != dataclasses.replace(spec(), prompt_chunks=1
                                                                                          ).batch_key()
    assert spec(clip_skip=2).batch_key() == spec().batch_key()  # the embeddings carry it


def test_infotext_writes_the_model_hash_after_the_model_when_known():
    text = spec().infotext(seed=3, sampler={"Sampler": "Euler"}, model="tiny", model_hash="0123456789")
    keys = list(split_infotext(text)[2])
    assert keys[keys.index("Model") + 1] == "Model hash" and "Model hash: 0123456789" in text
    assert "Model hash" not in spec().infotext(seed=3, sampler={"Sampler": "Euler"}, model="tiny")  # not yet computed


def test_rows_of_different_models_never_share_a_pipeline_call():
    one, other = dataclasses.replace(spec(), model="a"), dataclasses.replace(spec(), model="b")
    assert one.batch_key() != other.batch_key()
