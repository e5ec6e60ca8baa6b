"""A1111's hires fix fields of /txt2img (enable_hr, hr_scale, hr_upscaler, ...) -> make_request's `hires`.

As A1111's processing.py takes them: hr_resize_x/y (both 0: by hr_scale), hr_second_pass_steps (0: the
first pass's steps), denoising_strength (the second pass's), hr_sampler_name / hr_scheduler (None or "Use
same ...": the first pass's), hr_prompt / hr_negative_prompt ("": the first pass's). A service's error
about `hires.<field>` comes back named by A1111's field (mapping.FIELDS).
"""

from __future__ import annotations

from imagegen.v1.contract import LATENT_UPSCALE_MODES
from imagegen.v1.infotext import SAME_SAMPLER, SAME_SCHEDULER, sampler_for

from .errors import field_error
from .models import Txt2ImgRequest

SAME_CHECKPOINT = "Use same checkpoint"  # A1111's hires checkpoint dropdown's "none"
_MOST = 2**32 - 1  # HiresFix's whole numbers are uint32


def _same(value, same: str) -> bool:
    return value in (None, "", same)


def hires_keywords(req: Txt2ImgRequest, first: tuple[str, str]) -> dict | None:
    """make_request's `hires` for the request (None: enable_hr off). `first`: the first pass's (scheduler,
    schedule type), ours. What cannot be sent is a 422 naming A1111's field."""
    if not req.enable_hr:
        return None
    if not _same(req.hr_checkpoint_name, SAME_CHECKPOINT):
        raise field_error("hr_checkpoint_name", "a second pass on another checkpoint is not supported; "
                                                "leave it out (the first pass's checkpoint)")
    upscaler = req.hr_upscaler or ""
    if upscaler.lower().startswith("latent") and upscaler not in LATENT_UPSCALE_MODES:
        raise field_error("hr_upscaler", f"could not find upscaler named {upscaler}; the latent ones are "
                                         f"{', '.join(LATENT_UPSCALE_MODES)}")
    for name in ("hr_second_pass_steps", "hr_resize_x", "hr_resize_y"):
        value = getattr(req, name)
        if not 0 <= value <= _MOST:
            raise field_error(name, f"{value} is outside 0..{_MOST}")
    scheduler, schedule_type = _second_sampler(req, first)
    return {"scale": req.hr_scale, "resize_width": req.hr_resize_x, "resize_height": req.hr_resize_y,
            "upscaler": upscaler, "steps": req.hr_second_pass_steps,
            "denoising_strength": req.denoising_strength, "scheduler": scheduler,
            "schedule_type": schedule_type, "prompt": req.hr_prompt, "negative_prompt": req.hr_negative_prompt}


def _second_sampler(req: Txt2ImgRequest, first: tuple[str, str]) -> tuple[str, str]:
    """The second pass's (scheduler, schedule type); ("", "") for the first pass's. As A1111 1.9+: no
    hr_scheduler means the first pass's `scheduler`, for whichever sampler the second pass runs."""
    same_sampler, same_schedule = _same(req.hr_sampler_name, SAME_SAMPLER), _same(req.hr_scheduler, SAME_SCHEDULER)
    if same_sampler and same_schedule:
        return "", ""
    name = (req.sampler_name or req.sampler_index) if same_sampler else req.hr_sampler_name
    schedule = (req.scheduler or "") if same_schedule else req.hr_scheduler
    found = sampler_for(name, schedule)
    if found is None:
        if sampler_for(name) is None:
            raise field_error("hr_sampler_name", f"sampler {name!r} not found")
        raise field_error("hr_scheduler", f"scheduler {schedule!r} is not available for sampler {name!r}")
    return ("", "") if found == first else found
