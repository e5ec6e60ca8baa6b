"""Resize phases (the hires fix): rows' latents enlarged between two denoise phases.

AUTOMATIC1111's sample_hr_pass, in diffusers' terms: a latent upscaler interpolates the latents
(torch.nn.functional.interpolate with its mode); an image upscaler (a resizer, or a model of
--upscaler-dir) decodes them, upscales the picture (models.upscalers: the one way to an upscaled image,
a model's over tiles) and encodes it again with the next phase's generator (decode and encode as the
pipelines do, SDXL's way included, denoise.py); the latents' centre is kept when a crop is asked; then
they are noised to the next phase's first timestep with noise drawn from that generator, as the
image-to-image pipeline's prepare_latents does. Last, the row's conditioners remake what they made for
the old size (ControlNet maps, fitted again at the new size).
"""

from __future__ import annotations

import torch

from ..models import upscalers as upscaling
from .conditioners import TextTime
from .denoise import decode, encode
from .rows import Resize, Row, text_time


def resize(pipe, rows: list[Row], upscalers: upscaling.Upscalers | None = None) -> None:
    """Run the Resize phase of each row (all in one), then start each on its next phase. `upscalers`: the
    service's (models.upscalers.Upscalers), for a model upscaler; without it only the resizers run."""
    from diffusers.utils.torch_utils import randn_tensor

    pictures = [row for row in rows if row.phase.latent_mode is None]
    encoded = dict(zip(map(id, pictures), _through_pictures(pipe, pictures, upscalers))) if pictures else {}
    for row in rows:
        phase: Resize = row.phase
        height, width = phase.upscale_to
        if phase.latent_mode is not None:
            mode, antialias = phase.latent_mode
            scale = pipe.vae_scale_factor
            latents = torch.nn.functional.interpolate(row.latents, size=(height // scale, width // scale),
                                                      mode=mode, antialias=antialias)
        else:
            latents = encoded[id(row)].to(row.latents.dtype)
        rows_cut, columns_cut = phase.crop
        if rows_cut or columns_cut:
            latents = latents[:, :, rows_cut // 2: latents.shape[2] - (rows_cut + 1) // 2,
                              columns_cut // 2: latents.shape[3] - (columns_cut + 1) // 2]
        following = row.plan[row.at + 1]
        noise = randn_tensor(latents.shape, generator=phase.generator, device=latents.device, dtype=latents.dtype)
        row.latents = following.scheduler.add_noise(latents, noise, following.timesteps[:1])
        if phase.prompt is not None:
            row.embeds = phase.prompt.embeds
            conditioning = text_time(pipe, phase.prompt)
            if conditioning is not None:
                row.conditioners = [conditioning if isinstance(c, TextTime) else c for c in row.conditioners]
        row.at, row.index = row.at + 1, 0
        for cond in row.conditioners:
            cond.resized(row)


def _through_pictures(pipe, rows: list[Row], upscalers: upscaling.Upscalers | None) -> list[torch.Tensor]:
    """The rows' latents decoded (together), each picture upscaled to its phase's size by its upscaler,
    and encoded again with its phase's generator."""
    pictures = []
    for row, picture in zip(rows, decode(pipe, rows)):
        phase: Resize = row.phase
        size = (phase.upscale_to[1], phase.upscale_to[0])  # (width, height)
        if phase.upscaler in upscaling.RESIZERS:
            pictures.append(upscaling.resize(picture, size, phase.upscaler))
        else:  # a model the checks found in the service's folder
            pictures.append(upscalers.upscale(picture, phase.upscaler, size))
    return encode(pipe, pictures, [row.phase.generator for row in rows])
