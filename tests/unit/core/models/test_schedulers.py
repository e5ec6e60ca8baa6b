import importlib.util

import diffusers
import pytest

from imagegen.v1.contract import SAMPLERS, SCHEDULE_TYPES
from services.core.models import schedulers

SD1 = diffusers.PNDMScheduler(beta_schedule="scaled_linear", skip_prk_steps=True, steps_offset=1).config
PAIRS = [(name, schedule) for name in schedulers.SCHEDULERS if schedulers.available(name)
         for schedule in schedulers.schedule_types(name)]


def public(config) -> dict:
    return {key: value for key, value in config.items() if not key.startswith("_")}


def test_every_sampler_is_the_contract_s_with_its_automatic_schedule_among_those_it_takes():
    assert set(schedulers.SCHEDULERS) == set(SAMPLERS)
    for name, spec in schedulers.SCHEDULERS.items():
        assert spec.label == SAMPLERS[name][0]
        if not schedulers.available(name):
            continue  # diffusers' stand-in class for a missing package takes no options
        assert spec.automatic in schedulers.schedule_types(name), name
        assert set(schedulers.schedule_types(name)) <= set(SCHEDULE_TYPES)
    assert schedulers.available("dpmpp_sde") == (importlib.util.find_spec("torchsde") is not None)
    assert ("dpmpp_sde" in schedulers.names()) == schedulers.available("dpmpp_sde")
    assert "dpmpp_2m_karras" in schedulers.names()  # the legacy name stays accepted


def test_schedule_types_are_offered_only_where_the_class_takes_their_options():
    assert schedulers.schedule_types("euler_a") == ["uniform", "sgm_uniform"]  # no use_*_sigmas
    assert schedulers.schedule_types("ddim") == ["uniform", "sgm_uniform"]
    assert schedulers.schedule_types("lcm") == ["uniform"]  # its timesteps are its distillation's
    assert schedulers.schedule_types("dpmpp_2m") == list(SCHEDULE_TYPES)


@pytest.mark.parametrize("name, schedule", PAIRS)
def test_a_sampler_with_a_schedule_is_the_diffusers_class_and_options_and_reads_back(name, schedule):
    built = schedulers.build(name, SD1, schedule, seeds=(5,))
    assert type(built).__name__ == schedulers.SCHEDULERS[name].class_name
    for key, value in {**schedulers.SCHEDULERS[name].options, **schedulers.SCHEDULE_OPTIONS[schedule]}.items():
        if key in built.config:
            assert built.config[key] == value, key
    # As a model's own scheduler, it is named so that a request for that name rebuilds it exactly.
    sampler, spacing = schedulers.identify(built)
    again = schedulers.build(sampler, built.config, spacing, seeds=(5,))
    assert public(again.config) == public(built.config)


def test_the_legacy_name_is_dpm_2m_with_karras_and_automatic_is_a1111_s_default():
    legacy = schedulers.build("dpmpp_2m_karras", SD1)
    assert public(legacy.config) == public(schedulers.build("dpmpp_2m", SD1, "karras").config)
    assert schedulers.build("dpmpp_2m", SD1).config.use_karras_sigmas  # A1111: DPM++ 2M's Automatic is Karras
    assert schedulers.build("dpmpp_3m_sde", SD1).config.use_exponential_sigmas
    assert not schedulers.build("euler", SD1).config.use_karras_sigmas


def test_uniform_turns_off_the_model_s_own_sigma_schedule():
    karras_base = diffusers.DPMSolverMultistepScheduler(use_karras_sigmas=True, solver_type="heun").config
    plain = schedulers.build("dpmpp_2m", karras_base, "uniform")
    assert not plain.config.use_karras_sigmas and plain.config.solver_type == "midpoint"
    assert schedulers.identify(diffusers.DPMSolverMultistepScheduler(use_karras_sigmas=True)) == ("dpmpp_2m", "karras")
    assert schedulers.name_of(diffusers.DPMSolverMultistepScheduler.from_config(karras_base)) == \
        "DPMSolverMultistepScheduler"  # heun-solved DPM++ 2M is no sampler here


def test_the_sde_sampler_seeds_its_brownian_noise_per_image():
    pytest.importorskip("torchsde")
    assert schedulers.build("dpmpp_sde", SD1, seeds=(3, 4)).config.noise_sampler_seed == [3, 4]


def test_lcm_is_bounded_by_its_distillation_steps():
    assert schedulers.max_steps("lcm") == 50 and schedulers.max_steps("euler") is None


def test_every_scheduler_follows_the_model_s_prediction_type_and_spacing():
    # SD 2.x models predict v; SDXL spaces its timesteps "leading": a sampler picked by name keeps both,
    # unless its schedule type is a spacing of its own (exponential and beta: linspace, sgm_uniform: trailing).
    base = diffusers.DDIMScheduler(beta_schedule="scaled_linear", prediction_type="v_prediction", steps_offset=1,
                                   timestep_spacing="leading")
    for name in ["", *schedulers.names()]:
        for schedule in ["uniform", "karras"] if name else [""]:
            if name and schedule not in schedulers.schedule_types(schedulers.resolve_sampler(name)[0]):
                continue
            fresh = schedulers.fresh(name, base, schedule if name != "dpmpp_2m_karras" else "")
            assert fresh is not base
            assert fresh.config.prediction_type == "v_prediction", name
            assert fresh.config.timestep_spacing == "leading", name
            assert fresh.config.steps_offset == 1, name
