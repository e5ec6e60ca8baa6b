"""Request checks, like diffusers' `check_inputs`: each field checked before any work is built.

Every function here either returns the checked value or raises InvalidArgument naming the field.
A mode's `check` calls these for all its fields first, then builds one GenerationSpec from them.
"""

from __future__ import annotations

import difflib
import logging
import math
import secrets
from dataclasses import dataclass

import numpy as np

from imagegen.v1 import imagegen_pb2 as pb
from imagegen.v1.contract import (FIT_BY_ENUM, FORMAT_BY_ENUM, MAX_CLIP_SKIP, MAX_SEED, MIN_SIZE,
                                  OutputFormat)

from .config import Limits, ServiceConfig
from .errors import InvalidArgument
from .imaging import images
from .prompts import lora_name_problem, lora_tags, parse_prompt
from .models import loras as lora_files
from .models import schedulers

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CheckedParams:
    """GenerationParams after checking, defaults applied; a side not given is None (the mode decides)."""

    prompt: str
    negative_prompt: str
    steps: int
    guidance_scale: float
    width: int | None
    height: int | None
    seeds: tuple[int, ...]
    scheduler: str  # a name from schedulers.names(), or "" for the model's own
    output_format: OutputFormat
    quality: int
    preview_every: int = 0  # GenerateStream: a preview every this many steps (0: none)
    clip_skip: int = 1  # A1111's Clip skip: 1 = the text encoder's last layer
    requested_loras: tuple[tuple[str, float], ...] = ()  # params.loras as sent (no zero weights), in order
    loras: lora_files.LoraSet = ()  # what runs: tags and field merged, weights of one name added up
    lora_hashes: tuple[tuple[str, str], ...] = ()  # (name, A1111's short hash) of each in `loras`
    schedule_type: str = ""  # a schedule type the scheduler takes, or "" (its Automatic)


def short_float(value: float) -> float:
    """A float32 field as the shortest decimal that is the same float32 (0.6, not 0.6000000238; 1/3 is
    0.33333334): what infotext records, so sending it back gives the very same value."""
    return float(np.format_float_positional(np.float32(value), unique=True, trim="-"))


def quote(value: str, limit: int = 40) -> str:
    """User input inside an error message: repr'd and cut, so a message never grows with the input."""
    return repr(value) if len(value) <= limit else repr(value[:limit]) + f"... ({len(value)} characters)"


def denoising_steps(steps: int, strength: float) -> int:
    """The steps an image mode runs for `strength`: int(steps x strength), as diffusers counts them,
    forgiving float32 rounding (strength 1/3 sent as float32 runs 1 of 3 steps, 0.04 runs 1 of 25)."""
    return min(steps, int(steps * strength * (1 + 1e-6)))


def check_text(value: str, field: str, limit: int) -> str:
    if len(value) > limit:
        raise InvalidArgument(field, f"is {len(value)} characters, over the limit of {limit}")
    if "\x00" in value:
        raise InvalidArgument(field, "contains a NUL character")
    return value


def check_prompt_tags(value: str, field: str) -> tuple[tuple[str, float], ...]:
    """The prompt's <lora:name:weight> tags (the encoder leaves them out of the text), once the whole
    prompt parses: tags well formed, every effective attention weight within bounds."""
    try:
        return parse_prompt(value).loras
    except ValueError as exc:
        raise InvalidArgument(field, str(exc)) from None


MAX_LISTED = 10  # a refusal lists the folder's LoRAs up to this many; past it, the closest names and a count
MAX_NAME = 255  # longer is no file's name: not compared for the closest names


def lora_choices(name: str, found, what: str = "LoRAs") -> str:
    """What to name instead of `name`, kept short whatever the folder holds (a status travels in gRPC's
    metadata, 16 KiB at most): the folder's LoRAs (or `what` else) when few, else the closest names and a
    count."""
    if len(found) <= MAX_LISTED:
        return f"choose one of {', '.join(quote(n) for n in sorted(found))}"
    close = difflib.get_close_matches(name, found, n=3) if len(name) <= MAX_NAME else []
    hint = f"closest: {', '.join(quote(n) for n in close)}; " if close else ""
    return f"{hint}{len(found)} {what} in the folder; GetInfo lists them"


def unknown_lora(name: str, found) -> str:
    if "/" in name or "\\" in name or name.startswith("."):
        return f"{quote(name)} is not a LoRA name (names, not paths); {lora_choices(name, found)}"
    problem = lora_name_problem(name)
    if problem is not None:
        return f"{quote(name)} is not a LoRA name: {problem}"
    return f"unknown LoRA {quote(name)}; {lora_choices(name, found)}"


def check_loras(params: pb.GenerationParams, tags: list[tuple[tuple[str, float], str]], config: ServiceConfig):
    """(the field's LoRAs as sent, the set that runs, their hashes). `tags` are the prompts' (name, weight)
    with the field each came from. A name is one of the LoRA folder's names - never a path - and a
    weight within -MAX_WEIGHT..MAX_WEIGHT; one name asked for more than once runs with the weights added
    up (LoRA deltas add, as A1111 applies a repeated tag twice); a weight of 0 runs nothing."""
    entries = [((item.name, item.weight), "params.loras") for item in params.loras] + tags
    if not entries:
        return (), (), ()
    found = lora_files.available(config.lora_dir)
    if not found:
        raise lora_files.no_loras(config.lora_dir, entries[0][1])
    bound = lora_files.MAX_WEIGHT
    totals: dict[str, float] = {}
    fields: dict[str, str] = {}  # name -> the field it was first named in
    for (name, weight), field in entries:
        if name not in found:
            raise InvalidArgument(field, unknown_lora(name, found))
        if not math.isfinite(weight) or not -bound <= weight <= bound:
            raise InvalidArgument(field, f"LoRA {quote(name)}: weight {weight} is outside {-bound:g}..{bound:g}")
        totals[name] = totals.get(name, 0.0) + short_float(weight)
        fields.setdefault(name, field)
    if len(totals) > lora_files.CACHE_SIZE:
        raise InvalidArgument("params.loras", f"{len(totals)} LoRAs asked for; at most {lora_files.CACHE_SIZE}")
    for name, total in totals.items():
        if not -bound <= total <= bound:
            raise InvalidArgument("params.loras", f"LoRA {quote(name)}: its weights add up to {total:g}, outside "
                                                  f"{-bound:g}..{bound:g}")
    requested = tuple((item.name, short_float(item.weight)) for item in params.loras if item.weight != 0)
    active = tuple(sorted((name, short_float(total)) for name, total in totals.items() if total != 0))
    return requested, active, tuple((name, lora_hash(name, found[name], fields[name])) for name, _ in active)


def lora_hash(name: str, path, field: str) -> str:
    """The LoRA's short hash; a file that cannot be read refuses the request naming the LoRA (its path and
    safetensors' words only in the log)."""
    try:
        return lora_files.short_hash(path)
    except lora_files.NotSafetensors as exc:
        raise InvalidArgument.logged(field, f"LoRA {quote(name)} is not a readable .safetensors file",
                                     f"{path}: {exc}", log) from None
    except OSError as exc:
        raise InvalidArgument.logged(field, f"LoRA {quote(name)} cannot be read",
                                     f"{path}: {exc.strerror or exc}", log) from None


def check_clip_skip(value: int, most: int) -> None:
    """Clip skip within the chosen model's text encoder layers (`most`: Loaded.max_clip_skip)."""
    if value > most:
        raise InvalidArgument("params.clip_skip",
                              f"{value} is outside 1..{most} for this model (the layers of its text encoder)")


def check_side(value: int, field: str, limit: int) -> int:
    """One requested side in pixels: a multiple of 8 within MIN_SIZE..limit."""
    if value % 8:
        raise InvalidArgument(field, f"{value} is not a multiple of 8")
    if not MIN_SIZE <= value <= limit:
        raise InvalidArgument(field, f"{value} is outside {MIN_SIZE}..{limit}")
    return value


def check_pixels(width: int, height: int, limits: Limits, field: str) -> None:
    if width * height > limits.max_pixels:
        raise InvalidArgument(
            field, f"{width}x{height} is {width * height} pixels, over the limit of {limits.max_pixels}"
        )


def check_map_size(request: pb.PreprocessRequest, image, limits: Limits) -> tuple[int, int]:
    """A Preprocess request's output size (a side left 0 is the image's), within the output limits."""
    width, height = request.width or image.width, request.height or image.height
    for value, field, limit in ((width, "width", limits.max_width), (height, "height", limits.max_height)):
        if value > limit:
            raise InvalidArgument(field, f"{value} is over the limit of {limit}")
    check_pixels(width, height, limits, "width")
    return width, height


def check_params(params: pb.GenerationParams, config: ServiceConfig) -> CheckedParams:
    """The fields every mode shares."""
    limits, defaults = config.limits, config.defaults
    prompt = check_text(params.prompt, "params.prompt", limits.max_prompt_chars)
    negative = check_text(params.negative_prompt, "params.negative_prompt", limits.max_prompt_chars)
    tags = [(tag, "params.prompt") for tag in check_prompt_tags(prompt, "params.prompt")]
    tags += [(tag, "params.negative_prompt") for tag in check_prompt_tags(negative, "params.negative_prompt")]

    steps = params.num_inference_steps or defaults.num_inference_steps
    if steps > limits.max_steps:
        raise InvalidArgument("params.num_inference_steps", f"{steps} is over the limit of {limits.max_steps}")

    guidance = params.guidance_scale if params.HasField("guidance_scale") else defaults.guidance_scale
    if not math.isfinite(guidance) or not 0 <= guidance <= limits.max_guidance_scale:
        raise InvalidArgument("params.guidance_scale", f"{guidance} is outside 0..{limits.max_guidance_scale}")

    width = check_side(params.width, "params.width", limits.max_width) if params.width else None
    height = check_side(params.height, "params.height", limits.max_height) if params.height else None

    count = params.num_images or 1
    if count > limits.max_images:
        raise InvalidArgument("params.num_images", f"{count} is over the limit of {limits.max_images}")
    seed = params.seed if params.HasField("seed") else secrets.randbelow(2**32)
    if seed + count - 1 > MAX_SEED:
        raise InvalidArgument("params.seed", f"seed + num_images - 1 must be at most {MAX_SEED}")

    check_sampler(params, steps)
    if params.output_format not in FORMAT_BY_ENUM:
        raise InvalidArgument("params.output_format", f"unknown format {params.output_format}")
    quality = params.quality or defaults.quality
    if quality > 100:
        raise InvalidArgument("params.quality", f"{quality} is outside 1..100")
    if params.preview_every > limits.max_steps:
        raise InvalidArgument("params.preview_every", f"{params.preview_every} is outside 0..{limits.max_steps}")

    clip_skip = params.clip_skip if params.HasField("clip_skip") else 1
    if not 1 <= clip_skip <= MAX_CLIP_SKIP:
        raise InvalidArgument("params.clip_skip", f"{clip_skip} is outside 1..{MAX_CLIP_SKIP}")

    requested_loras, active_loras, lora_hashes = check_loras(params, tags, config)
    # What the service records it must accept back: infotext writes params.loras after the prompt as tags
    # (spec.recorded_prompt), and a replay sends that prompt; so the limit holds for the prompt with them.
    recorded = len(prompt) + len(lora_tags(requested_loras))
    if recorded > limits.max_prompt_chars:
        raise InvalidArgument("params.prompt", f"is {len(prompt)} characters, {recorded} with params.loras "
                              f"written after it as <lora:...> tags (as the image's infotext records it), "
                              f"over the limit of {limits.max_prompt_chars}")

    return CheckedParams(
        prompt=prompt,
        negative_prompt=negative,
        steps=steps,
        guidance_scale=short_float(guidance),
        width=width,
        height=height,
        seeds=tuple(seed + i for i in range(count)),
        scheduler=params.scheduler,
        schedule_type=params.schedule_type,
        output_format=FORMAT_BY_ENUM[params.output_format],
        quality=quality,
        preview_every=params.preview_every,
        clip_skip=clip_skip,
        requested_loras=requested_loras,
        loras=active_loras,
        lora_hashes=lora_hashes,
    )


def check_sampler(params, steps: int) -> None:
    """params.scheduler is one that runs here, and params.schedule_type one it takes."""
    name, schedule = params.scheduler, params.schedule_type
    if name and not schedulers.available(name):
        why = (f"needs the {schedulers.SCHEDULERS[name].needs} package, which this service lacks; "
               if name in schedulers.SCHEDULERS else "")
        raise InvalidArgument("params.scheduler", f"unknown scheduler {quote(name)}; {why}"
                                                  f"choose one of {', '.join(schedulers.names())}")
    if schedule and not name:
        raise InvalidArgument("params.schedule_type", f"{quote(schedule)} needs params.scheduler: the "
                              "model's own scheduler (scheduler empty) runs as configured")
    if schedule and name:
        sampler, fixed = schedulers.resolve_sampler(name, "")
        takes = schedulers.schedule_types(sampler)
        if name in schedulers.LEGACY_SAMPLERS and schedule != fixed:
            raise InvalidArgument("params.schedule_type", f"{quote(name)} is {sampler} with the {fixed} "
                                  f"schedule; send scheduler {sampler!r} for {quote(schedule)}")
        if schedule not in takes:
            raise InvalidArgument("params.schedule_type", f"{name} takes no schedule type {quote(schedule)}; "
                                  f"choose one of {', '.join(takes)} (or none: Automatic)")
    most = schedulers.max_steps(name) if name in schedulers.SCHEDULERS else None
    if most is not None and steps > most:
        raise InvalidArgument("params.num_inference_steps",
                              f"{steps} is more than the {most} steps {name} is distilled for")


def check_strength(request, default: float, steps: int) -> tuple[float, int]:
    """(strength, the denoising steps it runs): one value, checked here and used by the pipeline."""
    strength = short_float(request.strength) if request.HasField("strength") else default
    if not math.isfinite(strength) or not 0 <= strength <= 1:
        raise InvalidArgument("strength", f"{strength} is outside 0..1")
    runs = denoising_steps(steps, strength)
    if runs < 1:
        raise InvalidArgument(
            "strength",
            f"{strength} x {steps} steps runs no denoising step; raise strength or num_inference_steps",
        )
    return strength, runs


def check_fit(request) -> str | None:
    """The requested fit mode's name, or None when unspecified."""
    if request.fit not in FIT_BY_ENUM:
        raise InvalidArgument("fit", f"unknown fit mode {request.fit}")
    return FIT_BY_ENUM[request.fit]


def check_image(image: pb.Image, field: str, limits: Limits):
    """The decoded image (decoding is the check: bytes that do not decode are the caller's error)."""
    return images.decode_image(image.data, field, limits.max_input_pixels)


def output_size(params: CheckedParams, config: ServiceConfig, source: tuple[int, int] | None = None,
                fit: str | None = None) -> tuple[tuple[int, int], str]:
    """The output size, and how an input image is fitted to it ("resize" stretches, "crop" covers then
    centre-crops, "fill" fits inside and stretches the edges, "latent" stretches the input's latents;
    images.fit_image and masks.prepare_mask take it).

    Without an input image (txt2img): the requested sides, else the configured default size.
    With one of size `source`: both sides given, that size (fit: resize unless crop is asked); one side
    given, the other follows the input's aspect ratio (rounded to a multiple of 8); none given, or fit
    keep, the input's own size rounded down to a multiple of 8.
    """
    limits = config.limits
    field = "params.height" if params.height and not params.width else "params.width"
    if source is None:
        width, height = params.width or config.defaults.size, params.height or config.defaults.size
    elif fit in SIZED_FITS and not (params.width or params.height):
        raise InvalidArgument("params.width", f"fit {fit} needs params.width or params.height (or both)")
    elif fit != "keep" and (params.width or params.height):
        width, height = params.width, params.height
        if not (width and height):  # one side: the other keeps the input's aspect ratio
            given, other = ("params.width", "height") if width else ("params.height", "width")
            if width:
                height = _round_to_8(width * source[1] / source[0])
            else:
                width = _round_to_8(height * source[0] / source[1])
            value = height if other == "height" else width
            limit = limits.max_height if other == "height" else limits.max_width
            if not MIN_SIZE <= value <= limit:
                raise InvalidArgument(given, f"with the input's aspect ratio ({source[0]}x{source[1]}) the {other} "
                                             f"would be {value}, outside {MIN_SIZE}..{limit}; give both sides")
    else:
        width, height = images.round8(source[0]), images.round8(source[1])
        field = "init_image.data"
        for value, name, limit in ((width, "width", limits.max_width), (height, "height", limits.max_height)):
            if not MIN_SIZE <= value <= limit:
                raise InvalidArgument(
                    field,
                    f"image {name} {value} (rounded to a multiple of 8) is outside {MIN_SIZE}..{limit}; "
                    "set params.width and params.height to resize it",
                )
    check_pixels(width, height, limits, field)
    return (width, height), fit if fit in SIZED_FITS else "resize"


# The fit modes that need a size to fit to (keep has its own; unspecified: resize when a size is given).
SIZED_FITS = ("resize", "crop", "fill", "latent")


def latent_source(source, fit: str, limits: Limits):
    """Fit latent: the input as it is encoded, at its own size rounded down to a multiple of 8 (its latents
    are stretched to the output's size afterwards); None for the other fits. Its size is bounded by
    max_pixels, as an output is: the VAE encodes it whole."""
    if fit != "latent":
        return None
    width, height = images.round8(source.width), images.round8(source.height)
    check_pixels(width, height, limits, "init_image.data")
    return images.to_rgb(images.fit_image(source, width, height, "resize"))


def _round_to_8(value: float) -> int:
    return max(8, int(round(value / 8)) * 8)
