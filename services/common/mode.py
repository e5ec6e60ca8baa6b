"""What makes a mode a mode: the few functions each of txt2img, img2img and inpaint provides."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class Mode:
    name: str  # "txt2img"
    service: str  # the proto service name, "Txt2Img"
    # request, ServiceConfig -> GenerationSpec; raises InvalidArgument. No model work.
    parse: Callable[[Any, Any], Any]
    # pipe, batch (GenerationSpecs with one batch_key), generators (one per image), step callback
    # -> PIL images, in order: all of the first spec's seeds, then the next spec's, ...
    run: Callable[[Any, list, list, Callable], list]
    # ServiceConfig -> a small request run once before reporting SERVING
    warmup_request: Callable[[Any], Any]
    add_servicer: Callable[[Any, Any], None]

    @property
    def full_service_name(self) -> str:
        return f"imagegen.v1.{self.service}"


def get_mode(name: str) -> Mode:
    return importlib.import_module(f"services.{name}.mode").MODE


def per_image(batch: list, attribute: str) -> list:
    """One value per image of the batch: each spec's attribute, repeated for each of its seeds."""
    return [getattr(spec, attribute) for spec in batch for _seed in spec.seeds]


def shared_args(batch: list, generators: list, on_step) -> dict:
    """The pipeline arguments every mode passes: per-image prompts, and what the batch shares."""
    first = batch[0]
    return {
        "prompt": per_image(batch, "prompt"),
        "negative_prompt": per_image(batch, "negative_prompt"),
        "num_inference_steps": first.steps,
        "guidance_scale": first.guidance_scale,
        "generator": generators,
        "callback_on_step_end": on_step,
    }
