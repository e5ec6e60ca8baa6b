"""AUTOMATIC1111-style infotext: the `parameters` text many Stable Diffusion tools read and write.

    a red fox
    Negative prompt: blurry
    Steps: 20, Sampler: Euler a, CFG scale: 7.5, Seed: 7, Size: 512x512, Model: tiny, Model hash: 0123456789

The one home of the format: the services write it (services/core/spec.py and the modes' extra pairs),
the client reads it back (services/client/infotext.py: files and request fields). Pure Python, so both
sides import it: the client cannot import the core, nor the core the client.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from .contract import AUTOMATIC, SAMPLERS, SCHEDULE_TYPES

NEGATIVE = "Negative prompt: "  # the line the negative prompt starts on

# The keys, as AUTOMATIC1111 spells them. Ours are written by the services and read back by the client.
STEPS = "Steps"
SAMPLER = "Sampler"
SCHEDULE_TYPE = "Schedule type"  # AUTOMATIC1111 1.9+: the schedule apart from the sampler's name
CFG_SCALE = "CFG scale"
SEED = "Seed"
SIZE = "Size"  # WIDTHxHEIGHT
MODEL = "Model"
MODEL_HASH = "Model hash"  # A1111's short hash of the checkpoint: the first 10 hex digits of its sha256
DENOISING_STRENGTH = "Denoising strength"
MASK_BLUR = "Mask blur"
MASK_MODE = "Mask mode"
CLIP_SKIP = "Clip skip"  # written only when not 1 (the last layer)
LORA_HASHES = "Lora hashes"  # "name: hash, name2: hash2"
TI_HASHES = "TI hashes"  # the textual-inversion embeddings the prompts used, as LORA_HASHES
# The hires fix (Txt2ImgRequest.hires), as AUTOMATIC1111's processing.py writes it: "Denoising strength" (the
# second pass's), "Hires upscale: 2" (by a factor) or "Hires resize: 1024x0" (to a size), "Hires steps" (only
# when not the first pass's), "Hires upscaler" and, when not the first pass's, "Hires sampler", "Hires
# schedule type", "Hires prompt" and "Hires negative prompt". Size stays the first pass's.
HIRES_UPSCALE = "Hires upscale"
HIRES_RESIZE = "Hires resize"
HIRES_STEPS = "Hires steps"
HIRES_UPSCALER = "Hires upscaler"
HIRES_SAMPLER = "Hires sampler"
HIRES_SCHEDULE_TYPE = "Hires schedule type"
HIRES_PROMPT = "Hires prompt"
HIRES_NEGATIVE_PROMPT = "Hires negative prompt"
HIRES = (HIRES_UPSCALE, HIRES_RESIZE, HIRES_STEPS, HIRES_UPSCALER)  # any of them: the image had a second pass
# A1111's words for "as the first pass" in its hires dropdowns (and some tools' infotext).
SAME_SAMPLER = "Use same sampler"
SAME_SCHEDULER = "Use same scheduler"
# AUTOMATIC1111's own, read only: they change the picture but have no field in our requests.
HIRES_CHECKPOINT = "Hires checkpoint"
VARIATION_SEED = "Variation seed"
REFINER = "Refiner"

# Inpainting as AUTOMATIC1111 writes it: "Inpaint area: Only masked" and "Masked area padding: 32" for
# only_masked (nothing for the whole picture), "Masked content: fill" (or latent noise, latent nothing;
# nothing for original). Its readers take a missing key as Whole picture, 32 and original.
INPAINT_AREA = "Inpaint area"
MASKED_AREA_PADDING = "Masked area padding"
MASKED_CONTENT = "Masked content"
ONLY_MASKED = "Only masked"  # the Inpaint area of only_masked
# The fit, in AUTOMATIC1111's words for its resize modes (its UI's "Resize mode"), written when it is not a
# plain resize (keep records its size, which a resize remakes), so a replay fits the input as it was.
RESIZE_MODE = "Resize mode"
RESIZE_MODE_LABELS = {"crop": "Crop and resize", "fill": "Resize and fill",
                      "latent": "Just resize (latent upscale)"}

# Outpainting (InpaintRequest.outpaint), ours: "Outpaint: left 64 right 0 up 0 down 64 fill edge" (the sides
# as extended, after rounding the canvas to a multiple of 8).
OUTPAINT = "Outpaint"
INPAINT_NOT_MASKED = "Inpaint not masked"  # the Mask mode of an inverted mask (invert_mask)
UNSUPPORTED = (HIRES_CHECKPOINT, VARIATION_SEED, REFINER)  # replaying such infotext differs
KEYS = (STEPS, SAMPLER, SCHEDULE_TYPE, CFG_SCALE, SEED, SIZE, MODEL, MODEL_HASH, DENOISING_STRENGTH,
        MASK_BLUR, MASK_MODE, INPAINT_AREA, MASKED_AREA_PADDING, MASKED_CONTENT, RESIZE_MODE, CLIP_SKIP, LORA_HASHES,
        TI_HASHES, OUTPAINT, *HIRES, HIRES_SAMPLER, HIRES_SCHEDULE_TYPE, HIRES_PROMPT, HIRES_NEGATIVE_PROMPT,
        *UNSUPPORTED)


# -- writing ------------------------------------------------------------------------------------------

def _value(value) -> str:
    text = str(value)
    if any(c in text for c in ',:"\n'):
        return json.dumps(text)
    return text


def format_infotext(prompt: str, negative_prompt: str, params: dict) -> str:
    """The prompt, the negative prompt's line (when there is one) and the "Key: value" pairs, in order."""
    lines = [prompt]
    if negative_prompt:
        lines.append(NEGATIVE + negative_prompt)
    lines.append(", ".join(f"{key}: {_value(val)}" for key, val in params.items()))
    return "\n".join(lines)


def format_size(width: int, height: int) -> str:
    return f"{width}x{height}"


def format_lora_hashes(hashes) -> str:
    """(name, short hash) pairs as A1111 writes them: "name: 0123456789ab, other: ..." (then quoted)."""
    return ", ".join(f"{name}: {digest}" for name, digest in hashes)


# -- reading ------------------------------------------------------------------------------------------

# One "Key: value" pair of the last line; a value is a quoted JSON string or runs to the next comma
# (keys as AUTOMATIC1111 writes them: "Lora hashes", "Hires upscale", "ADetailer model", ...).
_PAIR = re.compile(r'\s*(\w[\w \-/+]*):\s*("(?:\\.|[^\\"])*"|[^,]*)(?:,|$)')
# Where the next pair starts: the first letter of a run of key characters that ends in a colon. The
# look-behind starts only at a run's beginning, so each run is scanned a bounded number of times
# (findall of _PAIR retries at every character: a 60,000-letter line without a colon took half a minute).
_KEY_START = re.compile(r'(?<![\w \-/+])[ \-/+]*(?=\w[\w \-/+]*:)')
_SIZE = re.compile(r"^(\d+)x(\d+)$")

# AUTOMATIC1111 sampler names -> ours. Since its 1.9 the schedule is a field of its own
# ("Sampler: DPM++ 2M, Schedule type: Karras"); before, it was part of the name ("DPM++ 2M Karras").
_BY_LABEL = {label: name for name, (label, _) in SAMPLERS.items()}
# Schedule types by A1111's label, its name ("sgm_uniform") and its alias ("SGMUniform"), any case.
_SCHEDULES = {text.lower(): name for name, label in SCHEDULE_TYPES.items() for text in (name, label)}
_SCHEDULES |= {"sgmuniform": "sgm_uniform", AUTOMATIC.lower(): "", "": ""}


def _pairs(line: str) -> list[tuple[str, str]]:
    """What _PAIR.findall(line) gives, in time linear in the line: _PAIR is tried only where it matches."""
    pairs, pos = [], 0
    while start := _KEY_START.search(line, pos):
        match = _PAIR.match(line, start.end())
        pairs.append(match.groups())
        pos = match.end()
    return pairs


def split_infotext(text: str) -> tuple[str, str, dict[str, str]]:
    """(prompt, negative prompt, the last line's "Key: value" pairs), as written."""
    lines = text.strip("\n").split("\n")
    params: dict[str, str] = {}
    pairs = _pairs(lines[-1]) if lines else []
    if len(pairs) >= 3:  # fewer: the last line is part of the prompt (as AUTOMATIC1111 decides)
        lines = lines[:-1]
        for key, value in pairs:
            value = value.strip()
            if value.startswith('"') and value.endswith('"'):
                try:
                    value = json.loads(value)
                except ValueError:
                    pass
            params[key.strip()] = value
    prompt_lines, negative_lines, in_negative = [], [], False
    for line in lines:
        if line.startswith(NEGATIVE) and not in_negative:
            in_negative = True
            line = line[len(NEGATIVE):]
        (negative_lines if in_negative else prompt_lines).append(line)
    return "\n".join(prompt_lines), "\n".join(negative_lines), params


def parse_size(text: str) -> tuple[int, int] | None:
    """"WIDTHxHEIGHT" -> (width, height); None when it is not that."""
    match = _SIZE.match(text.strip())
    return (int(match[1]), int(match[2])) if match else None


def parse_loras(text: str) -> dict[str, str]:
    """`Lora hashes: "name: hash, name2: hash2"` -> {name: hash}."""
    loras = {}
    for item in text.split(","):
        name, _, digest = item.partition(":")
        if name.strip():
            loras[name.strip()] = digest.strip()
    return loras


def sampler_as_written(sampler: str, schedule: str) -> str:
    """The sampler with its schedule, as one text ("DPM++ 2M, Schedule type: Karras")."""
    return f"{sampler}, {SCHEDULE_TYPE}: {schedule}" if schedule else sampler


def format_sampler(name: str, schedule_type: str) -> dict[str, str]:
    """The infotext pairs of one of our samplers (SAMPLERS' key) and the schedule it ran (a key of
    SCHEDULE_TYPES), as A1111 1.9+ writes them: "Schedule type" unless it is the sampler's own spacing
    and that is what Automatic means for it (A1111 writes none for Euler a), so it reads back the same."""
    label, automatic = SAMPLERS[name]
    if schedule_type == "uniform" and automatic == "uniform":
        return {SAMPLER: label}
    return {SAMPLER: label, SCHEDULE_TYPE: SCHEDULE_TYPES[schedule_type]}


def schedule_for(schedule: str) -> str | None:
    """Our schedule type for A1111's ("Karras", "karras", "Automatic" -> ""), or None if we have none."""
    return _SCHEDULES.get(schedule.strip().lower())


def sampler_for(sampler: str, schedule: str = "") -> tuple[str, str] | None:
    """(our sampler, our schedule type; "" = Automatic) for an AUTOMATIC1111 sampler and schedule type,
    the legacy names too ("DPM++ 2M Karras" -> ("dpmpp_2m", "karras")); None if we have none of them."""
    sampler, ours = sampler.strip(), schedule_for(schedule)
    if ours is None:
        return None
    if sampler in _BY_LABEL:
        return _BY_LABEL[sampler], ours
    base, _, suffix = sampler.rpartition(" ")
    fixed = schedule_for(suffix) if base in _BY_LABEL else None
    if not fixed or ours not in ("", fixed):  # "DPM++ 2M Karras" with "Exponential": two schedules
        return None
    return _BY_LABEL[base], fixed


def scheduler_for(sampler: str, schedule: str = "") -> str | None:
    """Our sampler name alone (see sampler_for), or None."""
    found = sampler_for(sampler, schedule)
    return found[0] if found else None


# -- ControlNet units ---------------------------------------------------------------------------------
# sd-webui-controlnet writes each enabled unit as one pair, `ControlNet 0: "Module: canny, Model: name
# [hash], Weight: 1.0, Resize Mode: Crop and Resize, Processor Res: 512, Threshold A: 100.0, Threshold B:
# 200.0, Guidance Start: 0.0, Guidance End: 1.0, Pixel Perfect: False, Control Mode: Balanced"`: its
# fields' names in title case ("processor_res" -> "Processor Res"), Python's str() of the values, the
# unit's text quoted as a whole. A parameter its preprocessor does not have is left out (as the extension
# leaves out its -1), and the control image is never written.

CONTROLNET_PREFIX = "ControlNet "  # + the unit's index
# "ControlNet" alone: the extension before 1.1.4 wrote a single unit so.
_CONTROLNET_KEY = re.compile(r"^ControlNet(?: (\d+))?$")
# The unit's keys, in the order the extension writes them.
_UNIT_KEYS = {"module": "Module", "model": "Model", "weight": "Weight", "resize_mode": "Resize Mode",
              "processor_res": "Processor Res", "threshold_a": "Threshold A", "threshold_b": "Threshold B",
              "guidance_start": "Guidance Start", "guidance_end": "Guidance End",
              "pixel_perfect": "Pixel Perfect", "control_mode": "Control Mode"}
# Keys older versions of the extension wrote that change nothing here (read and let go).
_UNIT_IGNORED = {"Low Vram", "Save Detected Map", "Hr Option", "Inpaint Crop Input Image", "Pulid Mode",
                 "Union Control Type"}
# A unit's text split at its pairs: a key (words in title case) after a comma; values may hold anything else.
_UNIT_PAIR = re.compile(r"(?:^|,\s*)([A-Z][A-Za-z]*(?: [A-Z][A-Za-z]*)*): ")
_MODEL_HASH = re.compile(r"^(.*?)\s*\[([0-9A-Fa-f]+)\]$")


@dataclass(frozen=True)
class ControlNetEntry:
    """One ControlNet unit as infotext records it (plain values: the services write it, the client reads it).

    resize_mode and control_mode are sd-webui-controlnet's labels (contract.CONTROL_RESIZE_LABELS,
    CONTROL_MODE_LABELS); None where the infotext does not record a value."""

    module: str = "none"
    model: str = ""
    model_hash: str = ""  # A1111's short hash, written "name [hash]"
    weight: float = 1.0
    resize_mode: str = "Crop and Resize"
    processor_res: int | None = None
    threshold_a: float | None = None
    threshold_b: float | None = None
    guidance_start: float = 0.0
    guidance_end: float = 1.0
    pixel_perfect: bool = False
    control_mode: str = "Balanced"

    def text(self) -> str:
        """The unit's text, as the extension writes it (unquoted)."""
        values = {"module": self.module, "model": f"{self.model} [{self.model_hash}]" if self.model_hash
                  else self.model, "weight": float(self.weight), "resize_mode": self.resize_mode,
                  "processor_res": self.processor_res,
                  "threshold_a": None if self.threshold_a is None else float(self.threshold_a),
                  "threshold_b": None if self.threshold_b is None else float(self.threshold_b),
                  "guidance_start": float(self.guidance_start), "guidance_end": float(self.guidance_end),
                  "pixel_perfect": bool(self.pixel_perfect), "control_mode": self.control_mode}
        return ", ".join(f"{key}: {values[name]}" for name, key in _UNIT_KEYS.items() if values[name] is not None)


def controlnet_infotext(units) -> dict[str, str]:
    """The infotext pairs of a request's units (ControlNetEntry, in the request's order):
    {"ControlNet 0": "Module: ..., ...", ...}; format_infotext quotes them."""
    return {f"{CONTROLNET_PREFIX}{i}": unit.text() for i, unit in enumerate(units)}


def controlnet_index(key: str) -> int | None:
    """The unit index of a `ControlNet N` key; None for any other key."""
    match = _CONTROLNET_KEY.match(key)
    return int(match[1] or 0) if match else None


def parse_controlnet(text: str) -> ControlNetEntry:
    """A unit's text -> ControlNetEntry (the extension's form, or its older one: see _parse_legacy). Raises
    ValueError, in words, for a value that is not what its key takes (a weight that is not a number) or an
    unknown key."""
    if _LEGACY_PAIR.match(text):
        return _parse_legacy(text)
    starts = list(_UNIT_PAIR.finditer(text))
    if not starts or starts[0].start() != 0:
        raise ValueError("not sd-webui-controlnet's \"Key: value, ...\" form")
    values: dict = {}
    by_key = {key: name for name, key in _UNIT_KEYS.items()}
    for match, after in zip(starts, [*starts[1:], None]):
        key, raw = match[1], text[match.end():after.start() if after else len(text)].strip()
        name = by_key.get(key)
        if name is None:
            if key in _UNIT_IGNORED:
                continue
            raise ValueError(f"unknown key {key!r}")
        if name in ("weight", "threshold_a", "threshold_b", "guidance_start", "guidance_end"):
            try:
                values[name] = float(raw)
            except ValueError:
                raise ValueError(f"{key} {raw[:40]!r} is not a number") from None
            if name.startswith("threshold") and values[name] == -1:  # the extension's "not used"
                del values[name]
        elif name == "processor_res":
            try:
                number = float(raw)
            except ValueError:
                raise ValueError(f"{key} {raw[:40]!r} is not a number") from None
            if number != -1:
                values[name] = int(number)
        elif name == "pixel_perfect":
            if raw not in ("True", "False"):
                raise ValueError(f"{key} {raw[:40]!r} is not True or False")
            values[name] = raw == "True"
        elif name == "model":
            hashed = _MODEL_HASH.match(raw)
            values["model"], values["model_hash"] = (hashed[1], hashed[2]) if hashed else (raw, "")
            if values["model"] == "None":  # the extension's "no model"
                values["model"] = ""
        else:
            values[name] = raw
    return ControlNetEntry(**values)


# The extension before 1.1.4xx: `preprocessor: canny, model: name [hash], weight: 1, starting/ending: (0, 1),
# resize mode: Crop and Resize, pixel perfect: False, control mode: Balanced, preprocessor params: (512,
# 100, 200)`; some versions wrote the enums' Python names (ResizeMode.INNER_FIT, ControlMode.BALANCED).
_LEGACY_KEYS = ("preprocessor", "model", "weight", "starting/ending", "resize mode", "pixel perfect", "control mode",
                "preprocessor params")
_LEGACY_PAIR = re.compile(r"(?:^|,\s*)(" + "|".join(map(re.escape, _LEGACY_KEYS)) + r"): ")
_LEGACY_ENUMS = {"ResizeMode.RESIZE": "Just Resize", "ResizeMode.INNER_FIT": "Crop and Resize",
                 "ResizeMode.OUTER_FIT": "Resize and Fill", "ControlMode.BALANCED": "Balanced",
                 "ControlMode.PROMPT": "My prompt is more important",
                 "ControlMode.CONTROL": "ControlNet is more important"}


def _numbers(raw: str, key: str, count: int) -> list[float]:
    """"(0, 1)" -> [0.0, 1.0]; ValueError naming the key when it is not `count` numbers."""
    parts = raw.strip().strip("()").split(",")
    try:
        numbers = [float(part) for part in parts]
    except ValueError:
        numbers = []
    if len(numbers) != count:
        raise ValueError(f"{key} {raw[:40]!r} is not {count} numbers in brackets")
    return numbers


def _parse_legacy(text: str) -> ControlNetEntry:
    starts = list(_LEGACY_PAIR.finditer(text))
    raw = {match[1]: text[match.end():after.start() if after else len(text)].strip()
           for match, after in zip(starts, [*starts[1:], None])}
    keyed = {"Module": raw.get("preprocessor"), "Model": raw.get("model"), "Weight": raw.get("weight"),
             "Pixel Perfect": raw.get("pixel perfect")}
    for key, name in (("Resize Mode", "resize mode"), ("Control Mode", "control mode")):
        if name in raw:
            keyed[key] = _LEGACY_ENUMS.get(raw[name], raw[name])
    if "starting/ending" in raw:
        keyed["Guidance Start"], keyed["Guidance End"] = map(str, _numbers(raw["starting/ending"], "starting/ending", 2))
    if "preprocessor params" in raw:
        params = _numbers(raw["preprocessor params"], "preprocessor params", 3)
        keyed.update(zip(("Processor Res", "Threshold A", "Threshold B"), map(str, params)))
    return parse_controlnet(", ".join(f"{key}: {value}" for key, value in keyed.items() if value is not None))
