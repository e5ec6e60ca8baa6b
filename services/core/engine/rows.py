"""Rows: one image of one request, from admission to its answer, as the step engine carries it.

A row carries a plan, its phases in order: denoise phases (with their scheduler and timesteps), then
decode. The scheduler and the budgets read a row's current phase and size, never its request's, so a
row may change size between phases (a resize phase) and be served fairly at the new size.

Admission uses the pipeline's own building blocks (prompt encoding, latent and mask preparation, the
image processors, the scheduler objects), one row at a time with the row's own generator and
scheduler, so a row starts exactly where diffusers' own pipeline starts for that seed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..work.queue import progress_step
from .conditioners import Conditioner, TextTime

if TYPE_CHECKING:
    import torch


@dataclass(eq=False)
class Denoise:
    """A phase: denoise the row's latents over these timesteps with this scheduler."""

    scheduler: Any  # the row's own instance: multistep schedulers keep state per row
    timesteps: torch.Tensor  # the timesteps it runs, in order: one UNet call each
    step_kwargs: dict  # what scheduler.step takes (generator, eta)
    size: tuple[int, int]  # (height, width) in image pixels: SDXL's size conditioning reads it
    steps: int  # the steps asked for, which progress counts: PLMS calls once more, Heun twice a step

    def __post_init__(self):
        # A host copy, made once outside the loop: the UNet call's timesteps are built from it without
        # indexing a device tensor per row.
        self.host_timesteps = self.timesteps.cpu()
        self.timestep_values = self.host_timesteps.tolist()

    @property
    def calls(self) -> int:
        return len(self.timesteps)


@dataclass(eq=False)
class Resize:
    """A phase between two denoise phases (the hires fix): the row's latents enlarged to `upscale_to`
    (in latent space, or decoded, resized and encoded again), `crop` latent columns and rows cut off
    (half on each side), then noised to the next phase's first timestep with `generator`, the next
    phase's (seeded by the row's seed, as a second pipeline call would be). resize.py runs it."""

    upscaler: str  # contract.LATENT_UPSCALE_MODES or RESIZERS name
    latent_mode: tuple[str, bool] | None  # (interpolate mode, antialias) for a latent upscaler
    upscale_to: tuple[int, int]  # (height, width) in image pixels
    crop: tuple[int, int]  # (rows, columns) of latents cut off
    generator: torch.Generator
    prompt: Prompt | None = None  # the next phase's prompts, when they differ from the row's
    calls = steps = 0


@dataclass(frozen=True)
class Decode:
    """The last phase: the row's latents are decoded (with other finished rows) and answered."""

    calls = steps = 0


@dataclass(eq=False)
class Row:
    """One image in the denoising loop."""

    owner: Any  # what it belongs to (the engine's job), and which of its images it is
    image_index: int
    _latents: torch.Tensor  # (1, C, h, w) while it steps alone; in a cohort the cohort holds them (`latents`)
    embeds: torch.Tensor  # (2, L, D): unconditional then conditional; (1, L, D) without guidance
    guidance: float
    generator: torch.Generator  # its seed's CPU generator: noise at admission, in scheduler steps, in the VAE
    plan: list  # its phases: Denoise ..., Decode
    conditioners: list[Conditioner] = field(default_factory=list)  # what it adds to its UNet calls
    loras: tuple = ()  # its request's LoRA set (spec.loras): set on the pipeline for its UNet calls
    model: str = ""  # the checkpoint it runs on (models.catalog name): first in its shape key
    at: int = 0  # the phase it is in
    index: int = 0  # steps done in that phase
    cohort: Any = None  # the cohorts.Cohort it steps in (its latents are row `slot` of the cohort's), or None
    slot: int = 0

    @property
    def latents(self) -> torch.Tensor:
        """(1, C, h, w): its own, or its row of its cohort's (a view, read for previews and sizes)."""
        if self.cohort is not None:
            return self.cohort.latents[self.slot: self.slot + 1]
        return self._latents

    @latents.setter
    def latents(self, value: torch.Tensor) -> None:
        assert self.cohort is None, "a row in a cohort changes with its cohort"
        self._latents = value

    def attach(self, *conditioners: Conditioner) -> "Row":
        """Add what the row brings to its UNet calls (extra channels, keyword arguments, a step after
        the scheduler's): the one way conditioning reaches the UNet call."""
        self.conditioners.extend(conditioners)
        return self

    # --- its phase
    @property
    def phase(self):
        return self.plan[self.at]

    @property
    def scheduler(self):
        return self.phase.scheduler

    @property
    def timesteps(self):
        return self.phase.timesteps

    @property
    def timestep(self):
        return self.phase.timesteps[self.index]

    def advance(self) -> None:
        """One step done; past a phase's last step, the next phase."""
        self.index += 1
        if self.index >= self.phase.calls:
            self.at, self.index = self.at + 1, 0

    @property
    def done(self) -> bool:
        """Denoised: the row waits to be decoded."""
        return isinstance(self.phase, Decode)

    @property
    def resizing(self) -> bool:
        """Between two denoise phases: its latents are enlarged before its next UNet call."""
        return isinstance(self.phase, Resize)

    # --- progress, over every phase
    @property
    def calls_left(self) -> int:
        """UNet calls still to run: what its time to finish depends on."""
        return self.phase.calls - self.index + sum(phase.calls for phase in self.plan[self.at + 1:])

    def progress(self) -> tuple[int, int]:
        """(steps done, steps in all) in the steps the request asked for, over every phase."""
        done = sum(phase.steps for phase in self.plan[: self.at])
        if not self.done:
            done += progress_step(self.index, self.phase.calls, self.phase.steps)
        return done, sum(phase.steps for phase in self.plan)

    # --- what the scheduler groups by
    @property
    def guided(self) -> bool:
        return self.embeds.shape[0] == 2

    @property
    def unet_rows(self) -> int:
        """Rows it takes in a UNet call: two with guidance (unconditional and conditional), else one."""
        return 2 if self.guided else 1

    @property
    def pixels(self) -> int:
        """Latent pixels of one of its UNet rows, now."""
        height, width = self.latent_shape
        return height * width

    @property
    def latent_shape(self) -> tuple:
        """(latent height, width) now: what the row budget counts by."""
        held = self._latents if self.cohort is None else self.cohort.latents  # no view made: a shape suffices
        return tuple(held.shape[-2:])

    @property
    def shape_key(self) -> tuple:
        """Rows with equal keys (model, latent height, width, prompt embedding length, LoRA set) share UNet
        calls. One call runs one model's UNet (the scheduler reads the model as the key's first item).
        Long prompts are longer sequences; padding a shorter one to share a call would change its image.
        A LoRA set lives in the UNet's layers, so one call runs one set."""
        return (self.model, *self.latent_shape, self.embeds.shape[1], self.loras)


@dataclass(frozen=True)
class Prompt:
    """A request's prompt and negative prompt, encoded once for all of its rows."""

    embeds: torch.Tensor  # (2, L, D): negative then positive; (1, L, D) without guidance
    pooled: torch.Tensor | None  # SDXL: the second text encoder's pooled projection, batched like embeds

    @property
    def guided(self) -> bool:
        return self.embeds.shape[0] == 2


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


def text_time(pipe, prompt: Prompt) -> TextTime | None:
    """SDXL's added conditioning for a row: the pooled text and the size numbers (original size, crop
    origin, target size; the refiner's aesthetic scores instead of the target) of the size it denoises
    at, as its pipeline makes them with their defaults. None for models without it."""
    import torch

    if prompt.pooled is None:
        return None
    dtype, device = prompt.embeds.dtype, pipe._execution_device
    encoder_2 = getattr(pipe, "text_encoder_2", None)
    projection = encoder_2.config.projection_dim if encoder_2 is not None else int(prompt.pooled.shape[-1])
    aesthetic = "requires_aesthetics_score" in pipe.config  # the image-to-image and inpainting pipelines

    def time_ids(size: tuple[int, int]) -> torch.Tensor:
        if aesthetic:
            ids, negative_ids = pipe._get_add_time_ids(size, (0, 0), size, 6.0, 2.5, size, (0, 0), size,
                                                       dtype=dtype, text_encoder_projection_dim=projection)
        else:
            ids = negative_ids = pipe._get_add_time_ids(size, (0, 0), size, dtype=dtype,
                                                        text_encoder_projection_dim=projection)
        return (torch.cat([negative_ids, ids]) if prompt.guided else ids).to(device)

    return TextTime(prompt.pooled, time_ids)


def new_row(pipe, spec, prompt: Prompt, scheduler, timesteps, latents, generator) -> Row:
    """A row for one of spec's images, once its mode has prepared its timesteps and starting latents:
    one denoise phase at the request's size, then decode."""
    denoise = Denoise(scheduler, timesteps, step_kwargs(pipe, scheduler, generator), (spec.height, spec.width),
                      spec.steps_run)
    row = Row(None, 0, latents, prompt.embeds, spec.guidance_scale, generator, [denoise, Decode()],
              loras=getattr(spec, "loras", ()))
    conditioning = text_time(pipe, prompt)
    return row.attach(conditioning) if conditioning is not None else row


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
