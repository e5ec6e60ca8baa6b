"""The Txt2Img tab's "Hires. fix" controls (AUTOMATIC1111's): a second pass at a larger size.

Its inputs are a group of their own, last in /txt2img's API (HIRES_INPUTS, in that order); `keywords`
makes make_request's `hires` of them, `recalled` fills them from parameters read back (PNG Info, History).
Choices and defaults come from the contract (latent modes, image resizers) and GetInfo (samplers, the
model upscalers a service lists, its step and size limits).
"""

from __future__ import annotations

from typing import Callable

import gradio as gr

from imagegen.v1 import imagegen_pb2 as pb
from imagegen.v1.contract import (AUTOMATIC, DEFAULT_HIRES_SCALE, DEFAULT_HIRES_STRENGTH, DEFAULT_HIRES_UPSCALER,
                                  RESIZERS, LATENT_UPSCALE_MODES, MAX_HIRES_SCALE, SCHEDULE_TYPES)
from imagegen.v1.infotext import SAME_SAMPLER, SAME_SCHEDULER

from .masks import InputError

# The API names of the controls, in API order (after every other input of the tab).
HIRES_INPUTS = ("hires", "hires_upscaler", "hires_steps", "hires_strength", "hires_scale", "hires_resize_width",
                "hires_resize_height", "hires_scheduler", "hires_schedule_type", "hires_prompt",
                "hires_negative_prompt")


def upscaler_choices(info: pb.ServiceInfo) -> list[str]:
    """The latent modes, the image resizers, then the model upscalers the service lists (ServiceInfo.upscalers,
    where the contract has it: names, or messages with a name), but those it says it cannot use."""
    models = [getattr(item, "name", item) for item in getattr(info, "upscalers", ())
              if not getattr(item, "unusable", "")]
    return list(dict.fromkeys([*LATENT_UPSCALE_MODES, *RESIZERS, *(name for name in models if name)]))


def sampler_choices(info: pb.ServiceInfo) -> list[tuple[str, str]]:
    """"Use same sampler" (the first pass's), then GetInfo's samplers (A1111's names shown, ours sent)."""
    return [(SAME_SAMPLER, SAME_SAMPLER)] + [(sampler.label, sampler.name) for sampler in info.samplers]


SCHEDULE_CHOICES = [(SAME_SCHEDULER, SAME_SCHEDULER), (AUTOMATIC, "")] + [
    (label, name) for name, label in SCHEDULE_TYPES.items()]


def controls(info: pb.ServiceInfo) -> dict:
    """API name -> component (HIRES_INPUTS): A1111's Hires. fix, closed until asked for."""
    limits = info.limits
    with gr.Accordion("Hires. fix (upscale, then a second pass)", open=False, elem_id="txt2img-hires"):
        enable = gr.Checkbox(False, label="Hires. fix", elem_id="txt2img-hires-enable")
        with gr.Row():
            upscaler = gr.Dropdown(upscaler_choices(info), value=DEFAULT_HIRES_UPSCALER, label="Upscaler",
                                   elem_id="txt2img-hires-upscaler")
            steps = gr.Slider(0, limits.max_steps, value=0, step=1, label="Hires steps", info="0 = the first pass's",
                              elem_id="txt2img-hires-steps")
            strength = gr.Slider(0, 1, value=DEFAULT_HIRES_STRENGTH, step=0.01, label="Denoising strength",
                                 elem_id="txt2img-hires-strength")
        with gr.Row():
            scale = gr.Slider(1, MAX_HIRES_SCALE, value=DEFAULT_HIRES_SCALE, step=0.05, label="Upscale by",
                              elem_id="txt2img-hires-scale")
            width = gr.Slider(0, limits.max_width, value=0, step=8, label="Resize width to",
                              info="both 0: by Upscale by",
                              elem_id="txt2img-hires-resize-width")
            height = gr.Slider(0, limits.max_height, value=0, step=8, label="Resize height to",
                               info="one side 0: it keeps the aspect",
                               elem_id="txt2img-hires-resize-height")
        with gr.Row():
            sampler = gr.Dropdown(sampler_choices(info), value=SAME_SAMPLER, label="Hires sampler",
                                  elem_id="txt2img-hires-sampler")
            schedule = gr.Dropdown(SCHEDULE_CHOICES, value=SAME_SCHEDULER, label="Hires schedule type",
                                   elem_id="txt2img-hires-schedule-type")
        prompt = gr.Textbox(label="Hires prompt (empty = the prompt)", lines=1, elem_id="txt2img-hires-prompt")
        negative = gr.Textbox(label="Hires negative prompt (empty = the negative prompt)", lines=1,
                              elem_id="txt2img-hires-negative")
    return dict(zip(HIRES_INPUTS, (enable, upscaler, steps, strength, scale, width, height, sampler, schedule,
                                   prompt, negative)))


# The controls GetInfo sets (choices, limits), in the order of `updates`.
RANGED = ("hires_upscaler", "hires_steps", "hires_resize_width", "hires_resize_height", "hires_scheduler")


def ranged(inputs: dict) -> list:
    """The tab's controls whose choices and ranges follow GetInfo (none where the tab has no Hires. fix)."""
    return [inputs[name] for name in RANGED if name in inputs]


def updates(info: pb.ServiceInfo, inputs: dict) -> list:
    """The updates of `ranged(inputs)` for a page load's GetInfo."""
    if "hires_upscaler" not in inputs:
        return []
    limits = info.limits
    return [gr.update(choices=upscaler_choices(info)), gr.update(maximum=limits.max_steps),
            gr.update(maximum=limits.max_width), gr.update(maximum=limits.max_height),
            gr.update(choices=sampler_choices(info))]


def keywords(values: dict, first: tuple[str, str], number: Callable) -> dict | None:
    """make_request's `hires` from the tab's values (None: the checkbox off, or a caller of the API from before
    the controls). `first`: the first pass's (scheduler, schedule type) as sent ("": the model's own);
    `number`: the tab's number reader (tabs.number), which names a field that is not one."""
    if not values.get("hires"):
        return None
    sampler = values.get("hires_scheduler") or SAME_SAMPLER
    schedule = values.get("hires_schedule_type")
    schedule = SAME_SCHEDULER if schedule is None else schedule
    scheduler = schedule_type = ""
    if (sampler, schedule) != (SAME_SAMPLER, SAME_SCHEDULER):
        scheduler = first[0] if sampler == SAME_SAMPLER else str(sampler)
        schedule_type = first[1] if schedule == SAME_SCHEDULER else str(schedule)
        if not scheduler:  # the contract's schedule type goes with a named sampler
            raise InputError("a hires schedule type needs a sampler: the first pass runs the model's own, so "
                             "choose a hires sampler")
    given = {name: values.get(name) for name in ("hires_scale", "hires_strength")}
    return {
        "upscaler": str(values.get("hires_upscaler") or ""),  # "": the service's default (Latent)
        "steps": number(values, "hires_steps", whole=True),
        "denoising_strength": number(values, "hires_strength") if given["hires_strength"] is not None else None,
        "scale": number(values, "hires_scale") if given["hires_scale"] is not None else None,
        "resize_width": number(values, "hires_resize_width", whole=True),
        "resize_height": number(values, "hires_resize_height", whole=True),
        "scheduler": scheduler,
        "schedule_type": schedule_type,
        "prompt": str(values.get("hires_prompt") or ""),
        "negative_prompt": str(values.get("hires_negative_prompt") or ""),
    }


def recalled(hires: dict | None, inputs: dict) -> tuple[dict, list[str]]:
    """(API name -> value, warnings) for the controls in `inputs` from parameters' `hires` (services.client's
    Parameters.hires): the checkbox follows whether the image had a second pass, as A1111's paste does; an
    upscaler the dropdown lacks is left as it is, with a warning."""
    if not inputs:
        return {}, []
    if hires is None:
        return {"hires": False}, []
    values = {"hires": True, "hires_steps": hires.get("steps") or 0,
              "hires_resize_width": hires.get("resize_width") or 0,
              "hires_resize_height": hires.get("resize_height") or 0, "hires_prompt": hires.get("prompt") or "",
              "hires_negative_prompt": hires.get("negative_prompt") or ""}
    if hires.get("scale") is not None:
        values["hires_scale"] = hires["scale"]
    if hires.get("denoising_strength") is not None:
        values["hires_strength"] = hires["denoising_strength"]
    scheduler = hires.get("scheduler") or ""
    values["hires_scheduler"] = scheduler or SAME_SAMPLER
    values["hires_schedule_type"] = (hires.get("schedule_type") or "") if scheduler else SAME_SCHEDULER
    warnings = []
    upscaler = hires.get("upscaler") or DEFAULT_HIRES_UPSCALER
    offered = [choice[1] if isinstance(choice, (tuple, list)) else choice
               for choice in inputs["hires_upscaler"].choices]
    if upscaler in offered:
        values["hires_upscaler"] = upscaler
    else:
        warnings.append(f"hires upscaler {upscaler!r} is not one the service has: the upscaler chosen is kept "
                        "and the result will differ")
    return values, warnings
