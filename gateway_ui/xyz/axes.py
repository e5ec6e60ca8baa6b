"""The X/Y/Z plot's axes as AUTOMATIC1111's scripts/xyz_grid.py names and parses them.

A1111_AXES is its axis list (version 1.10) in its order, so an API caller's `x_type` index means what it
means there: txt2img's list leaves out the img2img-only axes and img2img's the txt2img-only ones. Only
the axes with a `field` are plotted here; the others are refused by name (never silently ignored).

Values are typed as A1111 types them: comma-separated with CSV quoting ("a, \"b, c\""), and for numbers
the ranges "1-5" (1,2,3,4,5), "1-5 (+2)" (1,3,5), "10-1 (-3)" and "1-10 [5]" (five values, evenly spaced).
"""

from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass

import numpy as np

from imagegen.v1.contract import TXT2IMG

BOTH, TXT2IMG_ONLY, IMG2IMG_ONLY = "both", "txt2img", "img2img"
# Enough for a 8x8 grid: every cell is a request sent at once, so the bound is the crowd's size.
MAX_CELLS = 64


class PlotError(ValueError):
    """A plot that cannot be made; `axis` ("x", "y", "z" or None) says which axis is at fault."""

    def __init__(self, axis: str | None, message: str, part: str = "values"):
        where = f"{axis.upper()} {part}: " if axis else ""
        super().__init__(f"X/Y/Z plot: {where}{message}")
        self.axis, self.part = axis, part


@dataclass(frozen=True)
class Axis:
    label: str  # A1111's
    kind: type  # int, float or str: how its values are read
    scope: str = BOTH  # the modes whose list has it
    field: str | None = None  # what a cell changes (plan.py); None: not plotted here
    labelled: bool = True  # the grid's text: "Steps: 20" (A1111's format_value_add_label), else the value
    choices: bool = False  # A1111 reads the dropdown list for it unless csv_mode

    @property
    def supported(self) -> bool:
        return self.field is not None

    def caption(self, value) -> str:
        """The grid's label of one value, as A1111 writes it."""
        if self.field == "nothing":
            return ""
        if isinstance(value, float):
            value = round(value, 8)
        if self.field == "model":
            value = str(value).rsplit("/", 1)[-1]  # A1111's format_remove_path
        return f"{self.label}: {value}" if self.labelled else str(value)


NOTHING = Axis("Nothing", str, field="nothing", labelled=False)
A1111_AXES = (
    NOTHING,
    Axis("Seed", int, field="seed"),
    Axis("Var. seed", int),
    Axis("Var. strength", float),
    Axis("Steps", int, field="steps"),
    Axis("Hires steps", int, TXT2IMG_ONLY),
    Axis("CFG Scale", float, field="cfg"),
    Axis("Image CFG Scale", float, IMG2IMG_ONLY),
    Axis("Prompt S/R", str, field="prompt_sr", labelled=False),
    Axis("Prompt order", str),
    Axis("Sampler", str, TXT2IMG_ONLY, field="sampler", labelled=False, choices=True),
    Axis("Hires sampler", str, TXT2IMG_ONLY),
    Axis("Sampler", str, IMG2IMG_ONLY, field="sampler", labelled=False, choices=True),
    Axis("Checkpoint name", str, field="model", labelled=False, choices=True),
    Axis("Negative Guidance minimum sigma", float),
    Axis("Sigma Churn", float),
    Axis("Sigma min", float),
    Axis("Sigma max", float),
    Axis("Sigma noise", float),
    Axis("Schedule type", str),
    Axis("Schedule min sigma", float),
    Axis("Schedule max sigma", float),
    Axis("Schedule rho", float),
    Axis("Beta schedule alpha", float),
    Axis("Beta schedule beta", float),
    Axis("Eta", float),
    Axis("Clip skip", int, field="clip_skip"),
    Axis("Denoising", float, field="strength"),
    Axis("Initial noise multiplier", float),
    Axis("Extra noise", float),
    Axis("Hires upscaler", str, TXT2IMG_ONLY),
    Axis("Cond. Image Mask Weight", float, IMG2IMG_ONLY),
    Axis("VAE", str),
    Axis("Styles", str),
    Axis("UniPC Order", int),
    Axis("Face restore", str),
    Axis("Token merging ratio", float),
    Axis("Token merging ratio high-res", float),
    Axis("Always discard next-to-last sigma", str),
    Axis("SGM noise multiplier", str),
    Axis("Refiner checkpoint", str),
    Axis("Refiner switch at", float),
    Axis("RNG source", str),
    Axis("FP8 mode", str),
    Axis("Size", str),
)


def axis_list(mode: str) -> list[Axis]:
    """A1111's axis list for a tab: txt2img's, or img2img's (inpainting is img2img there)."""
    kind = TXT2IMG_ONLY if mode == TXT2IMG.name else IMG2IMG_ONLY
    return [axis for axis in A1111_AXES if axis.scope in (BOTH, kind)]


def plottable(mode: str) -> list[Axis]:
    """The axes this gateway plots for `mode` (Denoising is hires fix's in txt2img: not here)."""
    return [axis for axis in axis_list(mode) if axis.supported and not (axis.field == "strength"
                                                                          and mode == TXT2IMG.name)]


def by_label(mode: str, label: str) -> Axis | None:
    return next((axis for axis in axis_list(mode) if axis.label.lower() == label.strip().lower()), None)


_NUMBER = r"[+-]?\s*\d+"
_DECIMAL = r"[+-]?\s*\d+(?:\.\d*)?"
_RANGE = re.compile(rf"\s*({_NUMBER})\s*-\s*({_NUMBER})(?:\s*\(([+-]\d+)\s*\))?\s*")
_RANGE_FLOAT = re.compile(rf"\s*({_DECIMAL})\s*-\s*({_DECIMAL})(?:\s*\(([+-]\d+(?:\.\d*)?)\s*\))?\s*")
_COUNT = re.compile(rf"\s*({_NUMBER})\s*-\s*({_NUMBER})(?:\s*\[(\d+)\s*\])?\s*")
_COUNT_FLOAT = re.compile(rf"\s*({_DECIMAL})\s*-\s*({_DECIMAL})(?:\s*\[(\d+(?:\.\d*)?)\s*\])?\s*")


def split_values(text: str) -> list[str]:
    """A1111's csv_string_to_list_strip: CSV fields (quotes protect commas), each stripped; a quote after
    ", " opens a quoted field too (A1111's reader would split inside it)."""
    try:
        rows = list(csv.reader(io.StringIO(text), skipinitialspace=True))
    except csv.Error as err:
        raise ValueError(f"cannot read {text!r} as comma-separated values: {err}") from None
    return [field.strip() for row in rows for field in row]


def _number(text: str, kind: type):
    return kind(text.replace(" ", ""))


def _expand(value: str, kind: type, axis: str) -> list:
    """One value or range, as numbers; a range longer than MAX_CELLS is refused before it is made."""
    ranged, counted = (_RANGE, _COUNT) if kind is int else (_RANGE_FLOAT, _COUNT_FLOAT)
    if m := ranged.fullmatch(value):
        start, end = _number(m[1], kind), _number(m[2], kind)
        step = _number(m[3], kind) if m[3] else 1
        if step == 0:
            raise PlotError(axis, f"{value!r}: a range's step cannot be 0")
        if kind is int:
            values = range(start, end + 1, step)  # A1111's: the end is kept only when stepped onto
            count = len(values)
        else:
            count = max(0, math.ceil((end + step - start) / step))
        if count > MAX_CELLS:
            raise PlotError(axis, f"{value!r} makes {count} values; a plot has at most {MAX_CELLS} cells")
        return list(values) if kind is int else np.arange(start, end + step, step).tolist()
    if m := counted.fullmatch(value):
        start, end = _number(m[1], kind), _number(m[2], kind)
        count = int(float(m[3])) if m[3] else 1
        if count > MAX_CELLS:
            raise PlotError(axis, f"{value!r} asks for {count} values; a plot has at most {MAX_CELLS} cells")
        spaced = np.linspace(start=start, stop=end, num=count).tolist()
        return [int(x) for x in spaced] if kind is int else spaced
    try:
        return [_number(value, kind)] if kind is not str else [value]
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        ranges = "1-5, 1-5 (+2) or 1-10 [5]"
        raise PlotError(axis, f"{value!r} is not {what} (nor a range such as {ranges})") from None


def parse_values(axis: Axis, text: str, where: str = "x") -> list:
    """The axis's values from its text, typed; PlotError names the axis (`where`)."""
    if axis.field == "nothing":
        return [None]
    try:
        fields = split_values(text or "")
    except ValueError as err:
        raise PlotError(where, str(err)) from None
    fields = [field for field in fields if field != ""] if axis.kind is not str else fields
    if not fields or fields == [""]:
        raise PlotError(where, f"no values for {axis.label}")
    values = []
    for field in fields:
        values += _expand(field, axis.kind, where) if axis.kind is not str else [field]
        if len(values) > MAX_CELLS:
            raise PlotError(where, f"{len(values)} values or more; a plot has at most {MAX_CELLS} cells")
    return values


def csv_text(values: list) -> str:
    """A1111's list_to_csv_string: the values as one CSV line (a dropdown's list as text)."""
    out = io.StringIO()
    csv.writer(out).writerow(values)
    return out.getvalue().strip()
