"""What the core needs from a mode. Each of services/txt2img, img2img and inpaint builds one `Mode`
and passes it in from its `__main__` (`server.main(MODE)`): the core never imports a mode."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from imagegen.v1.contract import ModeContract


@dataclass(frozen=True)
class Mode:
    contract: ModeContract  # name, proto service, request class, default ports (shared with clients)
    default_model: str  # what --model is when neither the flag nor IMAGEGEN_MODEL says
    pipeline_class: str  # the diffusers class that loads it, e.g. "AutoPipelineForText2Image"
    # request, ServiceConfig, the service's models.upscalers.Upscalers (None: the resizers alone; a hires
    # fix may name one of its models) -> GenerationSpec: every field checked first; raises
    # InvalidArgument. No model work.
    check: Callable[..., Any]
    # pipe, batch (GenerationSpecs with one batch_key), generators (one per image), step callback
    # -> PIL images, in order: all of the first spec's seeds, then the next spec's, ...
    run: Callable[[Any, list, list, Callable], list]
    # ServiceConfig -> a small request run once before reporting SERVING
    warmup_request: Callable[[Any], Any]
    # The step engine: pipe, spec, the encoded Prompt, seed, a fresh scheduler -> the Row of that seed's
    # image, starting where diffusers' pipeline starts (engine/rows.py has the shared building blocks)
    admit: Callable[[Any, Any, Any, int, Any], Any]
    # spec, a decoded PIL image -> the answer's image (inpaint blends it back over the input)
    finish: Callable[[Any, Any], Any] = lambda _spec, image: image

    @property
    def name(self) -> str:
        return self.contract.name

    @property
    def full_service_name(self) -> str:
        return self.contract.full_service_name


def per_image(batch: list, attribute: str) -> list:
    """One value per image of the batch: each spec's attribute, repeated for each of its seeds."""
    return [getattr(spec, attribute) for spec in batch for _seed in spec.seeds]


def prompt_args(pipe, batch: list) -> dict:
    """Per-image prompt embeddings from the one encoder the step engine uses too (prompts.encode_pair),
    so both engines make the same image; the batch's specs have equal chunk counts (batch_key)."""
    import torch

    from .prompts import encode_pair

    encoded = [encode_pair(pipe, spec) for spec in batch]
    counts = [len(spec.seeds) for spec in batch]

    def stack(values) -> torch.Tensor:
        return torch.cat([value.repeat(count, *([1] * (value.ndim - 1))) for value, count in zip(values, counts)])

    args = {"prompt_embeds": stack([positive.embeds for positive, _ in encoded])}
    if encoded[0][0].pooled is not None:
        args["pooled_prompt_embeds"] = stack([positive.pooled for positive, _ in encoded])
    if encoded[0][1] is not None:  # under guidance (the batch shares its scale)
        args["negative_prompt_embeds"] = stack([negative.embeds for _, negative in encoded])
        if encoded[0][1].pooled is not None:
            args["negative_pooled_prompt_embeds"] = stack([negative.pooled for _, negative in encoded])
    return args


def shared_args(pipe, batch: list, generators: list, on_step) -> dict:
    """The pipeline arguments every mode passes: per-image prompt embeddings, and what the batch shares."""
    first = batch[0]
    return {
        **prompt_args(pipe, batch),
        "num_inference_steps": first.steps,
        "guidance_scale": first.guidance_scale,
        "generator": generators,
        "callback_on_step_end": on_step,
    }
