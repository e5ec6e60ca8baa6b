"""Samplers and schedule types by the names requests use, built from diffusers' own classes.

The classes and options follow diffusers' table "A1111/k-diffusion -> Diffusers" (docs: api/schedulers/
overview): a sampler is a class and the options that make it that sampler; a schedule type is options too,
offered for a sampler only where its class's __init__ takes every one of them. The names and A1111 labels
are the contract's (imagegen/v1/contract.py SAMPLERS, SCHEDULE_TYPES).
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
from dataclasses import dataclass, field

from imagegen.v1.contract import LEGACY_SAMPLERS, SAMPLERS, resolve_sampler

_SIGMAS = ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas")
# Each schedule type's options. Uniform turns the sigma options off (a model's own config may have one
# on) and keeps the model's timestep spacing; Exponential and Beta space linearly, as diffusers' table says.
SCHEDULE_OPTIONS: dict[str, dict] = {
    "uniform": {key: False for key in _SIGMAS},
    "karras": {"use_karras_sigmas": True, "use_exponential_sigmas": False, "use_beta_sigmas": False},
    "exponential": {"timestep_spacing": "linspace", "use_karras_sigmas": False,
                    "use_exponential_sigmas": True, "use_beta_sigmas": False},
    "sgm_uniform": {"timestep_spacing": "trailing"},
    "beta": {"timestep_spacing": "linspace", "use_karras_sigmas": False, "use_exponential_sigmas": False,
             "use_beta_sigmas": True},
}
# The options a schedule type is known by in a model's own config (sgm_uniform is then the model's spacing).
_MARKS = {"karras": "use_karras_sigmas", "exponential": "use_exponential_sigmas", "beta": "use_beta_sigmas"}

_MULTISTEP = "DPMSolverMultistepScheduler"
_DPM_SOLVER = {"algorithm_type": "dpmsolver++", "solver_order": 2, "solver_type": "midpoint"}
_SDE = {**_DPM_SOLVER, "algorithm_type": "sde-dpmsolver++"}


@dataclass(frozen=True)
class SchedulerSpec:
    class_name: str
    label: str  # the AUTOMATIC1111 sampler name, written into infotext
    options: dict = field(default_factory=dict)  # what makes the class this sampler
    automatic: str = "uniform"  # the schedule type "" means (A1111's Automatic for it)
    needs: str = ""  # a module the class needs that diffusers does not install
    only: tuple[str, ...] = ()  # the schedule types it takes where its signature says more than it does


_CLASSES: dict[str, tuple] = {
    "dpmpp_2m": (_MULTISTEP, _DPM_SOLVER),
    # A port of k-diffusion's sample_dpmpp_sde (Brownian-tree noise, torchsde); diffusers' table names the
    # deterministic DPMSolverSinglestepScheduler for it, which is another image.
    "dpmpp_sde": ("DPMSolverSDEScheduler", {}, "torchsde"),
    "dpmpp_2m_sde": (_MULTISTEP, _SDE),
    "dpmpp_2m_sde_heun": (_MULTISTEP, {**_SDE, "solver_type": "heun"}),
    "dpmpp_3m_sde": (_MULTISTEP, {**_SDE, "solver_order": 3}),
    "euler_a": ("EulerAncestralDiscreteScheduler", {}),
    "euler": ("EulerDiscreteScheduler", {}),
    "lms": ("LMSDiscreteScheduler", {}),
    "heun": ("HeunDiscreteScheduler", {}),
    "dpm2": ("KDPM2DiscreteScheduler", {}),
    "dpm2_a": ("KDPM2AncestralDiscreteScheduler", {}),
    "ddim": ("DDIMScheduler", {}),
    "pndm": ("PNDMScheduler", {}),
    "unipc": ("UniPCMultistepScheduler", {}),
    # Latent Consistency: for LCM-distilled models (or an LCM LoRA), 2-8 steps at CFG 1-2.
    # Its timesteps follow its distillation schedule, whatever timestep_spacing says: uniform only.
    "lcm": ("LCMScheduler", {}, "", ("uniform",)),
}
# The classes whose step takes many images' latents at once, each image's noise from its own generator (a
# list, one per image: diffusers' randn_tensor draws image i from generator i), every image as it is
# alone (tests/unit/core/engine/test_cohorts.py steps each against its images alone). Not
# DPMSolverSDEScheduler: its noise comes from Brownian trees its instance seeds from its images' seeds.
BATCHED_STEPS = frozenset({
    "DPMSolverMultistepScheduler", "EulerAncestralDiscreteScheduler", "EulerDiscreteScheduler",
    "LMSDiscreteScheduler", "HeunDiscreteScheduler", "KDPM2DiscreteScheduler", "KDPM2AncestralDiscreteScheduler",
    "DDIMScheduler", "DDPMScheduler", "PNDMScheduler", "UniPCMultistepScheduler", "LCMScheduler",
})
SCHEDULERS: dict[str, SchedulerSpec] = {
    name: SchedulerSpec(row[0], SAMPLERS[name][0], row[1], SAMPLERS[name][1], *row[2:])
    for name, row in _CLASSES.items()
}


def _diffusers_class(class_name: str):
    import diffusers

    return getattr(diffusers, class_name)


def available(name: str) -> bool:
    """Whether the sampler (or a legacy name of one) can run here: its extra module is installed."""
    name = LEGACY_SAMPLERS.get(name, (name,))[0]
    spec = SCHEDULERS.get(name)
    return spec is not None and (not spec.needs or importlib.util.find_spec(spec.needs) is not None)


def names() -> list[str]:
    """Every scheduler name a request may send: the samplers that run here, then the legacy names."""
    return [name for name in [*SCHEDULERS, *LEGACY_SAMPLERS] if available(name)]


@functools.cache
def _takes(class_name: str) -> frozenset[str]:
    return frozenset(inspect.signature(_diffusers_class(class_name).__init__).parameters)


def schedule_types(name: str) -> list[str]:
    """The schedule types a sampler takes: those whose options its class's __init__ all has."""
    spec = SCHEDULERS[name]
    takes = _takes(spec.class_name)
    return [schedule for schedule, options in SCHEDULE_OPTIONS.items()
            if (schedule == "uniform" or set(options) <= takes) and (not spec.only or schedule in spec.only)]


def options_for(name: str, schedule_type: str) -> dict:
    """The keyword arguments of `from_config` for a sampler with a schedule type it takes."""
    spec = SCHEDULERS[name]
    takes = _takes(spec.class_name)
    return {**spec.options, **{k: v for k, v in SCHEDULE_OPTIONS[schedule_type].items() if k in takes}}


def max_steps(name: str) -> int | None:
    """The most steps a sampler takes: LCM's timesteps come from its distillation schedule, and diffusers
    refuses more steps than that (its original_inference_steps); None: no bound of its own."""
    parameter = inspect.signature(_diffusers_class(SCHEDULERS[name].class_name).__init__).parameters.get(
        "original_inference_steps")
    return parameter.default if parameter is not None else None


def name_of(scheduler) -> str:
    """The request name of a scheduler instance (the model's own), or its class name."""
    found = identify(scheduler)
    return found[0] if found else type(scheduler).__name__


def identify(scheduler) -> tuple[str, str] | None:
    """(sampler, schedule type) of a scheduler instance that a request for them rebuilds exactly; None if
    no sampler here is it. Its spacing is the model's, so a schedule shown by spacing alone is uniform."""
    config, class_name = scheduler.config, type(scheduler).__name__
    for name, spec in SCHEDULERS.items():
        if spec.class_name == class_name and all(config.get(k) == v for k, v in spec.options.items()):
            marked = [s for s, key in _MARKS.items() if config.get(key)]
            schedule = marked[0] if len(marked) == 1 else "uniform" if not marked else None
            if schedule is not None and all(config.get(key) == value
                                            for key, value in options_for(name, schedule).items()):
                return name, schedule
            return None
    return None


def build(name: str, base_config, schedule_type: str = "", seeds: tuple[int, ...] = ()):
    """A fresh scheduler of the named kind and schedule type ("": its Automatic), configured like the
    model's own. `seeds`: the images' seeds, for samplers that draw their noise from a seed of their own."""
    name, schedule_type = resolve_sampler(name, schedule_type)
    spec = SCHEDULERS[name]
    takes, options = _takes(spec.class_name), options_for(name, schedule_type)
    if "noise_sampler_seed" in takes:
        # One Brownian tree per image, each from its seed: an image is the same alone or in a batch.
        options["noise_sampler_seed"] = list(seeds) or None
    # Only what the class takes: the rest (PNDM's skip_prk_steps for LCM) would be ignored with a warning.
    config = {key: value for key, value in base_config.items() if key in takes or key.startswith("_")}
    return _diffusers_class(spec.class_name).from_config(config, **options)


def fresh(name: str, base, schedule_type: str = "", seeds: tuple[int, ...] = ()):
    """A new scheduler instance for one generation: the named kind, or (name "") a copy of `base`,
    the model's own. Fresh each time: multistep schedulers keep state between steps."""
    if not name:
        return type(base).from_config(base.config)
    return build(name, base.config, schedule_type, seeds)


def infotext_sampler(name: str, schedule_type: str, base) -> tuple[str, str] | None:
    """(sampler, schedule type it ran) for infotext: the request's, or the model's own when `name` is "";
    None when the model's own is no sampler here (infotext then names its class)."""
    if not name:
        return identify(base)
    return resolve_sampler(name, schedule_type)
