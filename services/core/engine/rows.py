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
    conditioning: torch.Tensor | None = None  # extra UNet input channels, batched like the UNet input
    after_step: Callable[["Row"], None] | None = None  # 4-channel inpainting: keep the unmasked latents
    index: int = 0  # steps done

    @property
    def guided(self) -> bool:
        return self.embeds.shape[0] == 2

    @property
    def done(self) -> bool:
        return self.index >= len(self.timesteps)

    @property
    def shape_key(self) -> tuple:
        """Rows with equal keys (latent height, width) share UNet calls; a service's rows differ in
        nothing else that matters to the UNet (one model: the same channels and prompt length)."""
        return tuple(self.latents.shape[-2:])


def guided(spec) -> bool:
    """Classifier-free guidance as diffusers does it: only above 1."""
    return spec.guidance_scale > 1


def encode_prompt(pipe, spec) -> torch.Tensor:
    """The prompt (and negative prompt) encoded once for all of a request's rows."""
    import torch

    device = pipe._execution_device
    cfg = guided(spec)
    positive, negative = pipe.encode_prompt(spec.prompt, device, 1, cfg, spec.negative_prompt)
    return torch.cat([negative, positive]) if cfg else positive


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
