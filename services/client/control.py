"""ControlNet units (GenerationParams.control) from plain Python values: `control_unit(model, image, ...)`.

Enums are taken by our short names ("balanced", "crop") or by sd-webui-controlnet's labels ("My prompt is
more important", "Crop and Resize"), so a unit read from infotext or an A1111 call goes in unchanged.
"""

from __future__ import annotations

from imagegen.v1 import imagegen_pb2 as pb
from imagegen.v1.contract import CONTROL_MODE_LABELS, CONTROL_RESIZE_LABELS

from . import requests as _requests  # as_image (it imports this module too: attributes read at call time)

# Our short names; the labels are the contract's (sd-webui-controlnet's).
CONTROL_MODES: dict[str, int] = {"balanced": pb.CONTROL_MODE_BALANCED, "prompt": pb.CONTROL_MODE_PROMPT,
                                 "controlnet": pb.CONTROL_MODE_CONTROLNET}
CONTROL_RESIZES: dict[str, int] = {"resize": pb.FIT_MODE_RESIZE, "crop": pb.FIT_MODE_CROP,
                                   "fill": pb.FIT_MODE_FILL}
_MODE_BY_TEXT = {**CONTROL_MODES, **{label.lower(): enum for enum, label in CONTROL_MODE_LABELS.items()}}
_RESIZE_BY_TEXT = {**CONTROL_RESIZES, **{label.lower(): enum for enum, label in CONTROL_RESIZE_LABELS.items()}}

# The unit's optional numbers: unset means the service's default (the preprocessor's, weight 1, 0..1).
_OPTIONAL = ("processor_res", "threshold_a", "threshold_b", "weight", "guidance_start", "guidance_end")


def _enum(value, table: dict, names: dict, labels: dict, what: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value in table.values():
        return value
    found = table.get(str(value).strip().lower())
    if found is None:
        raise ValueError(f"unknown {what} {value!r}; choose one of {', '.join(names)} "
                         f"(or {', '.join(map(repr, labels.values()))})")
    return found


def control_mode_enum(value) -> int:
    """The ControlMode enum of a name, a label or the enum itself."""
    return _enum(value, _MODE_BY_TEXT, CONTROL_MODES, CONTROL_MODE_LABELS, "control mode")


def control_resize_enum(value) -> int:
    """The FitMode enum of a unit's resize mode: a name, a label or the enum itself."""
    return _enum(value, _RESIZE_BY_TEXT, CONTROL_RESIZES, CONTROL_RESIZE_LABELS, "resize mode")


def control_unit(model: str = "", image=None, *, preprocessor: str = "", processor_res: int | None = None,
                 threshold_a: float | None = None, threshold_b: float | None = None, weight: float | None = None,
                 guidance_start: float | None = None, guidance_end: float | None = None,
                 control_mode=None, resize_mode=None, pixel_perfect: bool = False) -> pb.ControlUnit:
    """One ControlUnit. None leaves a field to the service's default. `image`: bytes, a path or a PIL image
    (None: img2img and inpaint use the request's input image)."""
    unit = pb.ControlUnit(model=model, preprocessor=preprocessor, pixel_perfect=bool(pixel_perfect))
    if image is not None:
        unit.image.CopyFrom(_requests.as_image(image))
    values = {"processor_res": processor_res, "threshold_a": threshold_a, "threshold_b": threshold_b,
              "weight": weight, "guidance_start": guidance_start, "guidance_end": guidance_end}
    for name in _OPTIONAL:
        if values[name] is not None:
            setattr(unit, name, int(values[name]) if name == "processor_res" else values[name])
    if control_mode is not None:
        unit.control_mode = control_mode_enum(control_mode)
    if resize_mode is not None:
        unit.resize_mode = control_resize_enum(resize_mode)
    return unit


def as_unit(value) -> pb.ControlUnit:
    """A ControlUnit from a message or a dict of control_unit's keywords."""
    if isinstance(value, pb.ControlUnit):
        return value
    if isinstance(value, dict):
        return control_unit(**value)
    raise TypeError(f"cannot make a ControlNet unit from {type(value).__name__}")


def unit_from_entry(entry, image=None, model: str | None = None) -> pb.ControlUnit:
    """The ControlUnit an infotext entry (imagegen.v1.infotext.ControlNetEntry) records, with `image` (the
    infotext has none) and `model` (the service's name for it; None: the recorded name)."""
    return control_unit(entry.model if model is None else model, image, preprocessor=entry.module,
                        processor_res=entry.processor_res, threshold_a=entry.threshold_a,
                        threshold_b=entry.threshold_b, weight=entry.weight, guidance_start=entry.guidance_start,
                        guidance_end=entry.guidance_end, control_mode=entry.control_mode,
                        resize_mode=entry.resize_mode, pixel_perfect=entry.pixel_perfect)
