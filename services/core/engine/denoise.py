"""One denoising step over many rows, and decoding finished rows: the step engine's arithmetic.

Rows of one shape share one UNet forward, each at its own timestep (a 1-D timestep tensor) with its
own prompt embeddings and what its conditioners add; classifier-free guidance is applied per row with
its own scale (rows without guidance send one UNet row, not two), then each row's own scheduler steps
it, or its cohort's steps it with the rows it arrived with (cohorts.py). The arithmetic is the
pipeline's own loop body, row by row or over a cohort's rows stacked.
"""

from __future__ import annotations

import functools
from contextlib import contextmanager

import torch

from .cohorts import arrange
from .conditioners import Conditioner, batched_kwargs, before_call
from .rows import Row


def unet_step(unet, rows: list[Row], cohorts: bool = True) -> None:
    """Advance every row (all of one shape_key) by one step, in one UNet call. `cohorts`: rows that can
    step as one do (cohorts.py), their inputs and steps made once for all of them; False: each row is
    stepped on its own (the same images, for comparison)."""
    if not cohorts:
        return _rows_alone(unet, rows)
    groups = arrange(rows)
    inputs, scaled, times = [], [], []
    for group in groups:
        first = group.rows[0]
        group.timestep = first.phase.host_timesteps[first.index]  # on the host: schedulers index by it
        x = group.latents
        if first.guided:  # each row's unconditional then conditional UNet row
            x = torch.cat([x, x]) if len(group) == 1 else _doubled(x)
        x = group.scheduler.scale_model_input(x, group.timestep)
        scaled.append(x)
        extra = group.extra_channels()
        inputs.append(x if extra is None else torch.cat([x, extra], dim=1))
        times += [first.phase.timestep_values[first.index]] * x.shape[0]
    if any(_calls_before(row) for row in rows):  # ControlNets: each row's own UNet input
        before_call(rows, [x[i * row.unet_rows: (i + 1) * row.unet_rows] for group, x in zip(groups, scaled)
                           for i, row in enumerate(group.rows)])
    embeds = torch.cat([row.embeds for row in rows])
    kwargs = [{path: value for cond in row.conditioners for path, value in cond.unet_kwargs(row).items()}
              for row in rows]
    # The timesteps from the host copies: no device tensor indexed per row. Their dtype is the one
    # concatenating the rows' own would give.
    dtype = functools.reduce(torch.promote_types, (group.rows[0].timesteps.dtype for group in groups))
    timesteps = torch.tensor(times, dtype=dtype).to(embeds.device, non_blocking=True)
    noise = unet(torch.cat(inputs) if len(inputs) > 1 else inputs[0], timesteps, encoder_hidden_states=embeds,
                 return_dict=False, **batched_kwargs(rows, kwargs))[0]
    offset = 0
    for group in groups:
        first = group.rows[0]
        width = len(group) * first.unet_rows
        prediction = noise[offset: offset + width]
        offset += width
        if first.guided:
            paired = prediction.view(len(group), 2, *prediction.shape[1:])
            unconditional, conditional = paired[:, 0], paired[:, 1]
            prediction = unconditional + first.guidance * (conditional - unconditional)
        group.stepped(group.scheduler.step(prediction, group.timestep, group.latents, **group.step_kwargs,
                                           return_dict=False)[0])
        group.after_step()
        group.advance()


def _doubled(x: torch.Tensor) -> torch.Tensor:
    """Each row twice, in x's memory layout (encoded images' latents are channels-last): the UNet's
    convolutions follow the layout, so it is the input the rows' own concatenations would give."""
    doubled = x.repeat_interleave(2, dim=0)
    if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        doubled = doubled.contiguous(memory_format=torch.channels_last)
    return doubled


def _calls_before(row: Row) -> bool:
    return any(type(cond).before_call.__func__ is not Conditioner.before_call.__func__ for cond in row.conditioners)


def _rows_alone(unet, rows: list[Row]) -> None:
    """unet_step with each row stepped by its own scheduler (rows in cohorts are not: see unet_step)."""
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


def decoding(vae):
    """The precision the VAE decodes in, for the call: the pipelines' decoding upcasts float16 only."""
    return _vae_precision(vae, (torch.float16,))


def decode(pipe, rows: list[Row], vae_decode=None) -> list:
    """PIL images of finished rows, decoded together in one VAE call, as the pipelines decode;
    `vae_decode` (latents to pixels: engine.graphs.CompiledDecode under --compile) in place of the VAE's."""
    vae = pipe.vae
    with decoding(vae):
        latents = torch.cat([row.latents for row in rows]).to(vae.dtype)
        stats = _latent_stats(vae, latents)
        if stats is not None:
            latents = latents * stats[1] / vae.config.scaling_factor + stats[0]
        else:
            latents = latents / vae.config.scaling_factor
        images = vae_decode(latents) if vae_decode is not None else vae.decode(latents, return_dict=False)[0]
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
