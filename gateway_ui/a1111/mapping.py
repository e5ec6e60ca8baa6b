"""An A1111 request -> the contract's requests, one per batch (n_iter), and back.

Each A1111 field that reaches the services is one row of FIELDS: the make_request keyword it becomes and
the contract field a service's INVALID_ARGUMENT names, so an error about `params.width` comes back as
`width`. Sampler names go through imagegen.v1.infotext.sampler_for, the mapping PNG Info and replay use.
"""

from __future__ import annotations

import base64
import binascii
import random
import re
from dataclasses import dataclass, field

from google.protobuf.descriptor import FieldDescriptor

from imagegen.v1.contract import mode as mode_contract
from imagegen.v1.infotext import sampler_for
from services.client import make_request

from ..batch import MAX_RANDOM_SEED, iteration_seeds
from . import outpainting
from .errors import ApiError, field_error
from .hires import hires_keywords
from .models import UNSUPPORTED, Img2ImgRequest, Txt2ImgRequest, _Request


@dataclass(frozen=True)
class Row:
    a1111: str  # the request field, as A1111 names it
    keyword: str | None  # make_request's keyword (None: no contract field yet)
    contract: str | None  # the contract's field, as a service's violation names it


FIELDS = (
    Row("prompt", "prompt", "params.prompt"),
    Row("prompt", None, "params.loras"),  # <lora:name:weight> tags in the prompt: the services read them
    Row("negative_prompt", "negative_prompt", "params.negative_prompt"),
    Row("steps", "steps", "params.num_inference_steps"),
    Row("cfg_scale", "guidance_scale", "params.guidance_scale"),
    Row("width", "width", "params.width"),
    Row("height", "height", "params.height"),
    Row("seed", "seed", "params.seed"),
    Row("batch_size", "num_images", "params.num_images"),
    Row("sampler_name", "scheduler", "params.scheduler"),
    Row("scheduler", "schedule_type", "params.schedule_type"),
    Row("override_settings.CLIP_stop_at_last_layers", "clip_skip", "params.clip_skip"),
    Row("override_settings.samples_format", "output_format", "params.output_format"),
    Row("init_images.0", "image", "init_image"),
    Row("denoising_strength", "strength", "strength"),
    Row("resize_mode", "fit", "fit"),
    Row("mask", "mask", "mask_image"),
    Row("mask_blur", "mask_blur", "mask_blur"),
    Row("inpainting_mask_invert", "invert_mask", "invert_mask"),
    Row("inpaint_full_res", "only_masked", "only_masked"),
    Row("inpaint_full_res_padding", "only_masked_padding", "only_masked_padding"),
    Row("inpainting_fill", "masked_content", "masked_content"),
    Row("script_args.0", "outpaint", "outpaint"),  # Poor man's outpainting's pixels
    # The hires fix (hires.py makes make_request's `hires` dict of them).
    Row("enable_hr", "hires", "hires"),
    Row("hr_scale", None, "hires.scale"),
    Row("hr_resize_x", None, "hires.resize_width"),
    Row("hr_resize_y", None, "hires.resize_height"),
    Row("hr_upscaler", None, "hires.upscaler"),
    Row("hr_second_pass_steps", None, "hires.steps"),
    Row("denoising_strength", None, "hires.denoising_strength"),
    Row("hr_sampler_name", None, "hires.scheduler"),
    Row("hr_scheduler", None, "hires.schedule_type"),
    Row("hr_prompt", None, "hires.prompt"),
    Row("hr_negative_prompt", None, "hires.negative_prompt"),
)
KEYWORD_FIELD = {row.keyword: row.a1111 for row in FIELDS if row.keyword}  # for our own checks' errors

# resize_mode -> make_request's fit: just resize, crop and resize, resize and fill, latent upscale.
FIT_BY_RESIZE_MODE = {0: "resize", 1: "crop", 2: "fill", 3: "latent"}
# inpainting_fill -> make_request's masked_content (the contract's names are A1111's words).
CONTENT_BY_INPAINTING_FILL = {0: "fill", 1: "original", 2: "latent noise", 3: "latent nothing"}
# samples_format (A1111's option) -> make_request's output_format; anything else is PNG, as A1111 does.
FORMAT_BY_SAMPLES_FORMAT = {"png": "png", "jpg": "jpeg", "jpeg": "jpeg", "webp": "webp"}
CONTROLNET_SCRIPT = "controlnet"  # sd-webui-controlnet's alwayson_scripts key (controlnet.py reads its units)
ALWAYSON = {CONTROLNET_SCRIPT}  # the alwayson_scripts taken


def a1111_field(contract_field: str) -> str:
    """A service's field path ("params.width", "init_image.data", "params.loras[0].name") as A1111 names it."""
    best = None
    for row in FIELDS:
        matches = row.contract and (contract_field == row.contract
                                    or contract_field.startswith((row.contract + ".", row.contract + "[")))
        if matches and (best is None or len(row.contract) > len(best.contract)):
            best = row
    return best.a1111 if best else contract_field


def sampler(req: _Request) -> tuple[str, str]:
    """(our scheduler, our schedule type) for the request's sampler_name (else sampler_index) and
    scheduler; 422 naming the field if we have none. Whether the sampler takes that schedule is the
    service's check (its INVALID_ARGUMENT names params.schedule_type, answered as `scheduler`)."""
    name = req.sampler_name or req.sampler_index
    ours = sampler_for(name, req.scheduler or "")
    if ours is None:
        if sampler_for(name) is None:
            raise field_error("sampler_name", f"sampler {name!r} not found")
        raise field_error("scheduler", f"scheduler {req.scheduler!r} is not available for sampler {name!r}")
    return ours


_DATA_URL = re.compile(r"^data:[\w/+.-]*(;[\w=-]+)*;base64,")
_SPACE = re.compile(r"\s+")


def decode_image(text: str, where: str) -> bytes:
    """A base64 image as A1111 takes one (with or without a data:image/...;base64, prefix); a URL or
    broken base64 is a 422 naming `where`. The bytes are not decoded as an image here: the service
    checks them (and says so naming the same field)."""
    if text.startswith(("http://", "https://")):
        raise field_error(where, "images are sent as base64, not as URLs")
    data = _SPACE.sub("", _DATA_URL.sub("", text, count=1))
    try:
        decoded = base64.b64decode(data + "=" * (-len(data) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise field_error(where, "not valid base64") from None
    if not decoded:
        raise field_error(where, "empty image")
    return decoded


def check_supported(req: _Request, scripts: set[str] = frozenset()) -> None:
    """422 for what A1111 would do that nothing here does (UNSUPPORTED, scripts), naming the field."""
    for name, (defaults, reason) in UNSUPPORTED.items():
        if name in type(req).model_fields and getattr(req, name) not in defaults:
            raise field_error(name, reason)
    if req.script_name and req.script_name.strip().lower() not in {s.lower() for s in scripts}:  # A1111's words
        raise ApiError(422, f"Script '{req.script_name}' not found")
    for name in req.alwayson_scripts:
        if name.lower() not in scripts | ALWAYSON:
            raise ApiError(422, f"always on script {name} not found")


@dataclass
class Plan:
    """What one A1111 call becomes: its mode, a request per batch (in seed order), and the facts the
    answer echoes."""

    mode: str
    requests: list
    seed: int  # the first image's
    subseed: int
    clip_skip: int
    output_format: str
    extra: dict = field(default_factory=dict)


def whole_number(value, where: str) -> int:
    """An option's integer (2, or 2.0 as some clients write it); else a 422 naming it."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise field_error(where, "an integer")
    return value


def _settings(req: _Request, options: dict) -> dict:
    """The caller's options, overridden by the request's override_settings."""
    return {**options, **(req.override_settings or {})}


def plan(req: _Request, options: dict, mode: str | None = None) -> Plan:
    """The requests for `req` (mode None: img2img's choice by its mask). `options`: the caller's."""
    outpaint = isinstance(req, Img2ImgRequest) and outpainting.is_outpainting(req.script_name)
    check_supported(req, {outpainting.NAME} if outpaint else frozenset())
    settings = _settings(req, options)
    scheduler, schedule_type = sampler(req)
    clip_skip = whole_number(settings.get("CLIP_stop_at_last_layers", 1), KEYWORD_FIELD["clip_skip"])
    output_format = FORMAT_BY_SAMPLES_FORMAT.get(str(settings.get("samples_format", "png")).lower(), "png")
    seed = random.randrange(MAX_RANDOM_SEED) if req.seed == -1 else req.seed
    subseed = random.randrange(MAX_RANDOM_SEED) if req.subseed == -1 else req.subseed
    common = {"prompt": req.prompt, "negative_prompt": req.negative_prompt, "steps": req.steps,
              "guidance_scale": req.cfg_scale, "width": req.width, "height": req.height,
              "num_images": req.batch_size, "scheduler": scheduler,
              "schedule_type": schedule_type, "clip_skip": clip_skip,
              "output_format": output_format}
    if outpaint:  # the script's mask is the new area: any mask sent is not used, as in A1111
        mode = "inpaint"
        common.update(_image_keywords(req.model_copy(update={"mask": None})))
        common.update(outpainting.keywords(req.script_args, CONTENT_BY_INPAINTING_FILL))
    elif isinstance(req, Img2ImgRequest):
        mode = mode or ("inpaint" if req.mask else "img2img")
        common.update(_image_keywords(req))
    else:
        mode = mode or "txt2img"
        if isinstance(req, Txt2ImgRequest):
            common["hires"] = hires_keywords(req, (scheduler, schedule_type))
    if seed < 0:
        raise field_error("seed", "-1 for a random seed, else 0 or more")
    check_ranges(mode, {**common, "seed": seed})
    max_seed = _INT_RANGES[FieldDescriptor.TYPE_UINT64][1]
    if seed + (req.n_iter - 1) * req.batch_size > max_seed:  # the last batch's first seed
        raise field_error("seed", f"seed + batch_size x (n_iter - 1) must be at most {max_seed}")
    requests = [make_request(mode, **common, seed=first) for first in iteration_seeds(seed, req.n_iter, req.batch_size)]
    return Plan(mode, requests, seed, subseed, clip_skip, output_format)


# The contract's integer types' ranges: a value past them cannot even be put in a request message.
_INT_RANGES = {FieldDescriptor.TYPE_INT32: (-2**31, 2**31 - 1), FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
               FieldDescriptor.TYPE_INT64: (-2**63, 2**63 - 1), FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1)}


def _contract_type(mode: str, path: str) -> int | None:
    """The protobuf type of a contract field ("params.width") of `mode`'s request; None if it has none."""
    descriptor = mode_contract(mode).request.DESCRIPTOR
    *parents, name = path.split(".")
    for parent in parents:
        field = descriptor.fields_by_name.get(parent)
        if field is None or field.message_type is None:
            return None
        descriptor = field.message_type
    field = descriptor.fields_by_name.get(name)
    return field.type if field is not None else None


def check_ranges(mode: str, keywords: dict) -> None:
    """422 naming the A1111 field for an integer outside its contract field's type (steps 10**12, a
    negative padding): protobuf would refuse it with no field named, as an internal error."""
    for row in FIELDS:
        value = keywords.get(row.keyword) if row.keyword and row.contract else None
        if isinstance(value, bool) or not isinstance(value, int):
            continue
        low, high = _INT_RANGES.get(_contract_type(mode, row.contract), (value, value))
        if not low <= value <= high:
            raise field_error(row.a1111, f"{value} is outside {low}..{high}")


def _image_keywords(req: Img2ImgRequest) -> dict:
    """make_request's image keywords for an img2img call (and an inpaint call when it has a mask)."""
    if not req.init_images:
        raise field_error("init_images", "an image is required")
    if len(req.init_images) > 1:
        raise field_error("init_images", "one image per call here; send a call per image")
    if req.resize_mode not in FIT_BY_RESIZE_MODE:
        raise field_error("resize_mode", "0 (just resize), 1 (crop and resize), 2 (resize and fill) or "
                                         "3 (just resize, latent upscale)")
    keywords = {
        "image": decode_image(req.init_images[0], "init_images.0"),
        "strength": req.denoising_strength,
        "fit": FIT_BY_RESIZE_MODE[req.resize_mode],
    }
    if req.mask:
        if req.mask_blur is None and req.mask_blur_x != req.mask_blur_y:
            raise field_error("mask_blur_x", "a blur of one radius: mask_blur_x equal to mask_blur_y")
        keywords.update(
            mask=decode_image(req.mask, "mask"),
            mask_blur=req.mask_blur if req.mask_blur is not None else req.mask_blur_x,
            invert_mask=bool(req.inpainting_mask_invert),
            # Sent explicitly: the API's defaults (only masked, padding 0, fill) are not the contract's.
            only_masked=bool(req.inpaint_full_res),
            only_masked_padding=req.inpaint_full_res_padding,
            masked_content=_masked_content(req.inpainting_fill),
        )
    return keywords


def _masked_content(inpainting_fill) -> str:
    if inpainting_fill not in CONTENT_BY_INPAINTING_FILL:
        raise field_error("inpainting_fill", "0 (fill), 1 (original), 2 (latent noise) or 3 (latent nothing)")
    return CONTENT_BY_INPAINTING_FILL[inpainting_fill]
