"""Resize phases (the hires fix): rows' latents enlarged between two denoise phases.

AUTOMATIC1111's sample_hr_pass, in diffusers' terms: a latent upscaler interpolates the latents
(torch.nn.functional.interpolate with its mode); an image upscaler decodes them, resizes the picture and
encodes it again with the next phase's generator (as diffusers' image-to-image pipeline encodes its
`image`); the latents' centre is kept when a crop is asked; then they are noised to the next phase's first
timestep with noise drawn from that generator, as the image-to-image pipeline's prepare_latents does.
"""

from __future__ import annotations

import torch
from PIL import Image

from .conditioners import TextTime
from .denoise import decode
from .latents import encode
from .rows import Resize, Row, text_time

# The image resizers by AUTOMATIC1111's names: "None" resizes with Lanczos (its UpscalerNone changes
# nothing, and resize_image then resizes to the target with Lanczos).
RESAMPLE = {"None": Image.LANCZOS, "Lanczos": Image.LANCZOS, "Nearest": Image.NEAREST}


def resize(pipe, rows: list[Row]) -> None:
    """Run the Resize phase of each row (all in one), then start each on its next phase."""
    from diffusers.utils.torch_utils import randn_tensor

    pictures = [row for row in rows if row.phase.latent_mode is None]
    decoded = dict(zip(map(id, pictures), decode(pipe, pictures))) if pictures else {}
    for row in rows:
        phase: Resize = row.phase
        height, width = phase.upscale_to
        if phase.latent_mode is not None:
            mode, antialias = phase.latent_mode
            scale = pipe.vae_scale_factor
            latents = torch.nn.functional.interpolate(row.latents, size=(height // scale, width // scale),
                                                      mode=mode, antialias=antialias)
        else:
            picture = decoded[id(row)].resize((width, height), resample=RESAMPLE[phase.upscaler])
            latents = encode(pipe, pipe.image_processor.preprocess(picture), phase.generator).to(row.latents.dtype)
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
