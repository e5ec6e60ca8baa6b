"""Request checks: each bad field is refused naming it; unset fields get the service's defaults."""

import math

import pytest

from imagegen.v1 import imagegen_pb2 as pb
from imagegen.v1.contract import JPEG, MAX_SEED, PNG
from services.core.checks import check_fit, check_map_size, check_params, check_strength, output_size
from services.core.config import load_config
from services.core.errors import InvalidArgument
from services.txt2img.mode import MODE

CONFIG = load_config(MODE, [], environ={})
LIMITS = CONFIG.limits


def refused(params: pb.GenerationParams, config=CONFIG) -> InvalidArgument:
    with pytest.raises(InvalidArgument) as info:
        check_params(params, config)
    return info.value


@pytest.mark.parametrize("params, field, words", [
    (pb.GenerationParams(prompt="x" * (LIMITS.max_prompt_chars + 1)), "params.prompt", "over the limit"),
    (pb.GenerationParams(prompt="a\x00b"), "params.prompt", "NUL"),
    (pb.GenerationParams(negative_prompt="a\x00b"), "params.negative_prompt", "NUL"),
    (pb.GenerationParams(num_inference_steps=LIMITS.max_steps + 1), "params.num_inference_steps",
     "over the limit"),
    (pb.GenerationParams(guidance_scale=math.nan), "params.guidance_scale", "outside"),
    (pb.GenerationParams(guidance_scale=-1.0), "params.guidance_scale", "outside"),
    (pb.GenerationParams(guidance_scale=LIMITS.max_guidance_scale + 1), "params.guidance_scale", "outside"),
    (pb.GenerationParams(width=65), "params.width", "not a multiple of 8"),
    (pb.GenerationParams(width=56), "params.width", "outside 64.."),
    (pb.GenerationParams(width=LIMITS.max_width + 8), "params.width", "outside 64.."),
    (pb.GenerationParams(height=65), "params.height", "not a multiple of 8"),
    (pb.GenerationParams(num_images=LIMITS.max_images + 1), "params.num_images", "over the limit"),
    (pb.GenerationParams(seed=MAX_SEED, num_images=2), "params.seed", "at most"),
    (pb.GenerationParams(scheduler="nope"), "params.scheduler", "unknown scheduler"),
    (pb.GenerationParams(output_format=99), "params.output_format", "unknown format"),
    (pb.GenerationParams(quality=101), "params.quality", "outside 1..100"),
])
def test_each_bad_field_is_refused_by_name(params, field, words):
    error = refused(params)
    assert error.field == field and words in error.problem
    assert error.message.startswith(field + ":")


def test_the_largest_seed_with_one_image_is_accepted():
    assert check_params(pb.GenerationParams(seed=MAX_SEED), CONFIG).seeds == (MAX_SEED,)


def test_defaults_apply_when_fields_are_unset():
    checked = check_params(pb.GenerationParams(prompt="a fox"), CONFIG)
    defaults = CONFIG.defaults
    assert checked.prompt == "a fox" and checked.negative_prompt == ""
    assert checked.steps == defaults.num_inference_steps
    assert checked.guidance_scale == defaults.guidance_scale
    assert checked.quality == defaults.quality
    assert checked.output_format == PNG and checked.scheduler == ""
    assert checked.width is None and checked.height is None
    assert len(checked.seeds) == 1 and 0 <= checked.seeds[0] < 2**32


def test_given_fields_are_kept():
    params = pb.GenerationParams(num_inference_steps=7, guidance_scale=0.0, width=64, height=128, seed=5,
                                 num_images=3, scheduler="euler_a", output_format=pb.IMAGE_FORMAT_JPEG,
                                 quality=50)
    checked = check_params(params, CONFIG)
    assert (checked.steps, checked.guidance_scale, checked.width, checked.height) == (7, 0.0, 64, 128)
    assert checked.seeds == (5, 6, 7)  # consecutive
    assert (checked.scheduler, checked.output_format, checked.quality) == ("euler_a", JPEG, 50)


def test_float32_guidance_reads_as_written():
    assert check_params(pb.GenerationParams(guidance_scale=7.1), CONFIG).guidance_scale == 7.1


def test_strength_default_value_and_limits():
    assert check_strength(pb.Img2ImgRequest(), 0.8, 10) == (0.8, 8)
    assert check_strength(pb.Img2ImgRequest(strength=0.6), 0.8, 10) == (0.6, 6)  # not 0.6000000238
    for bad in (math.nan, -0.1, 1.5):
        with pytest.raises(InvalidArgument) as info:
            check_strength(pb.Img2ImgRequest(strength=bad), 0.8, 10)
        assert info.value.field == "strength"


def test_strength_that_runs_no_step_is_refused():
    with pytest.raises(InvalidArgument, match="no denoising step") as info:
        check_strength(pb.Img2ImgRequest(strength=0.05), 0.8, 10)
    assert info.value.field == "strength"
    assert check_strength(pb.Img2ImgRequest(strength=0.1), 0.8, 10) == (0.1, 1)


@pytest.mark.parametrize("strength, steps", [(1 / 3, 3), (1 / 7, 7), (1 / 9, 9), (1 / 30, 30), (0.04, 25)])
def test_strength_as_float32_runs_the_step_it_asks_for(strength, steps):
    # Sent as float32, these are a hair off; the step they ask for is run, not refused or lost.
    value, runs = check_strength(pb.Img2ImgRequest(strength=strength), 0.8, steps)
    assert runs == 1
    # The value recorded (infotext) is the same float32 again: sending it back runs the same steps.
    assert check_strength(pb.Img2ImgRequest(strength=value), 0.8, steps) == (value, 1)


def test_a_scheduler_name_is_quoted_cut_short():
    with pytest.raises(InvalidArgument) as info:
        check_params(pb.GenerationParams(scheduler="x" * 10_000), CONFIG)
    assert info.value.field == "params.scheduler" and len(info.value.message) < 300
    assert "10000 characters" in info.value.message


def test_fit_by_name_unspecified_is_none_and_unknown_is_refused():
    assert check_fit(pb.Img2ImgRequest()) is None
    assert check_fit(pb.Img2ImgRequest(fit=pb.FIT_MODE_CROP)) == "crop"
    assert check_fit(pb.InpaintRequest(fit=pb.FIT_MODE_KEEP)) == "keep"
    with pytest.raises(InvalidArgument) as info:
        check_fit(pb.Img2ImgRequest(fit=99))
    assert info.value.field == "fit"


def sized(width=0, height=0):
    return check_params(pb.GenerationParams(width=width, height=height), CONFIG)


def test_without_an_input_image_the_requested_or_default_size_is_used():
    default = CONFIG.defaults.size
    assert output_size(sized(), CONFIG) == ((default, default), "resize")
    assert output_size(sized(width=64), CONFIG) == ((64, default), "resize")
    assert output_size(sized(64, 128), CONFIG) == ((64, 128), "resize")


def test_keep_uses_the_input_size_rounded_down_to_multiples_of_8():
    assert output_size(sized(), CONFIG, (100, 75)) == ((96, 72), "resize")
    assert output_size(sized(width=64), CONFIG, (100, 75), "keep") == ((96, 72), "resize")


def test_both_sides_given_resize_or_crop_the_input():
    assert output_size(sized(64, 128), CONFIG, (100, 75)) == ((64, 128), "resize")
    assert output_size(sized(64, 128), CONFIG, (100, 75), "crop") == ((64, 128), "crop")


@pytest.mark.parametrize("fit", [None, "resize", "crop"])
def test_one_side_given_the_other_follows_the_input_s_aspect_ratio(fit):
    assert output_size(sized(width=192), CONFIG, (96, 64), fit)[0] == (192, 128)
    assert output_size(sized(height=128), CONFIG, (96, 64), fit)[0] == (192, 128)
    assert output_size(sized(width=100 * 8), CONFIG, (1000, 333), fit)[0] == (800, 264)  # rounded to 8


def test_one_side_whose_other_side_falls_outside_the_limits_names_the_given_side():
    with pytest.raises(InvalidArgument, match="height would be 16") as info:
        output_size(sized(width=64), CONFIG, (400, 100))
    assert info.value.field == "params.width"


@pytest.mark.parametrize("source", [(60, 100), (100, LIMITS.max_height + 8)])
def test_keep_refuses_images_outside_the_limits(source):
    with pytest.raises(InvalidArgument, match="outside") as info:
        output_size(sized(), CONFIG, source)
    assert info.value.field == "init_image.data"


def test_pixels_over_the_limit_are_refused_naming_the_field_that_set_them():
    small = load_config(MODE, ["--max-pixels", str(64 * 64), "--default-size", "64"], environ={})
    params = check_params(pb.GenerationParams(), small)
    with pytest.raises(InvalidArgument, match="pixels") as info:
        output_size(params, small, (128, 128))
    assert info.value.field == "init_image.data"
    with pytest.raises(InvalidArgument, match="pixels") as info:
        output_size(check_params(pb.GenerationParams(width=128), small), small)
    assert info.value.field == "params.width"
    with pytest.raises(InvalidArgument, match="64x128") as info:
        output_size(check_params(pb.GenerationParams(width=64, height=128), small), small, (64, 64))
    assert info.value.field == "params.width"


@pytest.mark.parametrize("value", [0, 13])
def test_clip_skip_outside_1_to_12_is_refused(value):
    error = refused(pb.GenerationParams(clip_skip=value))
    assert error.field == "params.clip_skip" and "outside 1..12" in error.problem


def test_clip_skip_defaults_to_the_last_layer():
    assert check_params(pb.GenerationParams(), CONFIG).clip_skip == 1
    assert check_params(pb.GenerationParams(clip_skip=2), CONFIG).clip_skip == 2


def test_lora_tags_of_both_prompts_are_taken(tmp_path):
    for name in ("film", "blur"):
        (tmp_path / f"{name}.safetensors").write_bytes(b"\x02\x00\x00\x00\x00\x00\x00\x00{}")
    config = load_config(MODE, ["--lora-dir", str(tmp_path)], environ={})
    checked = check_params(pb.GenerationParams(prompt="a fox <lora:film:0.6>", negative_prompt="<lora:blur:-1>"),
                           config)
    assert checked.loras == (("blur", -1.0), ("film", 0.6))  # what runs: by name
    assert checked.prompt == "a fox <lora:film:0.6>"  # the text as sent: infotext records the tags, as A1111


@pytest.mark.parametrize("field", ["prompt", "negative_prompt"])
def test_a_malformed_lora_tag_is_refused_naming_its_prompt(field):
    error = refused(pb.GenerationParams(**{field: "a fox <lora:film:strong>"}))
    assert error.field == f"params.{field}" and "not a number" in error.problem


@pytest.mark.parametrize("field", ["prompt", "negative_prompt"])
@pytest.mark.parametrize("text", ["(x:" + "9" * 50 + ")", "(" * 932 + "x" + ")" * 932])
def test_an_attention_weight_past_float32_is_refused_naming_its_prompt(field, text):
    """Before: OK with an all-black image (the embeddings overflowed to inf)."""
    error = refused(pb.GenerationParams(**{field: f"a {text} fox"}))
    assert error.field == f"params.{field}" and "outside -100..100" in error.problem
    assert len(error.message) < 200  # the text is quoted short, never whole


def test_strong_weights_within_the_bound_are_accepted():
    assert check_params(pb.GenerationParams(prompt="a (fox:100), ((red:9)), [[[blur]]]"), CONFIG).prompt


def test_a_preprocess_size_takes_the_images_side_where_left_0_and_keeps_to_the_limits():
    from PIL import Image

    img, limits = Image.new("RGB", (300, 200)), LIMITS
    assert check_map_size(pb.PreprocessRequest(width=96), img, limits) == (96, 200)
    assert check_map_size(pb.PreprocessRequest(height=64), img, limits) == (300, 64)
    with pytest.raises(InvalidArgument) as err:
        check_map_size(pb.PreprocessRequest(height=limits.max_height + 1), img, limits)
    assert err.value.message.startswith("height:")
