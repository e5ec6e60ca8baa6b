"""Every sampler with every schedule type it takes, on a real txt2img service: the image is diffusers' own
StableDiffusionPipeline's with that scheduler configuration (written out here from diffusers' table
"A1111/k-diffusion -> Diffusers", not read from the service's code); its infotext names it as A1111 1.9+
does and reads back to the same pair; a replay of it gives the same pixels."""

from __future__ import annotations

import importlib.util
import inspect
import io

import diffusers
import grpc
import numpy as np
import pytest
import torch
from PIL import Image

from imagegen.v1.contract import SAMPLERS, resolve_sampler
from services.client.infotext import parse_parameters
from services.client.replay import replay_request
from services.core.models.presets import ensure_tiny
from tests.conftest import CACHE_DIR, RunningService, request_for

MAX_DIFF = 3  # of 255, per channel: the tolerance of the step engine's other reference tests
HAS_TORCHSDE = importlib.util.find_spec("torchsde") is not None
SDE = {"algorithm_type": "sde-dpmsolver++"}
# A1111's sampler -> the diffusers class and options that are it (diffusers' scheduler overview table).
DIFFUSERS = {
    "dpmpp_2m": ("DPMSolverMultistepScheduler", {}),
    "dpmpp_sde": ("DPMSolverSDEScheduler", {}),
    "dpmpp_2m_sde": ("DPMSolverMultistepScheduler", SDE),
    "dpmpp_2m_sde_heun": ("DPMSolverMultistepScheduler", {**SDE, "solver_type": "heun"}),
    "dpmpp_3m_sde": ("DPMSolverMultistepScheduler", {**SDE, "solver_order": 3}),
    "euler_a": ("EulerAncestralDiscreteScheduler", {}),
    "euler": ("EulerDiscreteScheduler", {}),
    "lms": ("LMSDiscreteScheduler", {}),
    "heun": ("HeunDiscreteScheduler", {}),
    "dpm2": ("KDPM2DiscreteScheduler", {}),
    "dpm2_a": ("KDPM2AncestralDiscreteScheduler", {}),
    "ddim": ("DDIMScheduler", {}),
    "pndm": ("PNDMScheduler", {}),
    "unipc": ("UniPCMultistepScheduler", {}),
    "lcm": ("LCMScheduler", {}),
}
# A1111's schedule types -> options (the same table); uniform: the model's own spacing.
SCHEDULES = {
    "uniform": {},
    "karras": {"use_karras_sigmas": True},
    "exponential": {"timestep_spacing": "linspace", "use_exponential_sigmas": True},
    "sgm_uniform": {"timestep_spacing": "trailing"},
    "beta": {"timestep_spacing": "linspace", "use_beta_sigmas": True},
}
ALL = list(SCHEDULES)
TIMESTEP_ONLY = ["uniform", "sgm_uniform"]  # classes without sigma schedules
EXPECTED_SCHEDULES = {name: ALL for name in DIFFUSERS} | {
    "euler_a": TIMESTEP_ONLY, "ddim": TIMESTEP_ONLY, "pndm": TIMESTEP_ONLY, "lcm": ["uniform"]}
# Every pair, and each sampler with no schedule type (A1111's Automatic).
PAIRS = [pytest.param(name, schedule, id=f"{name}-{schedule or 'automatic'}",
                      marks=[pytest.mark.skipif(name == "dpmpp_sde" and not HAS_TORCHSDE, reason="needs torchsde")])
         for name, schedules in EXPECTED_SCHEDULES.items() for schedule in ["", *schedules]]
SEED, STEPS = 11, 4


@pytest.fixture(scope="module")
def service():
    running = RunningService("txt2img")
    yield running
    running.stop()


@pytest.fixture(scope="module")
def reference_pipe():
    return diffusers.StableDiffusionPipeline.from_pretrained(ensure_tiny(CACHE_DIR, inpaint=False),
                                                             safety_checker=None, requires_safety_checker=False)


def diffusers_scheduler(config, name: str, schedule: str):
    class_name, options = DIFFUSERS[name]
    extra = {"noise_sampler_seed": SEED} if name == "dpmpp_sde" else {}  # its Brownian tree's seed
    return getattr(diffusers, class_name).from_config(config, **options, **SCHEDULES[schedule], **extra)


def diffusers_image(pipe, name: str, schedule: str) -> np.ndarray:
    own = pipe.scheduler
    pipe.scheduler = diffusers_scheduler(own.config, name, schedule)
    try:
        with torch.inference_mode():
            image = pipe("a red fox", num_inference_steps=STEPS, guidance_scale=7.5, width=64, height=64,
                         generator=torch.Generator("cpu").manual_seed(SEED)).images[0]
    finally:
        pipe.scheduler = own
    return np.asarray(image, dtype=np.int16)


def pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.int16)


def test_get_info_lists_every_sampler_with_its_schedule_types(service):
    info = service.client.info()
    listed = {sampler.name: sampler for sampler in info.samplers}
    expected = {name for name in EXPECTED_SCHEDULES if name != "dpmpp_sde" or HAS_TORCHSDE}
    assert set(listed) == expected
    for name, sampler in listed.items():
        assert (sampler.label, sampler.automatic) == SAMPLERS[name]
        assert list(sampler.schedule_types) == EXPECTED_SCHEDULES[name], name
    assert "dpmpp_2m_karras" in info.schedulers  # the legacy name is still accepted


@pytest.mark.parametrize("name, schedule", PAIRS)
def test_each_sampler_and_schedule_is_diffusers_own_and_reads_back(service, reference_pipe, name, schedule):
    request = request_for("txt2img", prompt="a red fox", seed=SEED, steps=STEPS, guidance_scale=7.5,
                          scheduler=name, schedule_type=schedule)
    made = service.client.generate(request).images[0]
    ran = resolve_sampler(name, schedule)[1]  # "" is the sampler's A1111 Automatic
    assert np.abs(pixels(made.data) - diffusers_image(reference_pipe, name, ran)).max() <= MAX_DIFF
    params = parse_parameters(made.infotext)
    assert params.problems == ()
    assert resolve_sampler(params.scheduler, params.schedule_type) == (name, ran)
    assert f"Sampler: {SAMPLERS[name][0]}," in made.infotext
    again, warnings = replay_request(params, service.client.info())
    assert warnings == [] and service.client.generate(again).images[0].data == made.data


@pytest.mark.parametrize("name, schedule", PAIRS)
def test_each_sampler_and_schedule_is_exactly_diffusers_configuration(service, reference_pipe, name, schedule):
    # The tiny model's pixels barely move between some schedules (Euler with Karras differs from Uniform by
    # 2-6 of 255): the scheduler the service builds is compared too, exactly, timesteps and sigmas included.
    ran = resolve_sampler(name, schedule)[1]
    ours = service.runtime.model.scheduler(request_spec(service, name, schedule), [SEED])
    theirs = diffusers_scheduler(reference_pipe.scheduler.config, name, ran)
    assert type(ours) is type(theirs)
    public = set(inspect.signature(type(theirs).__init__).parameters) - {"self", "noise_sampler_seed"}
    assert {key: ours.config[key] for key in public} == {key: theirs.config[key] for key in public}
    for scheduler in (ours, theirs):
        scheduler.set_timesteps(STEPS)
    assert torch.equal(ours.timesteps, theirs.timesteps)
    if hasattr(theirs, "sigmas"):
        assert torch.allclose(torch.as_tensor(ours.sigmas), torch.as_tensor(theirs.sigmas))


def request_spec(service, name: str, schedule: str):
    return service.runtime.mode.check(request_for("txt2img", scheduler=name, schedule_type=schedule),
                                      service.config)


@pytest.mark.parametrize("name", [pytest.param("dpmpp_sde", marks=pytest.mark.skipif(not HAS_TORCHSDE,
                                                                                   reason="needs torchsde")),
                                  "dpmpp_2m_sde", "euler_a"])
def test_a_noisy_sampler_s_image_in_a_batch_is_its_image_alone(service, name):
    # Each image draws its noise from its own seed (DPM++ SDE: a Brownian tree per image).
    batch = service.client.generate(request_for("txt2img", seed=SEED, scheduler=name, num_images=2)).images
    alone = service.client.generate(request_for("txt2img", seed=SEED + 1, scheduler=name)).images[0]
    assert np.abs(pixels(batch[1].data) - pixels(alone.data)).max() <= MAX_DIFF
    assert np.abs(pixels(batch[0].data) - pixels(batch[1].data)).max() > MAX_DIFF  # two seeds, two images


def test_the_legacy_name_is_dpm_2m_karras(service):
    legacy = service.client.generate(request_for("txt2img", seed=SEED, scheduler="dpmpp_2m_karras")).images[0]
    plain = service.client.generate(request_for("txt2img", seed=SEED, scheduler="dpmpp_2m",
                                                schedule_type="karras")).images[0]
    assert legacy.data == plain.data
    assert "Sampler: DPM++ 2M, Schedule type: Karras," in legacy.infotext


@pytest.mark.parametrize("overrides, field, words", [
    ({"scheduler": "euler_a", "schedule_type": "karras"}, "params.schedule_type", "uniform, sgm_uniform"),
    ({"scheduler": "euler", "schedule_type": "align_your_steps"}, "params.schedule_type", "karras"),
    ({"scheduler": "", "schedule_type": "karras"}, "params.schedule_type", "needs params.scheduler"),
    ({"scheduler": "dpmpp_2m_karras", "schedule_type": "beta"}, "params.schedule_type", "'dpmpp_2m'"),
    ({"scheduler": "lcm", "steps": 60}, "params.num_inference_steps", "50 steps"),
], ids=["not-for-this-sampler", "unknown", "without-a-sampler", "legacy-with-another", "lcm-too-many-steps"])
def test_a_schedule_a_sampler_cannot_follow_is_refused_naming_the_field(service, overrides, field, words):
    with pytest.raises(grpc.RpcError) as err:
        service.client.generate(request_for("txt2img", **overrides))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in err.value.violations] == [field] and words in err.value.details(), err.value.details()
    assert len(service.client.generate(request_for("txt2img")).images) == 1  # and it keeps serving


@pytest.mark.skipif(HAS_TORCHSDE, reason="only where torchsde is missing")
def test_without_torchsde_dpm_sde_is_refused_saying_what_is_missing(service):
    with pytest.raises(grpc.RpcError) as err:
        service.client.generate(request_for("txt2img", scheduler="dpmpp_sde"))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "torchsde" in err.value.details()
    assert [v.field for v in err.value.violations] == ["params.scheduler"]
