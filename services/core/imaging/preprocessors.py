"""ControlNet preprocessors (sd-webui-controlnet's modules): a unit's image turned into its control map.

The interface the rest of the service uses:
- `infos()`: GetInfo's preprocessors, "none" first, with their parameters.
- `check(unit, field)`: the unit's preprocessor and parameters, refused naming the field (before any work).
- `detect(unit, image, seed)`: the preprocessor's map at its own resolution (the Preprocess RPC shows it).
- `control_image(unit, image, width, height, seed)`: the map fitted to the output size by the unit's
  resize mode, RGB: what the ControlNet is fed.
"""

from __future__ import annotations

from dataclasses import dataclass, field as dataclass_field

from PIL import Image

from imagegen.v1 import imagegen_pb2 as pb
from imagegen.v1.contract import DEFAULT_CONTROL_RESIZE, FIT_BY_ENUM

from ..errors import InvalidArgument
from . import images

NONE = "none"


@dataclass(frozen=True)
class Param:
    """One parameter a preprocessor reads (a PreprocessorInfo.params entry)."""

    field: str  # "processor_res", "threshold_a" or "threshold_b"
    label: str
    default: float
    least: float
    most: float
    step: float = 1.0


@dataclass(frozen=True)
class Preprocessor:
    name: str
    params: tuple[Param, ...] = dataclass_field(default=())

    def run(self, image: Image.Image, values: dict[str, float], seed: int) -> Image.Image:
        return image


PREPROCESSORS: dict[str, Preprocessor] = {NONE: Preprocessor(NONE)}


def infos() -> list[pb.PreprocessorInfo]:
    return [pb.PreprocessorInfo(name=p.name, params=[
        pb.PreprocessorParam(field=q.field, label=q.label, default_value=q.default, min=q.least, max=q.most,
                             step=q.step) for q in p.params]) for p in PREPROCESSORS.values()]


def _preprocessor(unit: pb.ControlUnit, field: str) -> Preprocessor:
    name = unit.preprocessor or NONE
    if name not in PREPROCESSORS:
        raise InvalidArgument(f"{field}.preprocessor",
                              f"unknown preprocessor {name!r}; this service has: {', '.join(PREPROCESSORS)}")
    return PREPROCESSORS[name]


def _values(unit: pb.ControlUnit, pre: Preprocessor, field: str) -> dict[str, float]:
    values = {}
    for param in pre.params:
        value = getattr(unit, param.field) if unit.HasField(param.field) else param.default
        if not param.least <= value <= param.most:
            raise InvalidArgument(f"{field}.{param.field}",
                                  f"{param.label} must be {param.least:g}..{param.most:g}, got {value:g}")
        values[param.field] = value
    return values


def check(unit: pb.ControlUnit, field: str) -> None:
    """Refuse an unknown preprocessor, a parameter out of range, or a resize mode a unit cannot have."""
    _values(unit, _preprocessor(unit, field), field)
    if unit.resize_mode not in (pb.FIT_MODE_UNSPECIFIED, pb.FIT_MODE_RESIZE, pb.FIT_MODE_CROP, pb.FIT_MODE_FILL):
        raise InvalidArgument(f"{field}.resize_mode", "must be RESIZE, CROP or FILL")


def detect(unit: pb.ControlUnit, image: Image.Image, seed: int) -> Image.Image:
    """The unit's preprocessor run on `image` (already checked), RGB."""
    pre = _preprocessor(unit, "unit")
    return images.to_rgb(pre.run(images.to_rgb(image), _values(unit, pre, "unit"), seed))


def control_image(unit: pb.ControlUnit, image: Image.Image, width: int, height: int, seed: int) -> Image.Image:
    """The map the ControlNet gets: detected, then fitted to width x height by the unit's resize mode."""
    mode = FIT_BY_ENUM[unit.resize_mode or DEFAULT_CONTROL_RESIZE]
    return images.fit_image(detect(unit, image, seed), width, height, mode)
