"""Schedulers (samplers) by the names requests use, built from diffusers' own classes."""

from __future__ import annotations

from dataclasses import dataclass, field

from imagegen.v1.contract import SCHEDULER_LABELS


@dataclass(frozen=True)
class SchedulerSpec:
    class_name: str
    label: str  # the AUTOMATIC1111 sampler name, written into infotext
    options: dict = field(default_factory=dict)


# The diffusers class (and options) behind each name; the labels are the contract's.
_CLASSES: dict[str, tuple[str, dict]] = {
    "ddim": ("DDIMScheduler", {}),
    "pndm": ("PNDMScheduler", {}),
    "lms": ("LMSDiscreteScheduler", {}),
    "euler": ("EulerDiscreteScheduler", {}),
    "euler_a": ("EulerAncestralDiscreteScheduler", {}),
    "heun": ("HeunDiscreteScheduler", {}),
    "dpmpp_2m": ("DPMSolverMultistepScheduler", {}),
    "dpmpp_2m_karras": ("DPMSolverMultistepScheduler", {"use_karras_sigmas": True}),
    "unipc": ("UniPCMultistepScheduler", {}),
}
SCHEDULERS: dict[str, SchedulerSpec] = {
    name: SchedulerSpec(class_name, SCHEDULER_LABELS[name], options)
    for name, (class_name, options) in _CLASSES.items()
}


def names() -> list[str]:
    return list(SCHEDULERS)


def name_of(scheduler) -> str:
    """The request name of a scheduler instance (the model's own), or its class name."""
    config = scheduler.config
    for name, spec in SCHEDULERS.items():
        if type(scheduler).__name__ == spec.class_name and all(
            config.get(k) == v for k, v in spec.options.items()
        ):
            if name == "dpmpp_2m" and config.get("use_karras_sigmas"):
                continue
            return name
    return type(scheduler).__name__


def label_of(name: str) -> str:
    spec = SCHEDULERS.get(name)
    return spec.label if spec else name


def build(name: str, base_config):
    """A fresh scheduler of the named kind, configured like the model's own."""
    import diffusers

    spec = SCHEDULERS[name]
    cls = getattr(diffusers, spec.class_name)
    return cls.from_config(base_config, **spec.options)


def fresh(name: str, base):
    """A new scheduler instance for one generation: the named kind, or (name "") a copy of `base`,
    the model's own. Fresh each time: multistep schedulers keep state between steps."""
    if not name:
        return type(base).from_config(base.config)
    return build(name, base.config)
