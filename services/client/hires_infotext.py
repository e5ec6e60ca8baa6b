"""The hires fix read back from infotext: AUTOMATIC1111's `Hires ...` keys -> make_request's `hires` dict.

The keys are imagegen/v1/infotext.py's (as A1111's processing.py writes them); services/client/infotext.py
calls `read_hires` while it parses, so PNG Info, replay and the tabs' sends all get the same dict.
"""

from __future__ import annotations

from typing import Callable

from imagegen.v1.contract import LIMITS, MAX_HIRES_SCALE
from imagegen.v1.infotext import (HIRES, HIRES_NEGATIVE_PROMPT, HIRES_PROMPT, HIRES_RESIZE, HIRES_SAMPLER,
                                  HIRES_SCHEDULE_TYPE, HIRES_STEPS, HIRES_UPSCALE, HIRES_UPSCALER, SAME_SAMPLER,
                                  SAME_SCHEDULER, parse_size, sampler_as_written, sampler_for)


def read_hires(pairs: dict, strength: float | None, sampler: str | None, schedule: str,
               refuse: Callable[[str, str, str], None]) -> dict | None:
    """make_request's `hires` for the infotext's pairs (the hires keys are taken out of `pairs`); None when
    it records no second pass. `strength`: its Denoising strength (the second pass's, with hires), as read;
    `sampler`, `schedule`: the first pass's Sampler and Schedule type as written (the second pass's when it
    records none of its own). A value that cannot be used is `refuse`d (key, its value, what is wrong) and
    left out.

    Every field is given, so a replay sends the second pass as recorded: what A1111 leaves out means the
    first pass's (steps 0, the same sampler, the same prompts) or its default upscaler (Latent)."""
    if not any(key in pairs for key in HIRES):
        return None
    hires: dict = {"resize_width": 0, "resize_height": 0, "steps": 0}
    raw = pairs.pop(HIRES_UPSCALE, None)
    if raw is not None:
        try:
            scale = float(raw)
        except ValueError:
            scale = None
        if scale is not None and 1 <= scale <= MAX_HIRES_SCALE:
            hires["scale"] = scale
        else:
            refuse(HIRES_UPSCALE, raw, f"is not a factor in 1..{MAX_HIRES_SCALE:g}")
    raw = pairs.pop(HIRES_RESIZE, None)
    if raw is not None:
        size = parse_size(raw)
        if size and size[0] <= LIMITS.max_width and size[1] <= LIMITS.max_height:
            hires["resize_width"], hires["resize_height"] = size
        else:
            refuse(HIRES_RESIZE, raw, f"is not WIDTHxHEIGHT within {LIMITS.max_width}x{LIMITS.max_height}")
    raw = pairs.pop(HIRES_STEPS, None)
    if raw is not None:
        if raw.strip().isdigit() and 1 <= int(raw) <= LIMITS.max_steps:
            hires["steps"] = int(raw)
        else:
            refuse(HIRES_STEPS, raw, f"is outside 1..{LIMITS.max_steps}")
    hires["upscaler"] = pairs.pop(HIRES_UPSCALER, "")  # absent: A1111's default latent mode, the service's too
    if strength is not None:
        hires["denoising_strength"] = strength
    hires["scheduler"], hires["schedule_type"] = _second_sampler(pairs, sampler, schedule, refuse)
    hires["prompt"] = pairs.pop(HIRES_PROMPT, "")
    hires["negative_prompt"] = pairs.pop(HIRES_NEGATIVE_PROMPT, "")
    return hires


def _second_sampler(pairs: dict, sampler: str | None, schedule: str, refuse) -> tuple[str, str]:
    """(scheduler, schedule type) of the second pass; ("", "") for the first pass's. As A1111's reader
    (get_hr_sampler_and_scheduler): a key left out, or "Use same ...", is the first pass's value."""
    own = pairs.pop(HIRES_SAMPLER, SAME_SAMPLER)
    own_schedule = pairs.pop(HIRES_SCHEDULE_TYPE, SAME_SCHEDULER)
    if own == SAME_SAMPLER and own_schedule == SAME_SCHEDULER:
        return "", ""
    name = sampler if own == SAME_SAMPLER else own
    chosen = schedule if own_schedule == SAME_SCHEDULER else own_schedule
    found = sampler_for(name or "", chosen)
    if found is None:
        key = HIRES_SAMPLER if own != SAME_SAMPLER else HIRES_SCHEDULE_TYPE
        refuse(key, sampler_as_written(name or "", chosen), "is not a sampler this project has")
        return "", ""
    if sampler is not None and found == sampler_for(sampler, schedule):
        return "", ""  # written, but what the first pass ran
    return found
