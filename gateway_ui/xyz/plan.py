"""A plot as a crowd of requests: one per cell, each the base request with its axes' values applied.

The cells are sent to the services together (the step engine serves them in shared batches), in
A1111's cell order: x fastest, then y, then z (index = ix + iy * len(xs) + iz * len(xs) * len(ys)).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from imagegen.v1.contract import MAX_SEED
from imagegen.v1.infotext import scheduler_for

from ..batch import MAX_RANDOM_SEED
from .axes import MAX_CELLS, NOTHING, Axis, PlotError, parse_values


@dataclass
class AxisValues:
    axis: Axis
    values: list
    text: str = ""  # the values as typed (the grid's infotext records them)

    @property
    def used(self) -> bool:
        return self.axis.field != "nothing"

    @property
    def captions(self) -> list[str]:
        return [self.axis.caption(value) for value in self.values]


def nothing() -> AxisValues:
    return AxisValues(NOTHING, [None])


@dataclass
class Plot:
    """What the person asked for: up to three axes and A1111's options."""

    x: AxisValues = field(default_factory=nothing)
    y: AxisValues = field(default_factory=nothing)
    z: AxisValues = field(default_factory=nothing)
    draw_legend: bool = True
    include_lone_images: bool = False
    include_sub_grids: bool = False
    no_fixed_seeds: bool = False  # A1111's "Keep -1 for seeds"
    vary_seeds: tuple[bool, bool, bool] = (False, False, False)
    margin_size: int = 0

    @property
    def axes(self) -> dict[str, AxisValues]:
        return {"x": self.x, "y": self.y, "z": self.z}

    @property
    def shape(self) -> tuple[int, int, int]:
        return len(self.x.values), len(self.y.values), len(self.z.values)


def axis_values(axis: Axis, text: str, where: str, no_fixed_seeds: bool = False) -> AxisValues:
    """An axis with its values read from text; a Seed axis's -1 becomes a random seed (as A1111's
    fix_axis_seeds) unless no_fixed_seeds."""
    if not axis.supported:
        raise PlotError(where, f"{axis.label!r} is not plotted here; plottable: seed, steps, CFG scale, sampler, "
                        "checkpoint name, prompt S/R, denoising (img2img), clip skip", part="type")
    values = parse_values(axis, text, where)
    if axis.field == "seed" and not no_fixed_seeds:
        values = [random.randrange(MAX_RANDOM_SEED) if value == -1 else value for value in values]
    return AxisValues(axis, values, text or "")


def check_size(plot: Plot) -> None:
    """Refuse a plot of more than MAX_CELLS cells, naming the axis that takes it past the bound."""
    cells = 1
    for where, axis in plot.axes.items():
        cells *= len(axis.values)
        if cells > MAX_CELLS:
            nx, ny, nz = plot.shape
            raise PlotError(where, f"{nx} x {ny} x {nz} = {nx * ny * nz} cells; a plot makes at most {MAX_CELLS}")


@dataclass
class Cell:
    ix: int
    iy: int
    iz: int
    request: object  # the mode's request message


def cells(plot: Plot, base, models: list[str] = (), schedule: str = "") -> list[Cell]:
    """The plot's requests, in A1111's cell order. `base`: the request every cell starts from;
    `models`: the checkpoint names the mode's service offers; `schedule`: the A1111 schedule type the
    Sampler axis pairs with (""/"Automatic": the sampler's own). PlotError names the axis at fault."""
    check_size(plot)
    for where, axis in plot.axes.items():
        _confirm(axis, where, base, models, schedule)
    nx, ny, nz = plot.shape
    made = []
    for iz, z in enumerate(plot.z.values):
        for iy, y in enumerate(plot.y.values):
            for ix, x in enumerate(plot.x.values):
                request = type(base)()
                request.CopyFrom(base)
                for axis, value in ((plot.x, x), (plot.y, y), (plot.z, z)):
                    _apply(axis, value, request, models, schedule)
                _vary_seed(request, plot.vary_seeds, (ix, iy, iz), (nx, ny))
                made.append(Cell(ix, iy, iz, request))
    return made


# What the request message can hold (the services check their own, narrower, ranges and name the field).
_BOUNDS = {"seed": (-1, MAX_SEED), "steps": (1, 2**32 - 1), "clip_skip": (1, 2**32 - 1)}


def _confirm(axis: AxisValues, where: str, base, models, schedule: str) -> None:
    """Every value checked before any cell is sent (A1111's confirm, and Prompt S/R's search)."""
    kind = axis.axis.field
    low, high = _BOUNDS.get(kind, (None, None))
    for value in axis.values:
        if low is not None and not low <= value <= high:
            raise PlotError(where, f"{axis.axis.label} {value} is outside {low}..{high}")
        if isinstance(value, float) and not math.isfinite(value):
            raise PlotError(where, f"{axis.axis.label} {value} is not a finite number")
    if kind == "sampler":
        for value in axis.values:
            if scheduler_for(value, schedule) is None:
                raise PlotError(where, f"unknown sampler {value!r}" + (f" with schedule type {schedule!r}"
                                                                        if schedule else ""))
    elif kind == "model":
        for value in axis.values:
            if _model(value, models) is None:
                offered = ", ".join(models) or "none listed (the service is unreachable)"
                raise PlotError(where, f"checkpoint {value!r} not found; the service has {offered}")
    elif kind == "prompt_sr":
        first = axis.values[0]
        if first not in base.params.prompt and first not in base.params.negative_prompt:
            raise PlotError(where, f"Prompt S/R did not find {first!r} in the prompt or the negative prompt")
    elif kind == "strength" and not hasattr(base, "strength"):
        raise PlotError(where, "Denoising is plotted for img2img and inpainting only", part="type")


def _model(value: str, models) -> str | None:
    """The offered checkpoint a value names: its name, its file name or A1111's 'name [hash]' title."""
    wanted = value.strip()
    stem = wanted.rsplit("/", 1)[-1].split(" [", 1)[0]
    for name in models:
        if wanted == name or stem == name or stem.rsplit(".", 1)[0] == name:
            return name
    return None


def _apply(axis: AxisValues, value, request, models, schedule: str) -> None:
    params, kind = request.params, axis.axis.field
    if kind == "seed":
        if value == -1:
            params.ClearField("seed")  # "Keep -1 for seeds": the service picks one
        else:
            params.seed = value
    elif kind == "steps":
        params.num_inference_steps = value
    elif kind == "cfg":
        params.guidance_scale = value
    elif kind == "prompt_sr":
        first = axis.values[0]
        params.prompt = params.prompt.replace(first, value)
        params.negative_prompt = params.negative_prompt.replace(first, value)
    elif kind == "sampler":
        params.scheduler = scheduler_for(value, schedule)
    elif kind == "model":
        params.model = _model(value, models)
    elif kind == "clip_skip":
        params.clip_skip = value
    elif kind == "strength":
        request.strength = value


def _vary_seed(request, vary: tuple[bool, bool, bool], index: tuple[int, int, int],
               size: tuple[int, int]) -> None:
    """A1111's "Vary seeds for X/Y/Z": each cell along a varied axis takes the next seed."""
    params = request.params
    if not any(vary) or not params.HasField("seed"):
        return
    (ix, iy, iz), (nx, ny) = index, size
    xdim, ydim = (nx if vary[0] else 1), (ny if vary[1] else 1)
    seed = params.seed + ix * vary[0] + iy * xdim * vary[1] + iz * xdim * ydim * vary[2]
    if seed > MAX_SEED:
        raise PlotError(None, f"varied seeds would pass the largest seed, {MAX_SEED}")
    params.seed = seed
