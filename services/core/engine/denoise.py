"""One denoising step over many rows, and decoding finished rows: the step engine's arithmetic.

Rows of one shape share one UNet forward, each at its own timestep (a 1-D timestep tensor) with its
own prompt embeddings and what its conditioners add; classifier-free guidance is applied per row with
its own scale (rows without guidance send one UNet row, not two), then each row's own scheduler steps
it. The arithmetic is the pipeline's own loop body, row by row.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch

from .conditioners import batched_kwargs, before_call
from .rows import Row


def unet_step(unet, rows: list[Row]) -> None:
    """Advance every row (all of one shape_key) by one step, in one UNet call."""
    inputs, embeds, times, kwargs = [], [], [], []
    scaled = [row.scheduler.scale_model_input(torch.cat([row.latents] * row.unet_rows), row.timestep)
              for row in rows]
    before_call(rows, scaled)  # batched work of conditioners (ControlNets) over the call's rows
    for row, x in zip(rows, scaled):
        extra = [c for c in (cond.channels(row) for cond in row.conditioners) if c is not None]
        if extra:
            x = torch.cat([x, *extra], dim=1)
        inputs.append(x)
        embeds.append(row.embeds)
        times.append(row.timestep.reshape(1).expand(x.shape[0]))
        kwargs.append({path: value for cond in row.conditioners for path, value in cond.unet_kwargs(row).items()})
    noise = unet(torch.cat(inputs), torch.cat(times), encoder_hidden_states=torch.cat(embeds), return_dict=False,
                 **batched_kwargs(rows, kwargs))[0]
    offset = 0
    for row in rows:
        width = row.unet_rows
        prediction = noise[offset: offset + width]
        offset += width
        if row.guided:
            unconditional, conditional = prediction.chunk(2)
            prediction = unconditional + row.guidance * (conditional - unconditional)
        row.latents = row.scheduler.step(prediction, row.timestep, row.latents, **row.phase.step_kwargs,
                                         return_dict=False)[0]
        for cond in row.conditioners:
            cond.after_step(row)
        row.advance()


@contextmanager
def _vae_precision(vae, halves: tuple):
    """The VAE in float32 for the call when it is in one of `halves` and its config says force_upcast, as
    the SDXL pipelines upcast it (its VAE overflows in float16 unless it is a fixed one)."""
    dtype = vae.dtype
    upcast = dtype in halves and vae.config.get("force_upcast", False)
    if upcast:
        vae.to(torch.float32)
    try:
        yield
    finally:
        if upcast:
            vae.to(dtype)


def _latent_stats(vae, like: torch.Tensor):
    """(mean, std) of the VAE's latents where its config has them (SDXL's own VAEs may), else None."""
    mean, std = vae.config.get("latents_mean"), vae.config.get("latents_std")
    if mean is None or std is None:
        return None
    shape = (1, len(mean), 1, 1)
    return torch.tensor(mean).view(shape).to(like), torch.tensor(std).view(shape).to(like)


def decode(pipe, rows: list[Row]) -> list:
    """PIL images of finished rows, decoded together in one VAE call, as the pipelines decode."""
    vae = pipe.vae
    with _vae_precision(vae, (torch.float16,)):  # the pipelines' decoding upcasts float16 only
        latents = torch.cat([row.latents for row in rows]).to(vae.dtype)
        stats = _latent_stats(vae, latents)
        if stats is not None:
            latents = latents * stats[1] / vae.config.scaling_factor + stats[0]
        else:
            latents = latents / vae.config.scaling_factor
        images = vae.decode(latents, return_dict=False)[0]
    return pipe.image_processor.postprocess(images, output_type="pil", do_denormalize=[True] * len(rows))


def encode(pipe, pictures: list, generators: list) -> list[torch.Tensor]:
    """decode's inverse, as the image-to-image pipelines encode their `image` (SDXL's way: in float32
    where decode upcasts, the latents' mean and std where the VAE has them): each PIL picture's (1, C,
    h, w) latents, sampled with its own generator, in the dtype the UNet runs in."""
    from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_img2img import retrieve_latents

    vae, dtype = pipe.vae, pipe.unet.dtype
    out = []
    with _vae_precision(vae, (torch.float16, torch.bfloat16)):  # SDXL image-to-image's encoding: any half
        for picture, generator in zip(pictures, generators):
            image = pipe.image_processor.preprocess(picture).to(device=vae.device, dtype=vae.dtype)
            latents = retrieve_latents(vae.encode(image), generator=generator).to(dtype)
            stats = _latent_stats(vae, latents)
            if stats is not None:
                latents = (latents - stats[0]) * vae.config.scaling_factor / stats[1]
            else:
                latents = vae.config.scaling_factor * latents
            out.append(latents)
    return out
