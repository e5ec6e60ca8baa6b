"""Upscale requests: their checks (every field before any work), their queue, and their run.

An upscale is not a denoising job, so it does not go through the engines' queue: it waits in a lane of its
own, bounded as the generation queue is (limits.max_queue waiting; more is RESOURCE_EXHAUSTED at once), one
running at a time beside the engine, and it is cancelled or runs out of deadline while waiting or between
two tiles. Sizes follow A1111's Extras (scripts/postprocessing_upscale.py): "Scale by" rounds each side
down to a multiple of 8, "Scale to" with crop covers the size and crops the centre.
"""

from __future__ import annotations

import difflib
import math
import threading
import time
from collections import deque
from dataclasses import dataclass

from PIL import Image

from imagegen.v1 import imagegen_pb2 as pb
from imagegen.v1.contract import FORMAT_BY_ENUM, OutputFormat

from ..checks import MAX_LISTED, MAX_NAME, check_image, quote
from ..config import ServiceConfig
from ..errors import Cancelled, DeadlinePassed, InvalidArgument, QueueFull
from ..models.upscalers import RESIZERS, Upscalers

MAX_SCALE = 8.0
DEFAULT_SCALE = 2.0


@dataclass(frozen=True)
class UpscaleSpec:
    """A checked UpscaleRequest."""

    image: Image.Image
    upscaler: str
    size: tuple[int, int]  # the answer's size
    reach: tuple[int, int]  # the size the upscalers make; larger than `size` when cropping
    upscaler_2: str  # "" = none
    visibility: float
    output_format: OutputFormat
    quality: int
    info: str  # A1111's postprocessing text


def scaled_side(side: int, scale: float) -> int:
    """A1111's "Scale by" side: side x scale, rounded down to a multiple of 8 (a side under 8 pixels once
    scaled keeps its exact scaled length rather than becoming 0)."""
    exact = int(side * scale)
    return exact // 8 * 8 or exact


def choices(name: str, names: list[str]) -> str:
    """What to name instead, kept short whatever the folder holds (a status travels in gRPC metadata)."""
    if len(names) <= MAX_LISTED:
        return f"choose one of {', '.join(quote(n) for n in names)}"
    close = difflib.get_close_matches(name[:MAX_NAME], names, n=3)
    hint = f"closest: {', '.join(quote(n) for n in close)}; " if close else ""
    return f"{hint}{len(names)} upscalers; GetInfo lists them"


def check_upscaler(name: str, field: str, upscalers: Upscalers, others: tuple[str, ...] = ()) -> str:
    """A name of the service's upscalers that can run, or one of `others` (a hires fix's latent modes),
    which the choices named in a refusal list first."""
    if not name:
        raise InvalidArgument(field, f"is required; {choices('', [*others, *upscalers.names()])}")
    if name in RESIZERS or name in others:
        return name
    found = upscalers.available()
    if name not in found:
        what = (f"{quote(name)} is not an upscaler name (names, not paths)" if "/" in name or "\\" in name
                else f"unknown upscaler {quote(name)}")
        raise InvalidArgument(field, f"{what}; {choices(name, [*others, *RESIZERS, *found])}")
    facts = upscalers.facts(name, found[name])  # reads the file once per version: it must load
    if facts.unusable:
        raise InvalidArgument(field, f"upscaler {quote(name)} cannot be used: {facts.unusable}")
    return name


def target_size(request: pb.UpscaleRequest, source: tuple[int, int], config: ServiceConfig):
    """(the answer's size, the size to upscale to, the info's size words) by "Scale by" or "Scale to"."""
    limits = config.limits
    width, height = source
    if request.width or request.height:
        if not (request.width and request.height):
            raise InvalidArgument("height" if request.width else "width",
                                  "is required with " + ("width" if request.width else "height"))
        size, field = (request.width, request.height), "width"
        if request.crop:  # cover the size keeping the aspect ratio, then crop the centre
            ratio = max(size[0] / width, size[1] / height)
            reach = (max(size[0], math.ceil(width * ratio)), max(size[1], math.ceil(height * ratio)))
        else:
            reach = size
        words = [("Postprocess upscale to", f"{size[0]}x{size[1]}")]
        if request.crop:
            words.append(("Postprocess crop to", f"{size[0]}x{size[1]}"))
    else:
        scale = request.scale or DEFAULT_SCALE
        if not 1 <= scale <= MAX_SCALE:  # NaN fails too
            raise InvalidArgument("scale", f"{scale:g} is outside 1..{MAX_SCALE:g}")
        size = reach = (scaled_side(width, scale), scaled_side(height, scale))
        field, words = "scale", [("Postprocess upscale by", f"{float(f'{scale:.6g}'):g}")]
    if size[0] > limits.max_width or size[1] > limits.max_height or size[0] * size[1] > limits.max_pixels:
        raise InvalidArgument(field, f"the output would be {size[0]}x{size[1]}, over the limit of "
                                     f"{limits.max_width}x{limits.max_height} and {limits.max_pixels} pixels")
    if reach[0] * reach[1] > 4 * limits.max_pixels:  # a crop of a very long image: the cover would be huge
        raise InvalidArgument(field, f"cropping to {size[0]}x{size[1]} would upscale to {reach[0]}x{reach[1]} "
                                     "first; ask for a size closer to the image's aspect ratio")
    return size, reach, words


def check_upscale(request: pb.UpscaleRequest, config: ServiceConfig, upscalers: Upscalers) -> UpscaleSpec:
    """Every field of an UpscaleRequest, as a generation's checks do: the image decoded last (it costs most)."""
    upscaler = check_upscaler(request.upscaler, "upscaler", upscalers)
    visibility = request.upscaler_2_visibility
    if not 0 <= visibility <= 1:
        raise InvalidArgument("upscaler_2_visibility", f"{visibility:g} is outside 0..1")
    upscaler_2 = ""
    if request.upscaler_2 and visibility:  # A1111 runs upscaler 2 only when it shows
        upscaler_2 = check_upscaler(request.upscaler_2, "upscaler_2", upscalers)
    if request.output_format not in FORMAT_BY_ENUM:
        raise InvalidArgument("output_format", f"unknown format {request.output_format}")
    quality = request.quality or config.defaults.quality
    if quality > 100:
        raise InvalidArgument("quality", f"{quality} is outside 1..100")
    if request.scale and (request.width or request.height):
        raise InvalidArgument("scale", "give scale, or width and height, not both")
    image = check_image(request.image, "image", config.limits).convert("RGB")
    size, reach, words = target_size(request, image.size, config)
    words.append(("Postprocess upscaler", upscaler))
    if upscaler_2:
        words.append(("Postprocess upscaler 2", upscaler_2))
    info = ", ".join(f"{key}: {value}" for key, value in words)
    return UpscaleSpec(image, upscaler, size, reach, upscaler_2, visibility, FORMAT_BY_ENUM[request.output_format],
                       quality, info)


def run_upscale(spec: UpscaleSpec, upscalers: Upscalers, between=None) -> Image.Image:
    """The upscaled image: upscaler 2 blended over the first by its visibility (A1111's Image.blend), then
    the centre cropped when the request covers a size."""
    out = upscalers.upscale(spec.image, spec.upscaler, spec.reach, between)
    if spec.upscaler_2:
        out = Image.blend(out, upscalers.upscale(spec.image, spec.upscaler_2, spec.reach, between), spec.visibility)
    if out.size != spec.size:
        left, top = (out.width - spec.size[0]) // 2, (out.height - spec.size[1]) // 2
        out = out.crop((left, top, left + spec.size[0], top + spec.size[1]))
    return out


class UpscaleCall:
    """One upscale's signals: cancel (the client went away) and its deadline."""

    def __init__(self, lane: "UpscaleLane", deadline: float | None):
        self.lane, self.deadline = lane, deadline
        self._cancel = threading.Event()

    def cancel(self) -> None:
        self._cancel.set()
        self.lane.wake()

    def check(self, waiting: bool = False) -> None:
        """Raise if the call should stop now (called while waiting and before each tile)."""
        where = "while queued" if waiting else "during the upscale"
        if self._cancel.is_set():
            raise Cancelled(f"cancelled by the client {where}")
        if self.deadline is not None and time.monotonic() >= self.deadline:
            raise DeadlinePassed(f"the deadline passed {where}")


class UpscaleLane:
    """Upscales one at a time, the rest waiting in arrival order (at most `max_waiting`)."""

    def __init__(self, max_waiting: int):
        self.max_waiting = max_waiting
        self._waiting: deque[UpscaleCall] = deque()
        self._running = False
        self._cond = threading.Condition()

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def call(self, deadline: float | None) -> UpscaleCall:
        return UpscaleCall(self, deadline)

    def run(self, call: UpscaleCall, work):
        """work(call) once the lane is free for this call; QueueFull when too many wait."""
        with self._cond:
            if len(self._waiting) >= self.max_waiting:
                raise QueueFull(f"the upscale queue is full ({self.max_waiting} waiting); try again shortly",
                                retry_after_s=1.0)
            self._waiting.append(call)
            try:
                while self._running or self._waiting[0] is not call:
                    call.check(waiting=True)
                    left = None if call.deadline is None else max(0.0, call.deadline - time.monotonic())
                    self._cond.wait(left)
                call.check(waiting=True)
            finally:
                self._waiting.remove(call)
                self._cond.notify_all()  # the next in line may be first now
            self._running = True
        try:
            return work(call)
        finally:
            with self._cond:
                self._running = False
                self._cond.notify_all()

    @property
    def depth(self) -> int:
        with self._cond:
            return len(self._waiting)
