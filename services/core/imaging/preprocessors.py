"""ControlNet preprocessors (sd-webui-controlnet's modules): a unit's image turned into its control map.

The interface the rest of the service uses:
- `infos()`: GetInfo's preprocessors, "none" first, with their parameters.
- `check(unit, field)`: the unit's preprocessor and parameters, refused naming the field (before any work).
- `detect(unit, image, seed)`: the preprocessor's map at its own resolution (the Preprocess RPC shows it).
- `control_image(unit, image, width, height, seed)`: the map fitted to the output size by the unit's
  resize mode, RGB: what the ControlNet is fed; `control_map(...)` keeps the detected map to fit it to
  another size too (a hires fix's second pass).
- `short_name(name)`: the module name a unit's preprocessor stands for (display names are accepted too):
  what infotext writes.

The recipes are in annotators.py, the fitting to the output in control_fit.py; here, which modules there
are, their sliders, and which resolution each runs at.
"""

from __future__ import annotations

from dataclasses import dataclass, field as dataclass_field
from typing import Callable

import numpy as np
from PIL import Image

from imagegen.v1 import imagegen_pb2 as pb
from imagegen.v1.contract import DEFAULT_CONTROL_RESIZE, FIT_BY_ENUM

from ..errors import InvalidArgument
from . import annotators
from .control_fit import fit_map, pixel_perfect_resolution

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


# The extension's resolution slider; its other sliders step by 0.01 unless they say otherwise.
RESOLUTION = Param("processor_res", "Resolution", 512, 64, 2048, 8)
_FINE = 0.01


@dataclass(frozen=True)
class Preprocessor:
    name: str
    detector: Callable = annotators.none  # (image, resolution, threshold_a, threshold_b, seed) -> map
    params: tuple[Param, ...] = dataclass_field(default=())
    label: str = ""  # the extension's display name where it is not the name
    fixed_resolution: int | None = None  # the resolution of one that resizes without a slider for it

    @property
    def display_name(self) -> str:
        return self.label or self.name

    @property
    def resizes(self) -> bool:
        """Whether it works at a resolution (which Pixel Perfect then sets)."""
        return self.fixed_resolution is not None or any(p.field == RESOLUTION.field for p in self.params)

    def resolution(self, values: dict[str, float]) -> int:
        return int(values.get(RESOLUTION.field, self.fixed_resolution or RESOLUTION.default))


# sd-webui-controlnet's weight-free modules with its sliders, in the order of its module list ("none"
# first, then by its sorting priority and label, descending).
_ALL = (
    Preprocessor(NONE),
    Preprocessor("tile_resample", annotators.tile_resample,
                 (Param("threshold_a", "Down Sampling Rate", 1.0, 1.0, 8.0, _FINE),)),
    # The extension lists its resolution slider (it does resize), though its table means to hide it.
    Preprocessor("lineart_standard", annotators.lineart_standard, (RESOLUTION,),
                 label="lineart_standard (from white bg & black line)"),
    Preprocessor("canny", annotators.canny, (RESOLUTION, Param("threshold_a", "Low Threshold", 100, 1, 255),
                                             Param("threshold_b", "High Threshold", 200, 1, 255))),
    Preprocessor("invert", annotators.invert, label="invert (from white bg & black line)"),
    Preprocessor("threshold", annotators.threshold,
                 (RESOLUTION, Param("threshold_a", "Binarization Threshold", 127, 0, 255, _FINE))),
    # Its resolution is fixed at 512 (the slider is hidden), Pixel Perfect aside.
    Preprocessor("shuffle", annotators.shuffle, fixed_resolution=512),
    Preprocessor("scribble_xdog", annotators.scribble_xdog,
                 (RESOLUTION, Param("threshold_a", "XDoG Threshold", 32, 1, 64, _FINE))),
    Preprocessor("blur_gaussian", annotators.blur_gaussian,
                 (RESOLUTION, Param("threshold_a", "Sigma", 9.0, 0.01, 64.0, _FINE))),
)
PREPROCESSORS: dict[str, Preprocessor] = {p.name: p for p in _ALL}
# A unit may name one by its display name too (the extension looks both up; its older versions
# called these long names aliases and sent them over the API).
_BY_LABEL: dict[str, Preprocessor] = {p.label: p for p in _ALL if p.label}


def infos() -> list[pb.PreprocessorInfo]:
    return [pb.PreprocessorInfo(name=p.name, label=p.display_name, params=[
        pb.PreprocessorParam(field=q.field, label=q.label, default_value=q.default, min=q.least, max=q.most,
                             step=q.step) for q in p.params]) for p in PREPROCESSORS.values()]


def short_name(name: str) -> str:
    """The module name a preprocessor name or display name stands for ("" = "none"); unknown ones as given."""
    found = _BY_LABEL.get(name) or PREPROCESSORS.get(name or NONE)
    return found.name if found else name


def _preprocessor(unit: pb.ControlUnit, field: str) -> Preprocessor:
    name = short_name(unit.preprocessor)
    if name not in PREPROCESSORS:
        known = ", ".join(PREPROCESSORS)
        raise InvalidArgument(f"{field}.preprocessor",
                              f"unknown preprocessor {name[:80]!r}; this service has: {known}")
    return PREPROCESSORS[name]


def _values(unit: pb.ControlUnit, pre: Preprocessor, field: str) -> dict[str, float]:
    values = {}
    for param in pre.params:
        if param.field == RESOLUTION.field and unit.pixel_perfect:
            continue  # Pixel Perfect sets the resolution; the unit's is ignored (where there is no output
            # size to follow, in `detect`, the default applies)
        value = getattr(unit, param.field) if unit.HasField(param.field) else param.default
        # The bounds as float32, the fields' type: a unit may ask for exactly the smallest value (0.01).
        if not np.float32(param.least) <= value <= np.float32(param.most):
            raise InvalidArgument(f"{field}.{param.field}",
                                  f"{param.label} must be {param.least:g}..{param.most:g}, got {value:g}")
        values[param.field] = value
    return values


def check(unit: pb.ControlUnit, field: str) -> None:
    """Refuse an unknown preprocessor, a parameter out of range, or a resize mode a unit cannot have."""
    _values(unit, _preprocessor(unit, field), field)
    if unit.resize_mode not in (pb.FIT_MODE_UNSPECIFIED, pb.FIT_MODE_RESIZE, pb.FIT_MODE_CROP, pb.FIT_MODE_FILL):
        raise InvalidArgument(f"{field}.resize_mode", "must be RESIZE, CROP or FILL")


def _pixels(image: Image.Image) -> np.ndarray:
    """The image as the extension gets it: RGB, RGBA where it has transparency, or grey."""
    if "A" in image.getbands() or image.mode == "P" and "transparency" in image.info:
        return np.asarray(image.convert("RGBA"))
    return np.asarray(image if image.mode in ("RGB", "L") else image.convert("RGB"))


# The most pixels a preprocessor works on: the resolution is lowered for images so elongated that their
# short side at the resolution would make them larger (the extension has no bound; memory would run out).
MAX_WORK_PIXELS = 4096 * 4096


def _bounded(resolution: int, height: int, width: int) -> int:
    return max(1, min(resolution, int(min(height, width) * (MAX_WORK_PIXELS / (height * width)) ** 0.5)))


def _detect(unit: pb.ControlUnit, image: Image.Image, seed: int, resolution: int | None = None) -> np.ndarray:
    pre = _preprocessor(unit, "unit")
    values = _values(unit, pre, "unit")
    res = resolution if resolution is not None and pre.resizes else pre.resolution(values)
    res = _bounded(res, image.height, image.width)
    return annotators.hwc3(pre.detector(_pixels(image), res, values.get("threshold_a", 0.0),
                                        values.get("threshold_b", 0.0), seed))


def detect(unit: pb.ControlUnit, image: Image.Image, seed: int) -> Image.Image:
    """The unit's preprocessor run on `image` (already checked) at its resolution, RGB."""
    return Image.fromarray(_detect(unit, image, seed))


@dataclass(frozen=True, eq=False)
class ControlMap:
    """A unit's preprocessor output, detected once, and the resize mode that fits it to a size: what
    sd-webui-controlnet keeps to fit it again at the hires fix's size (its hr_control)."""

    detected: np.ndarray
    mode: str  # control_fit's "resize", "crop" or "fill"

    def at(self, width: int, height: int) -> Image.Image:
        return Image.fromarray(fit_map(self.detected, width, height, self.mode))


def control_map(unit: pb.ControlUnit, image: Image.Image, width: int, height: int, seed: int) -> ControlMap:
    """The unit's map, detected (at the Pixel Perfect resolution for width x height, where asked: the
    extension's is the first pass's), to be fitted by the unit's resize mode."""
    mode = FIT_BY_ENUM[unit.resize_mode or DEFAULT_CONTROL_RESIZE]
    resolution = (pixel_perfect_resolution(image.height, image.width, height, width, mode)
                  if unit.pixel_perfect else None)
    return ControlMap(_detect(unit, image, seed, resolution), mode)


def control_image(unit: pb.ControlUnit, image: Image.Image, width: int, height: int, seed: int) -> Image.Image:
    """The map the ControlNet gets: detected (at the Pixel Perfect resolution where asked), then fitted to
    width x height by the unit's resize mode."""
    return control_map(unit, image, width, height, seed).at(width, height)
