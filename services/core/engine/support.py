"""Which models the step engine serves. Others are served by whole pipeline calls instead."""

from __future__ import annotations

# The pipelines whose building blocks the modes' admission uses (Stable Diffusion 1.x/2.x and XL).
SUPPORTED_PIPELINES = {
    "StableDiffusionPipeline", "StableDiffusionImg2ImgPipeline", "StableDiffusionInpaintPipeline",
    "StableDiffusionXLPipeline", "StableDiffusionXLImg2ImgPipeline", "StableDiffusionXLInpaintPipeline",
}


def unsupported(pipe) -> str | None:
    """Why the step engine cannot serve this pipeline, on one line; None when it can."""
    name = type(pipe).__name__
    if name not in SUPPORTED_PIPELINES:
        return f"{name} is not a Stable Diffusion 1.x/2.x/XL pipeline"
    config = pipe.unet.config
    if config.get("time_cond_proj_dim") is not None:
        return "its UNet takes a guidance-scale embedding (an LCM-style model)"
    if config.get("addition_embed_type") not in (None, "text_time"):
        return f"its UNet's added conditioning {config.get('addition_embed_type')!r} is not SDXL's"
    if getattr(pipe.unet, "encoder_hid_proj", None) is not None:
        return "its UNet has an image-prompt projection (IP-Adapter)"
    return None
