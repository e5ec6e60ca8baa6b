"""Running a plot: every cell's request started through the hub at once (the services batch them),
followed together; then the grid drawn from the cells' images, with its infotext, ready to save.
"""

from __future__ import annotations

import io
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

from PIL import Image

from imagegen.v1.infotext import format_infotext, split_infotext
from services.client import Result

from ..backend import GenerationError, Interrupted
from ..hub import Hub
from .grid import blank, png_with_infotext, xyz_grids
from .plan import Plot

SCRIPT = "X/Y/Z plot"  # A1111's script title (its API takes the name in any case)


@dataclass
class GridImage:
    """A grid as the outputs folder and the answers read an image (GeneratedImage's fields)."""

    data: bytes
    seed: int
    infotext: str
    width: int
    height: int
    mime_type: str = "image/png"


@dataclass
class Plotted:
    plot: Plot
    grid: GridImage
    sub_grids: list[GridImage]
    cells: list = field(default_factory=list)  # per cell: its GeneratedImage, None when it made none

    @property
    def made(self) -> list:
        return [image for image in self.cells if image is not None]

    @property
    def grids(self) -> list[GridImage]:
        """The grids shown and saved: the whole one, then each z value's when asked for (and more than one)."""
        return [self.grid, *(self.sub_grids if self.plot.include_sub_grids and len(self.sub_grids) > 1 else [])]

    @property
    def shown(self) -> list:
        """What a caller gets: the grids, then the cells when include_lone_images (A1111's order)."""
        return [*self.grids, *(self.made if self.plot.include_lone_images else [])]

    @property
    def saved(self) -> list:
        """What the outputs folder keeps: every cell, then the grids beside them."""
        return [*self.made, *self.grids]


def axes_pairs(plot: Plot, letters: str = "xyz") -> dict[str, str]:
    """The infotext pairs A1111's script adds to a grid's: Script, X Type, X Values, Fixed X Values."""
    pairs = {"Script": SCRIPT}
    for letter in letters:
        axis = plot.axes[letter]
        if not axis.used:
            continue
        name = letter.upper()
        pairs[f"{name} Type"] = axis.axis.label
        pairs[f"{name} Values"] = axis.text
        if axis.axis.field == "seed" and not plot.no_fixed_seeds:
            pairs[f"Fixed {name} Values"] = ", ".join(str(value) for value in axis.values)
    return pairs


def _with_pairs(infotext: str, extra: dict) -> str:
    prompt, negative, pairs = split_infotext(infotext)
    return format_infotext(prompt, negative, {**pairs, **extra})


def _grid_image(image: Image.Image, infotext: str, seed: int) -> GridImage:
    return GridImage(png_with_infotext(image, infotext), seed, infotext, image.width, image.height)


def draw(plot: Plot, outcomes: list) -> Plotted | None:
    """The grids from the cells' outcomes (a Result, or anything else for a cell that made nothing);
    None when no cell made an image (A1111 then answers with none)."""
    images = [o.images[0] if isinstance(o, Result) and o.images else None for o in outcomes]
    if not any(images):
        return None
    first = next(image for image in images if image is not None)
    pictures, like = [], None
    for image in images:
        picture = Image.open(io.BytesIO(image.data)).convert("RGB") if image is not None else None
        like = like or picture
        pictures.append(picture)
    pictures = [p or blank(like, (first.width, first.height)) for p in pictures]
    captions = (plot.x.captions, plot.y.captions, plot.z.captions)
    whole, subs = xyz_grids(pictures, plot.shape, captions, plot.draw_legend, plot.margin_size)
    nx, ny, _ = plot.shape
    sub_grids = []
    for iz, sub in enumerate(subs):
        own = next((i for i in images[iz * nx * ny:(iz + 1) * nx * ny] if i is not None), first)
        sub_grids.append(_grid_image(sub, _with_pairs(own.infotext, axes_pairs(plot, "xy")), own.seed))
    grid = _grid_image(whole, _with_pairs(first.infotext, axes_pairs(plot)), first.seed)
    return Plotted(plot, grid, sub_grids, images)


def follow_all(hub: Hub, mode: str, requests: list, owner: str,
               on_done: Callable[[int, int], None] | None = None) -> list:
    """Start every request, then follow them together: per request its Result or its GenerationError
    (Interrupted for a stopped one). One failing stops the others; `on_done(done, total)` as each ends."""
    jobs = [hub.start(mode, request, owner) for request in requests]  # all sent before any is read
    done, lock = [0], threading.Lock()

    def follow(job):
        try:
            for event in hub.follow(job):
                if isinstance(event, Result):
                    return event
            raise AssertionError("unreachable: a stream ends with its result or raises")
        except GenerationError as err:
            if not isinstance(err, Interrupted):
                hub.cancel(owner, job_ids={other.id for other in jobs if other is not job})
            return err
        finally:
            with lock:
                done[0] += 1
                count = done[0]
            if on_done is not None:
                on_done(count, len(jobs))

    try:
        with ThreadPoolExecutor(max_workers=len(jobs), thread_name_prefix="xyz") as pool:
            return list(pool.map(follow, jobs))
    finally:  # the caller went away mid-plot (a closed page): nothing is left running
        hub.cancel(owner, job_ids={job.id for job in jobs if job.active})
