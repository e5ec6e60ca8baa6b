"""The hires fix (Txt2ImgRequest.hires): its checks, the size it reaches, and what infotext records.

AUTOMATIC1111's rules (modules/processing.py, StableDiffusionProcessingTxt2Img): the target is the first
pass's size times the scale, or the size asked for (one side 0: the other keeps the aspect ratio; both:
the image covers that size and the centre of its latents is kept); the second pass runs exactly the hires
steps, the last of int(steps / min(strength, 0.999)), from noise of the image's own seed at the new size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from imagegen.v1 import imagegen_pb2 as pb
from imagegen.v1.contract import (DEFAULT_HIRES_SCALE, DEFAULT_HIRES_STRENGTH, DEFAULT_HIRES_UPSCALER,
                                  LATENT_UPSCALE_MODES, MAX_HIRES_SCALE, MIN_SIZE,
                                  SCHEDULER_LABELS, SCHEDULE_TYPES)
from imagegen.v1.infotext import (DENOISING_STRENGTH, HIRES_NEGATIVE_PROMPT, HIRES_PROMPT, HIRES_RESIZE,
                                  HIRES_SAMPLER, HIRES_SCHEDULE_TYPE, HIRES_STEPS, HIRES_UPSCALE,
                                  HIRES_UPSCALER, format_size)

from services.core.checks import check_pixels, check_prompt_tags, check_sampler, check_text, short_float
from services.core.errors import InvalidArgument
from services.core.models.upscalers import Upscalers
from services.core.work.upscaling import check_upscaler

SCALE = 8  # the VAE's: AUTOMATIC1111's opt_f


@dataclass(frozen=True)
class Hires:
    """A checked second pass."""

    upscaler: str  # a LATENT_UPSCALE_MODES or RESIZERS name, or a model upscaler's (--upscaler-dir)
    upscale_to: tuple[int, int]  # (width, height) the image is enlarged to, before the crop
    crop: tuple[int, int]  # (x, y) latent columns and rows cut off, half each side (A1111's truncate_x/y)
    steps: int  # the steps the second pass runs
    schedule_steps: int  # the schedule they are the last of
    strength: float
    scheduler: str  # "" = the first pass's
    schedule_type: str
    prompt: str  # "" = the first pass's
    negative_prompt: str
    infotext: tuple[tuple[str, object], ...]

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the second pass and of the answer."""
        return (self.upscale_to[0] - SCALE * self.crop[0], self.upscale_to[1] - SCALE * self.crop[1])

    @property
    def latent_mode(self) -> tuple[str, bool] | None:
        """(interpolate mode, antialias) for a latent upscaler; None for an image one."""
        return LATENT_UPSCALE_MODES.get(self.upscaler)


def _floor8(value: int) -> int:
    return value - value % SCALE


def target(hires: pb.HiresFix, width: int, height: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """(upscale_to, crop) as AUTOMATIC1111 computes them, each side rounded down to a multiple of 8 (its
    latents are whole: it rounds down the same way when it interpolates to size // 8)."""
    rx, ry = hires.resize_width, hires.resize_height
    crop = (0, 0)
    if not rx and not ry:
        scale = short_float(hires.scale) if hires.HasField("scale") else DEFAULT_HIRES_SCALE
        if not math.isfinite(scale) or not 1 <= scale <= MAX_HIRES_SCALE:
            raise InvalidArgument("hires.scale", f"{scale} is outside 1..{MAX_HIRES_SCALE:g}")
        to = (int(width * scale), int(height * scale))
    elif not ry:
        to = (rx, rx * height // width)
    elif not rx:
        to = (ry * width // height, ry)
    else:
        to = (rx, rx * height // width) if width / height < rx / ry else (ry * width // height, ry)
        crop = ((to[0] - rx) // SCALE, (to[1] - ry) // SCALE)
    return (_floor8(to[0]), _floor8(to[1])), crop


def check(hires: pb.HiresFix, params, width: int, height: int, limits, upscalers: Upscalers | None = None) -> Hires:
    """The second pass of a request whose first pass is width x height; `upscalers`: the service's
    (models.upscalers.Upscalers: its resizers and --upscaler-dir's models; None: the resizers alone).
    Every field refused naming it."""
    for side, value in (("resize_width", hires.resize_width), ("resize_height", hires.resize_height)):
        if value and (value % SCALE or not MIN_SIZE <= value <= getattr(limits, f"max_{side[7:]}")):
            raise InvalidArgument(f"hires.{side}", f"{value} must be a multiple of 8 within "
                                                   f"{MIN_SIZE}..{getattr(limits, f'max_{side[7:]}')}")
    upscale_to, crop = target(hires, width, height)
    size = (upscale_to[0] - SCALE * crop[0], upscale_to[1] - SCALE * crop[1])
    field = "hires.scale" if not (hires.resize_width or hires.resize_height) else "hires.resize_width"
    for value, limit, name in ((upscale_to[0], limits.max_width, "width"), (upscale_to[1], limits.max_height,
                                                                             "height")):
        if not MIN_SIZE <= value <= limit:
            raise InvalidArgument(field, f"the second pass's {name} would be {value}, outside {MIN_SIZE}..{limit}")
    check_pixels(*upscale_to, limits, field)
    upscaler = check_upscaler(hires.upscaler or DEFAULT_HIRES_UPSCALER, "hires.upscaler",
                              upscalers if upscalers is not None else Upscalers(None), tuple(LATENT_UPSCALE_MODES))
    steps = hires.steps or params.steps
    if steps > limits.max_steps:
        raise InvalidArgument("hires.steps", f"{steps} is over the limit of {limits.max_steps}")
    strength = (short_float(hires.denoising_strength) if hires.HasField("denoising_strength")
                else DEFAULT_HIRES_STRENGTH)
    if not math.isfinite(strength) or not 0 < strength <= 1:
        raise InvalidArgument("hires.denoising_strength", f"{strength} is outside 0 (not included)..1")
    schedule_steps = int(steps / min(strength, 0.999))
    if schedule_steps > 10 * limits.max_steps:  # a tiny strength: a schedule of thousands of steps
        raise InvalidArgument("hires.denoising_strength", f"{strength} makes a schedule of {schedule_steps} "
                                                          f"steps; use at least {steps / (10 * limits.max_steps):.3g}")
    _check_sampler(hires, schedule_steps)
    prompt = _prompt(hires.prompt, params.prompt, "hires.prompt", limits)
    negative = _prompt(hires.negative_prompt, params.negative_prompt, "hires.negative_prompt", limits)
    recorded = [(DENOISING_STRENGTH, strength)]
    if hires.resize_width or hires.resize_height:
        recorded.append((HIRES_RESIZE, format_size(hires.resize_width, hires.resize_height)))
    else:
        recorded.append((HIRES_UPSCALE, short_float(hires.scale) if hires.HasField("scale") else DEFAULT_HIRES_SCALE))
    if hires.steps:
        recorded.append((HIRES_STEPS, hires.steps))
    recorded.append((HIRES_UPSCALER, upscaler))
    if hires.scheduler and hires.scheduler != params.scheduler:
        recorded.append((HIRES_SAMPLER, SCHEDULER_LABELS[hires.scheduler]))
    if hires.scheduler and hires.schedule_type and hires.schedule_type != params.schedule_type:
        recorded.append((HIRES_SCHEDULE_TYPE, SCHEDULE_TYPES[hires.schedule_type]))
    if prompt:
        recorded.append((HIRES_PROMPT, prompt))
    if negative:
        recorded.append((HIRES_NEGATIVE_PROMPT, negative))
    return Hires(upscaler, upscale_to, crop, steps, schedule_steps, strength, hires.scheduler,
                 hires.schedule_type if hires.scheduler else "", prompt, negative, tuple(recorded))


def _check_sampler(hires: pb.HiresFix, steps: int) -> None:
    """The second pass's sampler and schedule type, by the first pass's rules, named as hires fields."""
    try:
        check_sampler(pb.GenerationParams(scheduler=hires.scheduler, schedule_type=hires.schedule_type), steps)
    except InvalidArgument as err:
        field = err.field.replace("params.scheduler", "hires.scheduler").replace(
            "params.schedule_type", "hires.schedule_type").replace("params.num_inference_steps", "hires.steps")
        raise InvalidArgument(field, err.problem) from None


def _prompt(value: str, first: str, field: str, limits) -> str:
    """The second pass's own prompt, "" when it is the first pass's. Its LoRA set is the first pass's (one
    LoRA set per request), so it may not ask for LoRAs of its own."""
    text = check_text(value, field, limits.max_prompt_chars)
    if text == first:
        return ""
    if check_prompt_tags(text, field):
        raise InvalidArgument(field, "<lora:...> tags apply to both passes: put them in the first pass's "
                                     "prompt (the second pass runs with its LoRAs)")
    return text
