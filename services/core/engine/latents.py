"""Starting latents a mode makes itself where the pipelines would start from the picture: the input
encoded at its own size and stretched (fit latent), or changed under the mask (latent noise, latent
nothing). The pipelines take a 4-channel `image` (and inpaint's `masked_image_latents`) as latents as
they are, so the step engine's rows and the pipeline engine's calls start from the very same tensors.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def encode(pipe, image: torch.Tensor, generator) -> torch.Tensor:
    """A preprocessed picture's latents, sampled with the image's generator and scaled, by the
    pipeline's own encoding (the inpainting pipelines' _encode_vae_image, SDXL image-to-image's
    prepare_latents without noise, else Stable Diffusion image-to-image's)."""
    device, dtype = pipe._execution_device, pipe.vae.dtype
    if hasattr(pipe, "_encode_vae_image"):
        return pipe._encode_vae_image(image.to(device=device, dtype=dtype), generator)
    if "add_noise" in inspect.signature(pipe.prepare_latents).parameters:
        return pipe.prepare_latents(image, None, 1, 1, dtype, device, generator, add_noise=False)
    from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_img2img import retrieve_latents

    encoded = retrieve_latents(pipe.vae.encode(image.to(device=device, dtype=dtype)), generator=generator)
    return pipe.vae.config.scaling_factor * encoded


def stretch(pipe, latents: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Latents stretched bilinearly to the latent size of height x width pixels, as AUTOMATIC1111's
    "latent upscale" resize mode does."""
    import torch

    size = (height // pipe.vae_scale_factor, width // pipe.vae_scale_factor)
    if tuple(latents.shape[-2:]) == size:
        return latents
    return torch.nn.functional.interpolate(latents, size=size, mode="bilinear")


def replace_masked(latents: torch.Tensor, mask: torch.Tensor, content: str, generator) -> torch.Tensor:
    """The latents with their masked part (mask: the pixel mask, 1 = repaint, as the mask processor
    gives it) replaced by random noise from the generator ("latent noise") or zeros ("latent nothing").
    The mask is brought to the latent size as prepare_mask_latents brings it (nearest)."""
    import torch
    from diffusers.utils.torch_utils import randn_tensor

    mask = torch.nn.functional.interpolate(mask, size=latents.shape[-2:]).to(latents)
    if content == "latent noise":
        fill = randn_tensor(latents.shape, generator=generator, device=latents.device, dtype=latents.dtype)
    else:
        fill = torch.zeros_like(latents)
    return latents * (1 - mask) + fill * mask
