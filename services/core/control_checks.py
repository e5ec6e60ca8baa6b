"""ControlNet units' checks: every field of params.control refused naming it before any model work, and
each unit's control map made (decoded, preprocessed, fitted to the output size; kept detected, to fit
again at a hires fix's size) for the engine.

A mode calls `check_control` once it knows its output size (and its init image, which a unit without
an image of its own uses, as sd-webui-controlnet does); the runtime calls `check_family` once it knows
the request's model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

from imagegen.v1 import imagegen_pb2 as pb
from imagegen.v1.contract import (CONTROL_MODE_LABELS, CONTROL_RESIZE_LABELS, DEFAULT_CONTROL_RESIZE,
                                  MAX_CONTROL_WEIGHT)
from imagegen.v1.infotext import ControlNetEntry, controlnet_infotext

from .checks import check_image, lora_choices, quote, short_float
from .config import ServiceConfig
from .errors import InvalidArgument
from .imaging import preprocessors
from .models import controlnets


@dataclass(frozen=True)
class ControlSpec:
    """One checked unit, as the engine runs it."""

    field: str  # "params.control[i]": what its refusals name
    model: str  # the ControlNet's name in --controlnet-dir
    family: str  # the ControlNet's family: the request's model's must be the same
    image: Any  # the control map, PIL RGB at the output's width x height
    weight: float
    guidance_start: float
    guidance_end: float
    control_mode: int  # pb.ControlMode, never UNSPECIFIED
    infotext: ControlNetEntry  # the unit as sd-webui-controlnet's infotext records it
    # The detected map, fitted again at another size (a hires fix's second pass, as the extension's
    # hr_control); None for a map a mode placed itself (inpaint's only-masked cut-out), used as it is.
    source: preprocessors.ControlMap | None = None

    def image_at(self, width: int, height: int) -> Any:
        """The control map at width x height: `image` at the output's size, else the detected map fitted
        there by the unit's resize mode."""
        if self.image.size == (width, height) or self.source is None:
            return self.image
        return self.source.at(width, height)

    @property
    def soft(self) -> bool:
        """Soft injection: residual i of n scaled by SOFT_INJECTION_BASE^(n-1-i) (both modes but balanced)."""
        return self.control_mode != pb.CONTROL_MODE_BALANCED

    @property
    def conditional_only(self) -> bool:
        """Under guidance, the residuals go into the conditional half only ("ControlNet is more important")."""
        return self.control_mode == pb.CONTROL_MODE_CONTROLNET


def check_control(params: pb.GenerationParams, config: ServiceConfig, width: int, height: int, seed: int,
                  init_image=None, place: Callable | None = None) -> tuple[ControlSpec, ...]:
    """The request's units, checked, their maps made at width x height. `init_image`: the decoded input a
    unit without an image of its own uses (None: an image is required); `place(unit, image)`: how a mode
    makes a unit's map when fitting it to the output is not enough (inpaint's only-masked cut-out)."""
    units = params.control
    if not units:
        return ()
    most = config.limits.max_control_units
    if len(units) > most:
        raise InvalidArgument("params.control", f"{len(units)} units; at most {most}")
    found = controlnets.available(config.controlnet_dir)
    checked = []
    for index, unit in enumerate(units):
        field = f"params.control[{index}]"
        entry = _controlnet(unit.model, found, config, f"{field}.model")
        weight = _bounded(unit.weight if unit.HasField("weight") else 1.0, f"{field}.weight", 0.0, MAX_CONTROL_WEIGHT)
        start = _bounded(unit.guidance_start if unit.HasField("guidance_start") else 0.0,
                         f"{field}.guidance_start", 0.0, 1.0)
        end = _bounded(unit.guidance_end if unit.HasField("guidance_end") else 1.0, f"{field}.guidance_end", 0.0, 1.0)
        if start >= end:
            raise InvalidArgument(f"{field}.guidance_start", f"{start:g} must be below guidance_end ({end:g})")
        mode = unit.control_mode or pb.CONTROL_MODE_BALANCED
        if mode not in CONTROL_MODE_LABELS:
            raise InvalidArgument(f"{field}.control_mode", f"unknown control mode {unit.control_mode}")
        preprocessors.check(unit, field)  # the preprocessor, its parameters and the resize mode
        if unit.image.data:
            image = check_image(unit.image, f"{field}.image.data", config.limits)
        elif init_image is not None:
            image = init_image
        else:
            raise InvalidArgument(f"{field}.image.data", "a unit needs a control image here (img2img and inpaint "
                                                         "use the init image when it has none)")
        source = None if place is not None else preprocessors.control_map(unit, image, width, height, seed)
        made = place(unit, image) if place is not None else source.at(width, height)
        checked.append(ControlSpec(field, entry.name, entry.family, made, weight, start, end, mode,
                                   _infotext(unit, entry, weight, start, end, mode), source))
    return tuple(checked)


def check_family(control: tuple[ControlSpec, ...], family: str) -> None:
    """Each unit's ControlNet steers the request's model's family ("": not known yet, checked once loaded)."""
    for unit in control:
        if family and unit.family != family:
            raise InvalidArgument(f"{unit.field}.model", f"ControlNet {unit.model!r} is for {unit.family} models; "
                                                         f"the request's model is {family}")


def _controlnet(name: str, found: dict, config: ServiceConfig, field: str):
    if not found:
        raise controlnets.no_controlnets(config.controlnet_dir, field)
    if name not in found:
        what = "a ControlNet name (names, not paths)" if "/" in name or "\\" in name else "an unknown ControlNet"
        raise InvalidArgument(field, f"{quote(name)} is {what}; {lora_choices(name, found, 'ControlNets')}")
    return found[name]


def _bounded(value: float, field: str, least: float, most: float) -> float:
    if not math.isfinite(value) or not least <= value <= most:
        raise InvalidArgument(field, f"{value:g} is outside {least:g}..{most:g}")
    return short_float(value)


def _infotext(unit: pb.ControlUnit, entry, weight: float, start: float, end: float, mode: int) -> ControlNetEntry:
    """The unit as sd-webui-controlnet records it (the preprocessor's parameters it has, by its defaults
    where unset)."""
    name = preprocessors.short_name(unit.preprocessor)
    values = {param.field: (getattr(unit, param.field) if unit.HasField(param.field) else param.default)
              for param in preprocessors.PREPROCESSORS[name].params}
    return ControlNetEntry(
        module=name, model=entry.name, model_hash=controlnets.short_hash(entry) or "", weight=weight,
        resize_mode=CONTROL_RESIZE_LABELS[unit.resize_mode or DEFAULT_CONTROL_RESIZE],
        guidance_start=start, guidance_end=end, pixel_perfect=unit.pixel_perfect,
        control_mode=CONTROL_MODE_LABELS[mode],
        processor_res=int(values["processor_res"]) if "processor_res" in values else None,
        threshold_a=short_float(values["threshold_a"]) if "threshold_a" in values else None,
        threshold_b=short_float(values["threshold_b"]) if "threshold_b" in values else None,
    )


def infotext_pairs(control: tuple[ControlSpec, ...]) -> dict[str, str]:
    """The infotext pairs of a request's units: "ControlNet 0", "ControlNet 1", ..."""
    return controlnet_infotext(unit.infotext for unit in control)
