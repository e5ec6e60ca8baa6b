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

from imagegen.v1.contract import (CONTROL_MODE_LABELS, CONTROL_RESIZE_LABELS, LIMITS, MASKED_CONTENT as CONTENTS,
                                  MAX_CLIP_SKIP, MAX_MASK_BLUR, MAX_ONLY_MASKED_PADDING, MAX_SEED, MIN_SIZE,
                                  OUTPAINT_FILLS, OUTPAINT_SIDES, SAMPLERS, SCHEDULE_TYPES)
from imagegen.v1.infotext import (CFG_SCALE, CLIP_SKIP, DENOISING_STRENGTH, HIRES, INPAINT_AREA,
                                  INPAINT_NOT_MASKED, LORA_HASHES, MASK_BLUR, MASK_MODE, MASKED_AREA_PADDING,
                                  MASKED_CONTENT, MODEL, MODEL_HASH, ONLY_MASKED, OUTPAINT, RESIZE_MODE,
                                  RESIZE_MODE_LABELS, SAMPLER, SCHEDULE_TYPE, SEED, SIZE, STEPS, UNSUPPORTED,
                                  ControlNetEntry, controlnet_index, parse_controlnet, parse_loras, parse_size,
                                  sampler_as_written, sampler_for, split_infotext)

from . import png_text
from .hires_infotext import read_hires

# Where infotext is kept in JPEG and WEBP files (as AUTOMATIC1111 and the services write it).
_EXIF_IFD = 0x8769
_EXIF_USER_COMMENT = 0x9286
# The longest infotext read, in characters: two prompts at the services' limit and every pair fit many
# times over. A longer one is not read at all (its last line is what matters, and the reader need not
# go through a megabyte to find it); an image's text is taken up to 4 bytes a character.
MAX_INFOTEXT = 64 * 1024


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
    # (least, most) a request takes by the contract (its default limits where a service may set its own):
    # a value outside is a problem and not recorded, so a send never fills a field past its slider
    bounds: tuple | None = None


# The one list of them, in the order a send fills a tab's fields.
RECALLABLE = (
    Recallable("prompt", None, "prompt"),
    Recallable("negative_prompt", None, "negative_prompt"),
    Recallable("steps", STEPS, "steps", int, (1, LIMITS.max_steps)),
    Recallable("guidance_scale", CFG_SCALE, "guidance", float, (0, LIMITS.max_guidance_scale)),
    Recallable("width", SIZE, "width", bounds=(MIN_SIZE, LIMITS.max_width)),
    Recallable("height", SIZE, "height", bounds=(MIN_SIZE, LIMITS.max_height)),
    Recallable("seed", SEED, "seed", int, (0, MAX_SEED)),
    Recallable("scheduler", SAMPLER, "scheduler"),  # A1111's names mapped to ours
    Recallable("schedule_type", SCHEDULE_TYPE, "schedule_type"),  # "" (Automatic) when not written
    Recallable("strength", DENOISING_STRENGTH, "strength", float, (0, 1)),
    Recallable("mask_blur", MASK_BLUR, "mask_blur", int, (0, MAX_MASK_BLUR)),
    Recallable("clip_skip", CLIP_SKIP, "clip_skip", int, (1, MAX_CLIP_SKIP)),
    Recallable("invert_mask", MASK_MODE, "invert_mask"),  # "Inpaint not masked" -> True
    Recallable("fit", RESIZE_MODE, "fit"),  # A1111's resize mode words -> our fit names
    Recallable("only_masked", INPAINT_AREA, "only_masked"),  # "Only masked" -> True
    Recallable("only_masked_padding", MASKED_AREA_PADDING, "only_masked_padding", int,
               (0, MAX_ONLY_MASKED_PADDING)),
    Recallable("masked_content", MASKED_CONTENT, "masked_content"),  # A1111's words are our names
    # Replay extends the input again; a send does not (the image it carries is the extended canvas).
    Recallable("outpaint", OUTPAINT, None),
    # The hires fix's second pass, read from its `Hires ...` keys (hires_infotext.py); the Txt2Img tab's
    # Hires. fix controls take it apart (gateway_ui/hires.py).
    Recallable("hires", HIRES[0], None),
)
_FITS = {label: name for name, label in RESIZE_MODE_LABELS.items()}
_AREAS = {ONLY_MASKED: True, "Whole picture": False}
_CONTENTS = {name: name for name in CONTENTS}


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
    schedule_type: str | None = None  # ours for its schedule ("": Automatic); None when scheduler is None
    guidance_scale: float | None = None
    seed: int | None = None
    width: int | None = None
    height: int | None = None
    strength: float | None = None
    mask_blur: int | None = None
    clip_skip: int | None = None
    invert_mask: bool = False
    fit: str | None = None  # a name of contract.FIT_MODES; None: a plain resize (or keep) to Size
    only_masked: bool = False  # Inpaint area: Only masked
    only_masked_padding: int | None = None
    masked_content: str | None = None  # a name of contract.MASKED_CONTENT; None: original
    outpaint: dict | None = None  # make_request's outpaint: {"left": px, ..., "fill": name}; None: none
    hires: dict | None = None  # make_request's hires (every HiresFix field); None: no second pass
    model: str | None = None
    model_hash: str | None = None  # `Model hash`: A1111's short hash of the checkpoint
    loras: dict = field(default_factory=dict)  # name -> hash (`Lora hashes`); the weights are the prompt's tags
    # The ControlNet units (`ControlNet 0: "Module: ..., ..."`), by their index; the control images are not
    # in the infotext
    controlnet: dict = field(default_factory=dict)  # index -> ControlNetEntry
    extra: dict = field(default_factory=dict)  # every other pair, as written
    problems: tuple = ()  # what cannot be followed exactly, in words
    refused: dict = field(default_factory=dict)  # infotext key -> its problem: recorded, but unusable

    def request_fields(self) -> dict:
        """The RECALLABLE fields by make_request's keywords, as recorded (None: not recorded)."""
        return {f.name: getattr(self, f.name) for f in RECALLABLE}

    def fields(self) -> dict:
        """The parsed fields as JSON-ready values (the PNG Info tab's output)."""
        out = {"mode": self.mode, "prompt": self.prompt, "negative_prompt": self.negative_prompt}
        for name in ("steps", "sampler", "scheduler", "schedule_type", "guidance_scale", "seed", "width",
                     "height", "strength", "mask_blur", "clip_skip", "fit", "only_masked_padding",
                     "masked_content", "outpaint", "hires", "model", "model_hash"):
            value = getattr(self, name)
            if value is not None:
                out[name] = str(value) if name == "seed" else value  # seeds go past JSON's safe integers
        if self.invert_mask:
            out["invert_mask"] = True
        if self.only_masked:
            out["only_masked"] = True
        if self.loras:
            out["loras"] = dict(self.loras)
        if self.controlnet:
            out["controlnet"] = {f"unit {i}": vars(unit) for i, unit in sorted(self.controlnet.items())}
        if self.extra:
            out["other"] = dict(self.extra)
        if self.problems:
            out["problems"] = list(self.problems)
        return out


def _shown(raw: str) -> str:
    """A value as a problem quotes it: cut when long (a problem is one line of a toast)."""
    return repr(raw if len(raw) <= 40 else raw[:40] + "...")


def parse_parameters(text: str) -> Parameters:
    """Parse infotext (ours or AUTOMATIC1111's) into request fields. Raises NoParameters when the text has
    no parameters line or is longer than MAX_INFOTEXT. A value that is not a number or is outside what a
    request takes is a problem (and in `refused`), not a field."""
    if len(text) > MAX_INFOTEXT:
        raise NoParameters(f"the parameters text is longer than {MAX_INFOTEXT} characters: not read")
    prompt, negative, pairs = split_infotext(text)
    if not pairs:
        raise NoParameters("the text has no parameters line (Steps: ..., Sampler: ..., Seed: ...)")
    pairs = dict(pairs)
    refused = {}

    def refuse(key: str, problem: str) -> None:
        refused[key] = f"{key} {problem}"

    def within(key: str, raw: str, value, bounds) -> bool:
        least, most = bounds
        if not least <= value <= most:  # nan is in no range
            refuse(key, f"{_shown(raw)} is outside {least}..{most}")
            return False
        return True

    def take(recallable: Recallable):
        raw = pairs.pop(recallable.key, None)
        if raw is None:
            return None
        try:
            value = recallable.number(raw)
        except ValueError:  # and digits past int()'s limit
            refuse(recallable.key, f"{_shown(raw)} is not a number")
            return None
        return value if within(recallable.key, raw, value, recallable.bounds) else None

    numbers = {f.name: take(f) for f in RECALLABLE if f.number}
    width = height = None
    size = pairs.pop(SIZE, None)
    if size is not None:
        parsed = parse_size(size)
        if not parsed:
            refuse(SIZE, f"{_shown(size)} is not WIDTHxHEIGHT")
        elif all(within(SIZE, size, side, bounds) for side, bounds in
                 zip(parsed, (f.bounds for f in RECALLABLE if f.name in ("width", "height")))):
            width, height = parsed
    # A1111's hires fix records a Denoising strength on a txt2img image: its second pass's.
    hires = read_hires(pairs, numbers["strength"], pairs.get(SAMPLER), pairs.get(SCHEDULE_TYPE, ""),
                       lambda key, raw, what: refuse(key, f"{_shown(raw)} {what}"))
    problems = list(refused.values())
    sampler = pairs.pop(SAMPLER, None)
    schedule = pairs.pop(SCHEDULE_TYPE, "")
    scheduler = schedule_type = None
    if sampler is not None:
        scheduler, schedule_type = sampler_for(sampler, schedule) or (None, None)
        sampler = sampler_as_written(sampler, schedule)
        if scheduler is None:
            known = ", ".join(label for label, _ in SAMPLERS.values())
            schedules = ", ".join(SCHEDULE_TYPES.values())
            problems.append(f"unknown sampler {sampler!r}: this project has {known} "
                            f"(schedule types {schedules})")
    invert = pairs.pop(MASK_MODE, "") == INPAINT_NOT_MASKED
    words = {}  # the keys whose values are words of a fixed set: their value in our names
    for key, names in ((RESIZE_MODE, _FITS), (INPAINT_AREA, _AREAS), (MASKED_CONTENT, _CONTENTS)):
        raw = pairs.pop(key, None)
        if raw is not None and raw not in names:
            refuse(key, f"{_shown(raw)} is not one of {', '.join(map(repr, names))}")
            problems.append(refused[key])
        words[key] = names.get(raw) if raw is not None else None
    loras = parse_loras(pairs.pop(LORA_HASHES, ""))
    outpaint = None
    if OUTPAINT in pairs:
        raw = pairs.pop(OUTPAINT)
        outpaint = parse_outpaint(raw)
        if outpaint is None:
            refuse(OUTPAINT, f"{_shown(raw)} is not 'left N right N up N down N fill NAME'")
            problems.append(refused[OUTPAINT])
    controlnet = _controlnet_units(pairs, refuse)
    problems += [refused[key] for key in refused if controlnet_index(key) is not None]
    for key in UNSUPPORTED:
        if key in pairs:
            problems.append(f"{key} is not supported here: the image will differ")
    # AUTOMATIC1111's hires fix writes a denoising strength for txt2img: only a mask blur or a strength
    # without a second pass means an input image was used.
    # A value refused still says what made the image.
    inpainting = (outpaint is not None or OUTPAINT in refused
                  or any(words[key] is not None or key in refused for key in (INPAINT_AREA, MASKED_CONTENT)))
    if numbers["mask_blur"] is not None or MASK_BLUR in refused or invert or inpainting:
        mode = "inpaint"
    elif (numbers["strength"] is not None or DENOISING_STRENGTH in refused) and hires is None:
        mode = "img2img"
    else:
        mode = "txt2img"
        numbers["strength"] = None  # the second pass's (in hires), not an input image's
    model = pairs.pop(MODEL, None)
    model_hash = pairs.pop(MODEL_HASH, None) or None
    return Parameters(
        infotext=text, prompt=prompt, negative_prompt=negative, mode=mode, sampler=sampler,
        scheduler=scheduler, schedule_type=schedule_type, width=width, height=height, invert_mask=invert,
        fit=words[RESIZE_MODE],
        only_masked=bool(words[INPAINT_AREA]), masked_content=words[MASKED_CONTENT], outpaint=outpaint, model=model,
        hires=hires, model_hash=model_hash, loras=loras, controlnet=controlnet,
        extra=pairs, problems=tuple(problems), refused=refused, **numbers,
    )


def parse_outpaint(text: str) -> dict | None:
    """The sides and fill of an `Outpaint` value ("left 16 right 0 up 0 down 16 fill edge"); None when it
    is not one (a side not a multiple of 8, or past what a canvas can take)."""
    words = text.split()
    if len(words) != 2 * (len(OUTPAINT_SIDES) + 1) or words[0::2] != [*OUTPAINT_SIDES, "fill"]:
        return None
    values = dict(zip(words[0::2], words[1::2]))
    if values["fill"] not in OUTPAINT_FILLS:
        return None
    sides = {}
    for side in OUTPAINT_SIDES:
        raw = values[side]
        if not raw.isdigit() or int(raw) % 8 or int(raw) > max(LIMITS.max_width, LIMITS.max_height):
            return None
        sides[side] = int(raw)
    return {**sides, "fill": values["fill"]}


# sd-webui-controlnet's older names of two resize modes (its API and infotext still take them).
RESIZE_ALIASES = {"Inner Fit (Scale to Fit)": "Crop and Resize", "Scale to Fit (Inner Fit)": "Crop and Resize",
                  "Outer Fit (Shrink to Fit)": "Resize and Fill", "Envelope (Outer Fit)": "Resize and Fill"}


def _controlnet_units(pairs: dict, refuse) -> dict:
    """The `ControlNet N` pairs taken out of `pairs` as units; one that cannot be read is refused (a replay
    without it would make another image)."""
    units = {}
    for key in [k for k in pairs if controlnet_index(k) is not None]:
        raw = pairs.pop(key)
        try:
            unit = parse_controlnet(raw)
        except ValueError as err:
            refuse(key, f"cannot be read: {err}")
            continue
        resize = RESIZE_ALIASES.get(unit.resize_mode, unit.resize_mode)
        if resize not in CONTROL_RESIZE_LABELS.values():
            refuse(key, f"Resize Mode {_shown(unit.resize_mode)} is not one of "
                        f"{', '.join(map(repr, CONTROL_RESIZE_LABELS.values()))}")
            continue
        if unit.control_mode not in CONTROL_MODE_LABELS.values():
            refuse(key, f"Control Mode {_shown(unit.control_mode)} is not one of "
                        f"{', '.join(map(repr, CONTROL_MODE_LABELS.values()))}")
            continue
        units[controlnet_index(key)] = ControlNetEntry(**{**vars(unit), "resize_mode": resize})
    return units


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
    None when there is none. Raises NoParameters when the bytes are not a readable image.

    A PNG's text chunks are read here, not by Pillow, which refuses a whole file for one big unrelated
    chunk (a ComfyUI workflow); Pillow checks the rest of the file."""
    from PIL import Image, UnidentifiedImageError  # only reading files needs Pillow; requests do not

    text = None
    if png_text.is_png(data):
        text, data = png_text.read_text(data, "parameters", 4 * MAX_INFOTEXT + 4)
    try:
        img = Image.open(io.BytesIO(data))
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise NoParameters("not a readable image (PNG, JPEG or WEBP)") from None
    if not png_text.is_png(data):
        text = img.info.get("parameters")
    if isinstance(text, str) and text.strip():
        return text
    if png_text.is_png(data):
        return None  # a PNG's EXIF is no place for infotext, and Pillow decodes every pixel to find it
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
