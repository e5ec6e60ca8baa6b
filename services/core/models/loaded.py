"""A loaded model: the one object the engines, the servicer's infotext and GetInfo read.

It holds the pipeline and what is known of it (family, device, dtype, its own scheduler, its LoRA
adapters, the name requests and infotext call it by), so nothing keeps a loose copy of those facts.
The engines read `pipe` at every call, never keeping their own reference.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from imagegen.v1.contract import MAX_CLIP_SKIP
from imagegen.v1.infotext import SAMPLER, format_sampler

from . import schedulers
from .family import ModelKind, of_pipeline
from .loras import LoraAdapters


@dataclass(eq=False)
class Loaded:
    name: str  # what requests, infotext's "Model" and GetInfo's models call it (catalog.name_of)
    pipe: Any  # the diffusers pipeline of the service's mode
    device: str  # "cpu", "cuda:0", ...
    dtype: str  # "float16", "float32", ...
    adapters: LoraAdapters  # the LoRAs loaded on this model (both engines activate sets through it)
    # The textual-inversion embeddings loaded into its text encoders, by name (models/embeddings.py).
    embeddings: dict = field(default_factory=dict)
    # --compile: engine.graphs.CompiledUNet, what the step engine calls in place of pipe.unet (None: the UNet).
    compiled: Any = None
    # --compile: engine.graphs.CompiledDecode, the VAE's decode of finished images (None: the VAE's own).
    compiled_decode: Any = None
    kind: ModelKind = field(init=False)
    base_scheduler: Any = field(init=False)  # the model's own scheduler, as loaded

    def __post_init__(self) -> None:
        self.kind = of_pipeline(self.pipe)
        self.base_scheduler = self.pipe.scheduler

    @property
    def unet_call(self):
        """What the step engine's UNet calls go through: the compiled UNet under --compile, else the UNet."""
        return self.compiled if self.compiled is not None else self.pipe.unet

    @property
    def family(self) -> str:
        return self.kind.family

    @property
    def default_scheduler(self) -> str:
        """The name of the model's own scheduler (GetInfo's default), or its class name."""
        return schedulers.name_of(self.base_scheduler)

    @property
    def max_clip_skip(self) -> int:
        """The largest Clip skip the model takes: its text encoders' layer count (SDXL: the smaller of its
        two), within the contract's MAX_CLIP_SKIP; A1111's N is layer -N, so N = layers is the first layer."""
        from ..prompts import text_encoders

        layers = [getattr(encoder.config, "num_hidden_layers", MAX_CLIP_SKIP)
                  for _tokenizer, encoder in text_encoders(self.pipe)]
        return min([MAX_CLIP_SKIP, *layers])

    @property
    def vae_scale(self) -> int:
        """Image pixels per latent pixel along a side."""
        return getattr(self.pipe, "vae_scale_factor", 8)

    def scheduler(self, spec, seeds):
        """A fresh scheduler for one generation of `spec` (its scheduler and schedule type; "": the model's
        own) making the images of `seeds`."""
        return schedulers.fresh(spec.scheduler, self.base_scheduler, spec.schedule_type, tuple(seeds))

    def sampler_infotext(self, spec) -> dict[str, str]:
        """Infotext's "Sampler" and "Schedule type" for a spec's scheduler ("": the model's own, by its
        class name when it is no sampler here)."""
        found = schedulers.infotext_sampler(spec.scheduler, spec.schedule_type, self.base_scheduler)
        return format_sampler(*found) if found else {SAMPLER: type(self.base_scheduler).__name__}

    def embedding_hashes(self, spec) -> tuple[tuple[str, str], ...]:
        """(name, short hash) of the embeddings the request's prompts use on this model: `TI hashes`."""
        from .embeddings import used

        return used(self.pipe, self.embeddings, (spec.prompt, spec.negative_prompt if spec.guided else ""))

    def restore_scheduler(self) -> None:
        """Put the model's own scheduler back (admission and pipeline calls set a request's own)."""
        self.pipe.scheduler = self.base_scheduler
