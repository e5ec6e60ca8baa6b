"""A1111's hires fix fields of /txt2img -> make_request's `hires`, and the service's `hires.*` errors back."""

from __future__ import annotations

import pytest

from gateway_ui.a1111.errors import ApiError
from gateway_ui.a1111.mapping import a1111_field, plan
from gateway_ui.a1111.models import UNSUPPORTED, Txt2ImgRequest


def hires_of(**fields):
    request = plan(Txt2ImgRequest(**fields), {}).requests[0]
    return request.hires if request.HasField("hires") else None


def test_enable_hr_sends_the_second_pass_with_a1111s_defaults():
    assert "enable_hr" not in UNSUPPORTED
    assert hires_of() is None and hires_of(hr_scale=3) is None  # enable_hr off: no second pass
    hires = hires_of(enable_hr=True, width=64, height=64)
    # A1111's request defaults: scale 2, no upscaler named (its default latent mode), steps 0, strength 0.75.
    assert (hires.scale, hires.upscaler, hires.steps, hires.resize_width, hires.resize_height) == (2, "", 0, 0, 0)
    assert hires.denoising_strength == pytest.approx(0.75)
    assert (hires.scheduler, hires.schedule_type, hires.prompt, hires.negative_prompt) == ("", "", "", "")


def test_every_hires_field_reaches_the_request():
    hires = hires_of(enable_hr=True, hr_scale=1.5, hr_upscaler="Latent (nearest-exact)", hr_second_pass_steps=7,
                     hr_resize_x=1024, hr_resize_y=0, denoising_strength=0.4, sampler_name="DPM++ 2M",
                     scheduler="Karras", hr_sampler_name="Euler a", hr_scheduler="Uniform", hr_prompt="sharp",
                     hr_negative_prompt="blurry", hr_checkpoint_name="Use same checkpoint")
    assert (hires.scale, hires.upscaler, hires.steps, hires.resize_width, hires.resize_height) == (
        1.5, "Latent (nearest-exact)", 7, 1024, 0)
    assert hires.denoising_strength == pytest.approx(0.4)
    assert (hires.scheduler, hires.schedule_type, hires.prompt, hires.negative_prompt) == (
        "euler_a", "uniform", "sharp", "blurry")


def test_the_second_pass_sampler_follows_a1111s_use_same_rules():
    first = {"enable_hr": True, "sampler_name": "DPM++ 2M", "scheduler": "Karras"}
    same = hires_of(**first, hr_sampler_name="Use same sampler", hr_scheduler="Use same scheduler")
    assert (same.scheduler, same.schedule_type) == ("", "")
    assert (hires_of(**first, hr_sampler_name="DPM++ 2M").scheduler) == ""  # the first pass's, named again
    # No hr_scheduler: the first pass's schedule type, for the second pass's sampler (A1111 1.9+).
    other = hires_of(**first, hr_sampler_name="Euler")
    assert (other.scheduler, other.schedule_type) == ("euler", "karras")
    own_schedule = hires_of(**first, hr_scheduler="Exponential")
    assert (own_schedule.scheduler, own_schedule.schedule_type) == ("dpmpp_2m", "exponential")


@pytest.mark.parametrize("fields, named", [
    ({"hr_upscaler": "Latent (bilinear)"}, "hr_upscaler"),
    ({"hr_checkpoint_name": "another-model"}, "hr_checkpoint_name"),
    ({"hr_sampler_name": "DPM adaptive"}, "hr_sampler_name"),
    ({"hr_sampler_name": "Euler", "hr_scheduler": "Align Your Steps"}, "hr_scheduler"),
    ({"hr_second_pass_steps": -1}, "hr_second_pass_steps"),
    ({"hr_resize_x": 2**40}, "hr_resize_x"),
])
def test_what_cannot_be_sent_is_a_422_naming_a1111s_field(fields, named):
    with pytest.raises(ApiError) as err:
        plan(Txt2ImgRequest(enable_hr=True, **fields), {})
    assert err.value.status == 422 and err.value.detail[0]["loc"] == ["body", named]


def test_the_service_s_hires_fields_come_back_in_a1111s_names():
    assert a1111_field("hires.scale") == "hr_scale"
    assert a1111_field("hires.resize_width") == "hr_resize_x" and a1111_field("hires.resize_height") == "hr_resize_y"
    assert a1111_field("hires.upscaler") == "hr_upscaler" and a1111_field("hires.steps") == "hr_second_pass_steps"
    assert a1111_field("hires.denoising_strength") == "denoising_strength"
    assert a1111_field("hires.scheduler") == "hr_sampler_name" and a1111_field("hires.schedule_type") == "hr_scheduler"
    assert a1111_field("hires.prompt") == "hr_prompt" and a1111_field("hires.negative_prompt") == "hr_negative_prompt"
    assert a1111_field("hires") == "enable_hr"
