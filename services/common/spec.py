"""Requests become plain `GenerationSpec`s here, after every field is checked.

This is the protobuf boundary: nothing past it sees a protobuf message, and nothing before it
touches the model. Every problem is an InvalidArgument naming the field.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass, field

from imagegen.v1 import imagegen_pb2 as pb

from . import images, schedulers
from .config import ServiceConfig
from .errors import InvalidArgument

FORMATS = {
    pb.IMAGE_FORMAT_UNSPECIFIED: "PNG",
    pb.IMAGE_FORMAT_PNG: "PNG",
    pb.IMAGE_FORMAT_JPEG: "JPEG",
    pb.IMAGE_FORMAT_WEBP: "WEBP",
}
FITS = {
    pb.FIT_MODE_UNSPECIFIED: None,
    pb.FIT_MODE_RESIZE: "resize",
    pb.FIT_MODE_CROP: "crop",
    pb.FIT_MODE_KEEP: "keep",
}
MIN_SIZE = 64
MAX_SEED = 2**64 - 1


@dataclass
class GenerationSpec:
    """One validated request, ready for the pipeline."""

    prompt: str
    negative_prompt: str
    steps: int
    guidance_scale: float
    width: int
    height: int
    seeds: list[int]
    scheduler: str  # a name from schedulers.SCHEDULERS, or "" for the model's own
    output_format: str  # PNG, JPEG or WEBP
    quality: int
    strength: float | None = None
    init_image: object | None = None  # PIL image at width x height (img2img, inpaint)
    mask: object | None = None  # PIL "L" image at width x height, binarized (inpaint)
    mask_blur: int = 0
    infotext_extra: dict = field(default_factory=dict)

    def batch_key(self) -> tuple:
        """Requests with equal keys can share one pipeline call (each keeps prompts and seeds)."""
        return (self.width, self.height, self.steps, self.scheduler, self.guidance_scale, self.strength)


def _short(value: float) -> float:
    """A float32 field as the decimal the caller most likely wrote (0.6, not 0.6000000238)."""
    return float(f"{value:.6g}")


def _text(value: str, name: str, limit: int) -> str:
    if len(value) > limit:
        raise InvalidArgument(name, f"is {len(value)} characters, over the limit of {limit}")
    if "\x00" in value:
        raise InvalidArgument(name, "contains a NUL character")
    return value


def _size(value: int, name: str, limit: int) -> int:
    if value % 8:
        raise InvalidArgument(name, f"{value} is not a multiple of 8")
    if not MIN_SIZE <= value <= limit:
        raise InvalidArgument(name, f"{value} is outside {MIN_SIZE}..{limit}")
    return value


def check_pixels(width: int, height: int, config: ServiceConfig, name: str = "params.width") -> None:
    if width * height > config.limits.max_pixels:
        raise InvalidArgument(
            name, f"{width}x{height} is {width * height} pixels, over the limit of {config.limits.max_pixels}"
        )


def parse_params(params: pb.GenerationParams, config: ServiceConfig) -> GenerationSpec:
    """Check the shared parameters. Width/height 0 stay 0 here: each mode resolves its default."""
    limits, defaults = config.limits, config.defaults
    prompt = _text(params.prompt, "params.prompt", limits.max_prompt_chars)
    negative = _text(params.negative_prompt, "params.negative_prompt", limits.max_prompt_chars)

    steps = params.num_inference_steps or defaults.num_inference_steps
    if steps > limits.max_steps:
        raise InvalidArgument("params.num_inference_steps", f"{steps} is over the limit of {limits.max_steps}")

    guidance = params.guidance_scale if params.HasField("guidance_scale") else defaults.guidance_scale
    if not math.isfinite(guidance) or not 0 <= guidance <= limits.max_guidance_scale:
        raise InvalidArgument("params.guidance_scale", f"{guidance} is outside 0..{limits.max_guidance_scale}")

    width = _size(params.width, "params.width", limits.max_width) if params.width else 0
    height = _size(params.height, "params.height", limits.max_height) if params.height else 0
    if width and height:
        check_pixels(width, height, config)

    count = params.num_images or 1
    if count > limits.max_images:
        raise InvalidArgument("params.num_images", f"{count} is over the limit of {limits.max_images}")
    seed = params.seed if params.HasField("seed") else secrets.randbelow(2**32)
    if seed + count - 1 > MAX_SEED:
        raise InvalidArgument("params.seed", f"seed + num_images - 1 must be at most {MAX_SEED}")

    if params.scheduler and params.scheduler not in schedulers.SCHEDULERS:
        raise InvalidArgument(
            "params.scheduler",
            f"unknown scheduler {params.scheduler!r}; choose one of {', '.join(schedulers.names())}",
        )
    if params.output_format not in FORMATS:
        raise InvalidArgument("params.output_format", f"unknown format {params.output_format}")
    quality = params.quality or defaults.quality
    if quality > 100:
        raise InvalidArgument("params.quality", f"{quality} is outside 1..100")

    return GenerationSpec(
        prompt=prompt,
        negative_prompt=negative,
        steps=steps,
        guidance_scale=_short(guidance),
        width=width,
        height=height,
        seeds=[seed + i for i in range(count)],
        scheduler=params.scheduler,
        output_format=FORMATS[params.output_format],
        quality=quality,
    )


def parse_strength(request, default: float, spec: GenerationSpec) -> float:
    strength = request.strength if request.HasField("strength") else default
    if not math.isfinite(strength) or not 0 <= strength <= 1:
        raise InvalidArgument("strength", f"{strength} is outside 0..1")
    if int(spec.steps * strength) < 1:
        raise InvalidArgument(
            "strength",
            f"{strength} x {spec.steps} steps runs no denoising step; raise strength or num_inference_steps",
        )
    return _short(strength)


def parse_init_image(request, spec: GenerationSpec, config: ServiceConfig):
    """Decode init_image and fit it to the requested size; fills in spec.width/height."""
    if request.fit not in FITS:
        raise InvalidArgument("fit", f"unknown fit mode {request.fit}")
    img = images.decode_image(request.init_image.data, "init_image.data", config.limits.max_input_pixels)
    fit = FITS[request.fit] or ("resize" if spec.width and spec.height else "keep")
    if fit == "keep":
        width, height = images.round8(img.width), images.round8(img.height)
        for value, name, limit in ((width, "width", config.limits.max_width), (height, "height", config.limits.max_height)):
            if not MIN_SIZE <= value <= limit:
                raise InvalidArgument(
                    "init_image.data",
                    f"image {name} {value} (rounded to a multiple of 8) is outside {MIN_SIZE}..{limit}; "
                    "set params.width and params.height to resize it",
                )
        check_pixels(width, height, config, "init_image.data")
    else:
        if not (spec.width and spec.height):
            raise InvalidArgument("params.width", f"fit {fit} needs both params.width and params.height")
        width, height = spec.width, spec.height
    spec.width, spec.height = width, height
    # Fit before dropping alpha: the crop box is the same either way, and we keep one code path.
    fitted = images.fit_image(img, width, height, "crop" if fit == "crop" else "resize")
    return images.to_rgb(fitted), img, fit
