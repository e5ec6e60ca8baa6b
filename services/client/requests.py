"""Request messages from plain Python values: `make_request(mode, prompt, ...)`."""

from __future__ import annotations

import io
import os
from pathlib import Path

from imagegen.v1 import imagegen_pb2 as pb
from imagegen.v1.contract import (FIT_MODES, LATENT_UPSCALE_MODES, MASKED_CONTENT, OUTPAINT_FILLS, OUTPAINT_SIDES,
                                  OUTPUT_FORMATS)
from imagegen.v1.contract import mode as mode_contract

from . import control as _control  # its units; it takes as_image from here


def as_image(value) -> pb.Image:
    """An Image message from bytes, a path, or a PIL image."""
    if isinstance(value, pb.Image):
        return value
    if isinstance(value, (bytes, bytearray)):
        return pb.Image(data=bytes(value))
    if isinstance(value, (str, os.PathLike)):
        return pb.Image(data=Path(value).read_bytes())
    if hasattr(value, "save"):  # PIL image
        buf = io.BytesIO()
        value.save(buf, format="PNG")
        return pb.Image(data=buf.getvalue(), mime_type="image/png")
    raise TypeError(f"cannot make an image from {type(value).__name__}")


def make_request(
    mode: str,
    prompt: str = "",
    *,
    negative_prompt: str = "",
    steps: int = 0,
    guidance_scale: float | None = None,
    width: int = 0,
    height: int = 0,
    seed: int | None = None,
    num_images: int = 0,
    scheduler: str = "",
    schedule_type: str | None = "",
    output_format: str = "png",
    quality: int = 0,
    image=None,
    mask=None,
    strength: float | None = None,
    fit: str | None = None,
    mask_blur: int | None = None,
    invert_mask: bool = False,
    only_masked: bool = False,
    only_masked_padding: int | None = None,
    masked_content: str | None = None,
    preview_every: int = 0,
    clip_skip: int | None = None,
    loras=None,
    model: str = "",
    outpaint=None,
    hires=None,
    control=None,
):
    """The request message for `mode`; None and 0 leave a field to the service's default.

    `seed`: None or -1 for a random one (the seed used comes back with each image).
    `loras`: LoRAs by name (GetInfo lists them) with weights, as a mapping {name: weight} or (name, weight)
    pairs; `<lora:name:weight>` tags in the prompt work too. Fields the mode does not have (an image for
    txt2img, a mask for img2img) are ignored.
    `scheduler`, `schedule_type`: GetInfo's samplers ("dpmpp_2m", "karras"; "": the model's own, Automatic).
    `model`: a checkpoint by name (GetInfo's models; "": the service's default).
    `control`: ControlNet units, each a ControlUnit or a dict of `control.control_unit`'s keywords.
    `fit`: one of FIT_MODES ("resize", "crop", "keep", "fill", "latent"). Inpaint: `only_masked` repaints the
    mask's surroundings at full resolution (`only_masked_padding` pixels around it); `masked_content` is
    one of MASKED_CONTENT ("original", "fill", "latent noise", "latent nothing"); `outpaint` extends the
    canvas: {"left": 64, "right": 0, "up": 0, "down": 64, "fill": "edge"} (fill: one of OUTPAINT_FILLS), and
    then needs no mask. Txt2img: `hires` asks for A1111's hires fix, a second pass at a larger size, as a
    dict of HiresFix's fields ({"scale": 2, "upscaler": "Latent", "steps": 0, "denoising_strength": 0.7};
    see hires_message); None: none."""
    contract = mode_contract(mode)
    if output_format not in OUTPUT_FORMATS:
        raise ValueError(f"unknown output format {output_format!r}; choose one of {', '.join(OUTPUT_FORMATS)}")
    if fit is not None and fit not in FIT_MODES:
        raise ValueError(f"unknown fit {fit!r}; choose one of {', '.join(FIT_MODES)}")
    if masked_content is not None and masked_content not in MASKED_CONTENT:
        choices = ", ".join(MASKED_CONTENT)
        raise ValueError(f"unknown masked content {masked_content!r}; choose one of {choices}")
    params = pb.GenerationParams(
        prompt=prompt,
        negative_prompt=negative_prompt,
        num_inference_steps=steps,
        width=width,
        height=height,
        num_images=num_images,
        scheduler=scheduler,
        schedule_type=schedule_type or "",
        output_format=OUTPUT_FORMATS[output_format].enum,
        quality=quality,
        preview_every=preview_every,
        model=model,
    )
    if guidance_scale is not None:
        params.guidance_scale = guidance_scale
    if seed is not None and seed != -1:  # -1: random, as the tabs and A1111's API take it
        params.seed = seed
    if clip_skip is not None:
        params.clip_skip = clip_skip
    for name, weight in (loras.items() if hasattr(loras, "items") else loras or ()):
        params.loras.add(name=name, weight=weight)
    for unit in control or ():
        params.control.append(_control.as_unit(unit))
    request = contract.request(params=params)
    if hires is not None and "hires" in request.DESCRIPTOR.fields_by_name:
        request.hires.CopyFrom(hires_message(hires))
    if contract.takes_image:
        if image is not None:
            request.init_image.CopyFrom(as_image(image))
        if strength is not None:
            request.strength = strength
        if fit is not None:
            request.fit = FIT_MODES[fit]
    if contract.takes_mask:
        if mask is not None:
            request.mask_image.CopyFrom(as_image(mask))
        if mask_blur is not None:
            request.mask_blur = mask_blur
        request.invert_mask = invert_mask
        request.only_masked = only_masked
        if only_masked_padding is not None:
            request.only_masked_padding = only_masked_padding
        if masked_content is not None:
            request.masked_content = MASKED_CONTENT[masked_content]
        if outpaint:
            request.outpaint.CopyFrom(outpaint_message(outpaint))
    return request


def outpaint_message(sides) -> pb.Outpaint:
    """InpaintRequest.outpaint from {"left": px, ..., "fill": name}; absent sides are 0, fill edge."""
    unknown = set(sides) - {*OUTPAINT_SIDES, "fill"}
    if unknown:
        raise ValueError(f"unknown outpaint keys {sorted(unknown)}; use {', '.join(OUTPAINT_SIDES)}, fill")
    fill = sides.get("fill") or "edge"
    if fill not in OUTPAINT_FILLS:
        raise ValueError(f"unknown outpaint fill {fill!r}; choose one of {', '.join(OUTPAINT_FILLS)}")
    return pb.Outpaint(fill=OUTPAINT_FILLS[fill], **{side: int(sides.get(side) or 0) for side in OUTPAINT_SIDES})


# HiresFix's fields by make_request's `hires` keys; those the proto leaves unset when absent (optional) too.
HIRES_KEYS = tuple(pb.HiresFix.DESCRIPTOR.fields_by_name)
_HIRES_OPTIONAL = {"scale", "denoising_strength"}
_HIRES_WHOLE = {"resize_width", "resize_height", "steps"}


def hires_message(hires) -> pb.HiresFix:
    """Txt2ImgRequest.hires from {"scale": 2, "upscaler": "Latent", ...} (HiresFix's field names); absent or
    None keys are left to the service (scale 2, Latent, the first pass's steps, strength 0.7, its sampler and
    prompts). An upscaler named "Latent ..." must be one of the latent modes; other names (resizers, model
    upscalers) are the service's to check."""
    unknown = set(hires) - set(HIRES_KEYS)
    if unknown:
        raise ValueError(f"unknown hires keys {sorted(unknown)}; use {', '.join(HIRES_KEYS)}")
    upscaler = hires.get("upscaler") or ""
    if upscaler.lower().startswith("latent") and upscaler not in LATENT_UPSCALE_MODES:
        raise ValueError(f"unknown hires upscaler {upscaler!r}; the latent ones are "
                         f"{', '.join(LATENT_UPSCALE_MODES)}")
    message = pb.HiresFix()
    for key, value in hires.items():
        if value is None:
            continue
        kind = float if key in _HIRES_OPTIONAL else int if key in _HIRES_WHOLE else str
        try:
            setattr(message, key, kind(value))
        except (TypeError, ValueError, OverflowError):  # a negative or huge count: protobuf names no field
            raise ValueError(f"hires {key} {str(value)[:40]!r} is not a {'whole ' if kind is int else ''}"
                             f"number in the field's range") from None
    return message
