"""ControlNet units in infotext, as sd-webui-controlnet writes them: one pair per unit,

    ControlNet 0: "Module: canny, Model: name [hash], Weight: 1.0, Resize Mode: Crop and Resize, Processor Res: 512,
    Threshold A: 100.0, Threshold B: 200.0, Guidance Start: 0.0, Guidance End: 1.0, Pixel Perfect: False,
    Control Mode: Balanced"

(the extension's serialize_unit: its unit's fields as "Title Case: value", Python's own spelling of the
value, a parameter the preprocessor does not have left out). Pure Python: the services write it, the
client reads it back.
"""

from __future__ import annotations

UNIT_KEY = "ControlNet {index}"  # the pair's key for unit `index` (from 0)


def unit_key(index: int) -> str:
    return UNIT_KEY.format(index=index)


def format_unit(module: str, model: str, weight: float, resize_mode: str, guidance_start: float,
                guidance_end: float, pixel_perfect: bool, control_mode: str,
                processor_res: int | None = None, threshold_a: float | None = None,
                threshold_b: float | None = None) -> str:
    """One unit's value (before format_infotext quotes it). `model` is "name [hash]" or the name; the
    preprocessor's parameters it does not have are None, and left out as the extension leaves out -1."""
    fields = {
        "Module": module,
        "Model": model,
        "Weight": float(weight),
        "Resize Mode": resize_mode,
        "Processor Res": None if processor_res is None else int(processor_res),
        "Threshold A": None if threshold_a is None else float(threshold_a),
        "Threshold B": None if threshold_b is None else float(threshold_b),
        "Guidance Start": float(guidance_start),
        "Guidance End": float(guidance_end),
        "Pixel Perfect": bool(pixel_perfect),
        "Control Mode": control_mode,
    }
    return ", ".join(f"{key}: {value}" for key, value in fields.items() if value is not None)
