"""Reading generation parameters back: infotext out of PNG/JPEG/WEBP files, parsed into request fields.

The format (its keys, how values are written, A1111's sampler names) is imagegen/v1/infotext.py, which
the services write with. This module makes request fields of it, for ours and AUTOMATIC1111's infotext
(its sampler names, `Schedule type`, `Lora hashes`, ...): the gateway's PNG Info and History tabs and the
CLI's `replay` read parameters here. Only reading files needs Pillow.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field

from imagegen.v1.contract import SCHEDULER_LABELS
from imagegen.v1.infotext import (CFG_SCALE, CLIP_SKIP, DENOISING_STRENGTH, HIRES_STEPS, HIRES_UPSCALE,
                                  INPAINT_NOT_MASKED, LORA_HASHES, MASK_BLUR, MASK_MODE, MODEL, SAMPLER,
                                  SCHEDULE_TYPE, SEED, SIZE, STEPS, UNSUPPORTED, parse_loras, parse_size,
                                  sampler_as_written, scheduler_for, split_infotext)

# Where infotext is kept in JPEG and WEBP files (as AUTOMATIC1111 and the services write it).
_EXIF_IFD = 0x8769
_EXIF_USER_COMMENT = 0x9286


class NoParameters(ValueError):
    """A file that carries no generation parameters (or cannot be read as an image)."""


_LORA_TAG = re.compile(r"<lora:([^:<>]*)(?::[^<>]*)?>")


def prompt_lora_names(params: "Parameters") -> set[str]:
    """Names of the <lora:name:weight> tags in the prompts (the tags carry the weights)."""
    return {name.strip() for text in (params.prompt, params.negative_prompt) for name in _LORA_TAG.findall(text)}


@dataclass(frozen=True)
class Recallable:
    """A field that infotext records and that a send ("Send to <tab>") or a replay fills in again."""

    name: str  # the Parameters attribute, which is also make_request's keyword for it
    key: str | None  # the infotext key it is read from; None: the prompt's lines
    tab_input: str | None  # the gateway tabs' input it fills (their API parameter name); None: no tab has one
    number: type | None = None  # int or float: the key's text read as such (a problem when it is not)


# The one list of them, in the order a send fills a tab's fields.
RECALLABLE = (
    Recallable("prompt", None, "prompt"),
    Recallable("negative_prompt", None, "negative_prompt"),
    Recallable("steps", STEPS, "steps", int),
    Recallable("guidance_scale", CFG_SCALE, "guidance", float),
    Recallable("width", SIZE, "width"),
    Recallable("height", SIZE, "height"),
    Recallable("seed", SEED, "seed", int),
    Recallable("scheduler", SAMPLER, "scheduler"),  # and SCHEDULE_TYPE: A1111's names mapped to ours
    Recallable("strength", DENOISING_STRENGTH, "strength", float),
    Recallable("mask_blur", MASK_BLUR, "mask_blur", int),
    Recallable("clip_skip", CLIP_SKIP, "clip_skip", int),
    Recallable("invert_mask", MASK_MODE, None),  # the tabs have no such control; replay sends it
)


@dataclass(frozen=True)
class Parameters:
    """Generation parameters read from infotext, as request fields (None: not recorded)."""

    infotext: str
    prompt: str
    negative_prompt: str
    mode: str  # txt2img, img2img or inpaint: what made the image, as far as the infotext tells
    steps: int | None = None
    sampler: str | None = None  # as written, schedule included ("DPM++ 2M, Schedule type: Karras")
    scheduler: str | None = None  # our name for it; None when absent or when we have none (see problems)
    guidance_scale: float | None = None
    seed: int | None = None
    width: int | None = None
    height: int | None = None
    strength: float | None = None
    mask_blur: int | None = None
    clip_skip: int | None = None
    invert_mask: bool = False
    model: str | None = None
    loras: dict = field(default_factory=dict)  # name -> hash (`Lora hashes`); the weights are the prompt's tags
    extra: dict = field(default_factory=dict)  # every other pair, as written
    problems: tuple = ()  # what cannot be followed exactly, in words

    def request_fields(self) -> dict:
        """The RECALLABLE fields by make_request's keywords, as recorded (None: not recorded)."""
        return {f.name: getattr(self, f.name) for f in RECALLABLE}

    def fields(self) -> dict:
        """The parsed fields as JSON-ready values (the PNG Info tab's output)."""
        out = {"mode": self.mode, "prompt": self.prompt, "negative_prompt": self.negative_prompt}
        for name in ("steps", "sampler", "scheduler", "guidance_scale", "seed", "width", "height", "strength",
                     "mask_blur", "clip_skip", "model"):
            value = getattr(self, name)
            if value is not None:
                out[name] = str(value) if name == "seed" else value  # seeds go past JSON's safe integers
        if self.invert_mask:
            out["invert_mask"] = True
        if self.loras:
            out["loras"] = dict(self.loras)
        if self.extra:
            out["other"] = dict(self.extra)
        if self.problems:
            out["problems"] = list(self.problems)
        return out


def parse_parameters(text: str) -> Parameters:
    """Parse infotext (ours or AUTOMATIC1111's) into request fields. Raises NoParameters when the text has
    no parameters line."""
    prompt, negative, pairs = split_infotext(text)
    if not pairs:
        raise NoParameters("the text has no parameters line (Steps: ..., Sampler: ..., Seed: ...)")
    pairs = dict(pairs)
    problems = []

    def take(key: str, kind):
        raw = pairs.pop(key, None)
        if raw is None:
            return None
        try:
            return kind(raw)
        except ValueError:
            problems.append(f"{key} {raw!r} is not a number")
            return None

    numbers = {f.name: take(f.key, f.number) for f in RECALLABLE if f.number}
    width = height = None
    size = pairs.pop(SIZE, None)
    if size is not None:
        parsed = parse_size(size)
        if parsed:
            width, height = parsed
        else:
            problems.append(f"{SIZE} {size!r} is not WIDTHxHEIGHT")
    sampler = pairs.pop(SAMPLER, None)
    schedule = pairs.pop(SCHEDULE_TYPE, "")
    scheduler = None
    if sampler is not None:
        scheduler = scheduler_for(sampler, schedule)
        sampler = sampler_as_written(sampler, schedule)
        if scheduler is None:
            known = ", ".join(SCHEDULER_LABELS.values())
            problems.append(f"unknown sampler {sampler!r}: this project has {known}")
    invert = pairs.pop(MASK_MODE, "") == INPAINT_NOT_MASKED
    loras = parse_loras(pairs.pop(LORA_HASHES, ""))
    for key in UNSUPPORTED:
        if key in pairs:
            problems.append(f"{key} is not supported here: the image will differ")
    # AUTOMATIC1111's hires fix writes a denoising strength for txt2img: only a mask blur or a strength
    # without hires settings means an input image was used.
    if numbers["mask_blur"] is not None or invert:
        mode = "inpaint"
    elif numbers["strength"] is not None and HIRES_UPSCALE not in pairs and HIRES_STEPS not in pairs:
        mode = "img2img"
    else:
        mode = "txt2img"
        numbers["strength"] = None
    model = pairs.pop(MODEL, None)
    return Parameters(
        infotext=text, prompt=prompt, negative_prompt=negative, mode=mode, sampler=sampler,
        scheduler=scheduler, width=width, height=height, invert_mask=invert, model=model, loras=loras,
        extra=pairs, problems=tuple(problems), **numbers,
    )


def _user_comment(value) -> str | None:
    """EXIF UserComment: an 8-byte charset prefix, then the text (UNICODE: UTF-16, either byte order)."""
    if isinstance(value, str):
        return value or None
    if not isinstance(value, bytes) or len(value) < 8:
        return None
    prefix, body = value[:8], value[8:]
    if prefix == b"UNICODE\0":
        # Big-endian is what AUTOMATIC1111 (piexif) and the services write; some tools write little-endian.
        # Text starts with ASCII, so the zero byte of its first character tells the order.
        order = "utf-16-le" if body[:1] != b"\0" and body[1:2] == b"\0" else "utf-16-be"
        return body.decode(order, errors="replace")
    return body.rstrip(b"\0").decode("utf-8", errors="replace") or None


def read_infotext(data: bytes) -> str | None:
    """The infotext in an image file: a PNG `parameters` text chunk, or EXIF UserComment (JPEG, WEBP).
    None when there is none. Raises NoParameters when the bytes are not a readable image."""
    from PIL import Image, UnidentifiedImageError  # only reading files needs Pillow; requests do not

    try:
        img = Image.open(io.BytesIO(data))
    except (UnidentifiedImageError, OSError, ValueError):
        raise NoParameters("not a readable image (PNG, JPEG or WEBP)") from None
    text = img.info.get("parameters")
    if isinstance(text, str) and text.strip():
        return text
    try:
        comment = img.getexif().get_ifd(_EXIF_IFD).get(_EXIF_USER_COMMENT)
    except Exception:  # noqa: BLE001 - a broken EXIF block is no parameters, not a crash
        return None
    return _user_comment(comment)


def read_parameters(data: bytes) -> Parameters:
    """The parameters of an image file. Raises NoParameters (in words) when it has none."""
    text = read_infotext(data)
    if not text:
        raise NoParameters("no generation parameters in it "
                           "(no PNG 'parameters' text, no EXIF UserComment)")
    return parse_parameters(text)
