"""Rows: one image of one request, from admission to its answer, as the step engine carries it.

Admission uses the pipeline's own building blocks (prompt encoding, latent and mask preparation, the
image processors, the scheduler objects), one row at a time with the row's own generator and
scheduler, so a row starts exactly where diffusers' own pipeline starts for that seed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    import torch


@dataclass(eq=False)
class Row:
    """One image in the denoising loop."""

    owner: Any  # what it belongs to (the engine's job), and which of its images it is
    image_index: int
    scheduler: Any  # its own scheduler instance: multistep schedulers keep state per row
    timesteps: torch.Tensor  # the timesteps it runs, in order
    latents: torch.Tensor  # (1, C, h, w)
    embeds: torch.Tensor  # (2, L, D): unconditional then conditional; (1, L, D) without guidance
    guidance: float
    generator: torch.Generator  # its seed's CPU generator: noise at admission, in scheduler steps, in the VAE
    step_kwargs: dict = field(default_factory=dict)  # what scheduler.step takes (generator, eta)
    added: dict | None = None  # SDXL's text-time conditioning (text_embeds, time_ids), batched like embeds
    conditioning: torch.Tensor | None = None  # extra UNet input channels, batched like the UNet input
    after_step: Callable[["Row"], None] | None = None  # 4-channel inpainting: keep the unmasked latents
    loras: tuple = ()  # its request's LoRA set (spec.loras): set on the pipeline for its UNet calls
    index: int = 0  # steps done

    @property
    def guided(self) -> bool:
        return self.embeds.shape[0] == 2

    @property
    def unet_rows(self) -> int:
        """Rows it takes in a UNet call: two with guidance (unconditional and conditional), else one."""
        return 2 if self.guided else 1

    @property
    def pixels(self) -> int:
        """Latent pixels of one of its UNet rows."""
        return self.latents.shape[-1] * self.latents.shape[-2]

    @property
    def done(self) -> bool:
        return self.index >= len(self.timesteps)

    @property
    def latent_shape(self) -> tuple:
        """(latent height, width): what the row budget counts by."""
        return tuple(self.latents.shape[-2:])

    @property
    def shape_key(self) -> tuple:
        """Rows with equal keys (latent height, width, prompt embedding length, LoRA set) share UNet calls.
        Long prompts are longer sequences; padding a shorter one to share a call would change its image.
        A LoRA set lives in the UNet's layers, so one call runs one set."""
        return (*self.latent_shape, self.embeds.shape[1], self.loras)


@dataclass(frozen=True)
class Prompt:
    """A request's prompt and negative prompt, encoded once for all of its rows."""

    embeds: torch.Tensor  # (2, L, D): negative then positive; (1, L, D) without guidance
    pooled: torch.Tensor | None  # SDXL: the second text encoder's pooled projection, batched like embeds

    @property
    def guided(self) -> bool:
        return self.embeds.shape[0] == 2


def guided(spec) -> bool:
    """Classifier-free guidance as diffusers does it: only above 1."""
    return spec.guidance_scale > 1


def encode_prompt(pipe, spec) -> Prompt:
    """The request's prompts through the one encoder both engines use (prompts.encode_pair); the request's
    LoRA set must be active (a LoRA may change the text encoders too)."""
    import torch

    from ..prompts import encode_pair

    positive, negative = encode_pair(pipe, spec)
    if negative is None:
        return Prompt(positive.embeds, positive.pooled)
    pooled = None if positive.pooled is None else torch.cat([negative.pooled, positive.pooled])
    return Prompt(torch.cat([negative.embeds, positive.embeds]), pooled)


def text_time(pipe, prompt: Prompt, height: int, width: int) -> dict | None:
    """SDXL's added conditioning for one row: the pooled text and the size numbers (original size, crop
    origin, target size; the refiner's aesthetic scores instead of the target), as its pipeline makes them
    with their defaults. None for models without it."""
    import torch

    if prompt.pooled is None:
        return None
    size, dtype = (height, width), prompt.embeds.dtype
    encoder_2 = getattr(pipe, "text_encoder_2", None)
    projection = encoder_2.config.projection_dim if encoder_2 is not None else int(prompt.pooled.shape[-1])
    if "requires_aesthetics_score" in pipe.config:  # the image-to-image and inpainting pipelines
        ids, negative_ids = pipe._get_add_time_ids(size, (0, 0), size, 6.0, 2.5, size, (0, 0), size, dtype=dtype,
                                                   text_encoder_projection_dim=projection)
    else:
        ids = negative_ids = pipe._get_add_time_ids(size, (0, 0), size, dtype=dtype,
                                                    text_encoder_projection_dim=projection)
    time_ids = torch.cat([negative_ids, ids]) if prompt.guided else ids
    return {"text_embeds": prompt.pooled, "time_ids": time_ids.to(pipe._execution_device)}


def new_row(pipe, spec, prompt: Prompt, scheduler, timesteps, latents, generator) -> Row:
    """A row for one of spec's images, once its mode has prepared its timesteps and starting latents."""
    return Row(None, 0, scheduler, timesteps, latents, prompt.embeds, spec.guidance_scale, generator,
               step_kwargs(pipe, scheduler, generator), added=text_time(pipe, prompt, spec.height, spec.width),
               loras=getattr(spec, "loras", ()))


def step_kwargs(pipe, scheduler, generator) -> dict:
    """scheduler.step's extra arguments, as the pipeline prepares them (with this row's scheduler)."""
    pipe.scheduler = scheduler
    return pipe.prepare_extra_step_kwargs(generator, 0.0)


def strength_timesteps(pipe, scheduler, steps: int, strength: float):
    """The timesteps an image mode runs: the scheduler's, cut by strength as the pipeline cuts them."""
    pipe.scheduler = scheduler
    scheduler.set_timesteps(steps, device=pipe._execution_device)
    timesteps, _ = pipe.get_timesteps(steps, strength, pipe._execution_device)
    return timesteps
