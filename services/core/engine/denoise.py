"""One denoising step over many rows, and decoding finished rows: the step engine's arithmetic.

Rows of one shape share one UNet forward, each at its own timestep (a 1-D timestep tensor) with its
own prompt embeddings and what its conditioners add; classifier-free guidance is applied per row with
its own scale (rows without guidance send one UNet row, not two), then each row's own scheduler steps
it. The arithmetic is the pipeline's own loop body, row by row.
"""

from __future__ import annotations

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


def decode(pipe, rows: list[Row]) -> list:
    """PIL images of finished rows, decoded together in one VAE call, as the pipelines decode."""
    vae = pipe.vae
    config = vae.config
    latents = torch.cat([row.latents for row in rows])
    # SDXL's VAE overflows in float16 unless it is a fixed one: the pipelines decode in float32 then.
    upcast = vae.dtype == torch.float16 and config.get("force_upcast", False)
    if upcast:
        vae.to(torch.float32)
    try:
        latents = latents.to(vae.dtype)
        mean, std = config.get("latents_mean"), config.get("latents_std")
        if mean is not None and std is not None:
            shape = (1, len(mean), 1, 1)
            mean = torch.tensor(mean).view(shape).to(latents)
            std = torch.tensor(std).view(shape).to(latents)
            latents = latents * std / config.scaling_factor + mean
        else:
            latents = latents / config.scaling_factor
        images = vae.decode(latents, return_dict=False)[0]
    finally:
        if upcast:
            vae.to(torch.float16)
    return pipe.image_processor.postprocess(images, output_type="pil", do_denormalize=[True] * len(rows))
