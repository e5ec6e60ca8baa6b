"""The work description: one checked request, immutable, ready for an engine.

This is the protobuf boundary: a mode's `check` turns its request into a GenerationSpec, and nothing
past it sees a protobuf message.
"""

from __future__ import annotations

from dataclasses import dataclass

from imagegen.v1.contract import OutputFormat, guided
from imagegen.v1.infotext import (CFG_SCALE, CLIP_SKIP, LORA_HASHES, MODEL, MODEL_HASH, SEED, SIZE,
                                  STEPS, TI_HASHES, format_infotext, format_lora_hashes, format_size)

from .checks import CheckedParams
from .control_checks import infotext_pairs
from .prompts import lora_tags


@dataclass(frozen=True)
class GenerationSpec:
    prompt: str
    negative_prompt: str
    steps: int
    guidance_scale: float
    width: int
    height: int
    seeds: tuple[int, ...]
    scheduler: str  # a name from schedulers.names(), or "" for the model's own
    output_format: OutputFormat
    quality: int
    preview_every: int = 0  # GenerateStream: a preview every this many steps (0: none); not in infotext
    clip_skip: int = 1  # A1111's Clip skip (1: the last layer); in infotext when not 1
    requested_loras: tuple[tuple[str, float], ...] = ()  # params.loras as sent: infotext writes them as tags
    loras: tuple[tuple[str, float], ...] = ()  # the LoRA set that runs (checks.check_loras): sorted, no zeros
    lora_hashes: tuple[tuple[str, str], ...] = ()  # (name, short hash) of each in `loras`: infotext
    # 77-token chunks of the encoded prompts (prompts.sequence_chunks), set once the tokenizer is loaded
    # (ModeRuntime.check): only equal lengths share a pipeline call. 0: not counted (a lone request).
    prompt_chunks: int = 0
    strength: float | None = None  # image modes: as asked (and recorded in infotext)
    denoise_steps: int | None = None  # image modes: the steps that strength runs (checks.denoising_steps)
    init_image: object | None = None  # PIL RGB image at width x height (img2img, inpaint)
    mask: object | None = None  # PIL "L" image at width x height, binarized (inpaint)
    mask_blur: int = 0
    # Inpaint: where the result goes back (masks.Overlay: the picture, its mask, the "only masked" box).
    overlay: object | None = None
    masked_content: str = "original"  # inpaint: a name of contract.MASKED_CONTENT
    latent_source: object | None = None  # fit latent: the input as encoded (PIL RGB at its own size, rounded)
    infotext_extra: tuple[tuple[str, object], ...] = ()  # mode-specific "Key: value" pairs, in order
    model: str = ""  # the checkpoint's name (models.catalog), set by ModeRuntime.check; "": the default
    schedule_type: str = ""  # one the scheduler takes, or "": its Automatic (A1111's default for it)
    hires: object | None = None  # txt2img's second pass (services.txt2img.hires.Hires); None: none
    control: tuple = ()  # ControlNet units (control_checks.ControlSpec), in the request's order

    @classmethod
    def build(cls, params: CheckedParams, width: int, height: int, **mode_fields) -> "GenerationSpec":
        """The spec from checked shared params, the size the mode settled, and the mode's own fields."""
        shared = {name: getattr(params, name) for name in CheckedParams.__dataclass_fields__
                  if name not in ("width", "height")}
        return cls(**shared, width=width, height=height, **mode_fields)

    @property
    def guided(self) -> bool:
        """Classifier-free guidance: the negative prompt is encoded, and each image takes two UNet rows."""
        return guided(self.guidance_scale)

    @property
    def steps_run(self) -> int:
        """Denoising steps this request runs: all of them, or those its strength leaves."""
        return self.steps if self.denoise_steps is None else self.denoise_steps

    @property
    def pipeline_strength(self) -> float | None:
        """The strength to give diffusers so that it runs exactly `denoise_steps` (it counts
        int(steps x strength), which float rounding can push one below what was checked)."""
        if self.denoise_steps is None:
            return None
        return 1.0 if self.denoise_steps == self.steps else (self.denoise_steps + 0.5) / self.steps

    def batch_key(self) -> tuple:
        """Requests with equal keys can share one pipeline call (each keeps prompts and seeds)."""
        return (self.model, self.width, self.height, self.steps, self.scheduler, self.schedule_type,
                self.guidance_scale,
                self.pipeline_strength, self.prompt_chunks, self.loras, self.starts_from_latents)

    @property
    def starts_from_latents(self) -> bool:
        """Whether the mode makes the input's latents itself (fit latent; latent noise or nothing below
        strength 1) and gives them to the pipeline instead of the picture: a pipeline call takes one or
        the other."""
        # At strength 1 the latents start from pure noise: what lies under the mask is never seen.
        latent_content = (self.masked_content in ("latent noise", "latent nothing")
                          and self.pipeline_strength != 1.0)
        return self.latent_source is not None or latent_content

    def infotext(self, seed: int, sampler: dict[str, str], model: str, model_hash: str = "",
                 embedding_hashes=()) -> str:
        """AUTOMATIC1111-style parameters of the image made with `seed` by the checkpoint `model` (its
        short hash written after it when known); `sampler`: its Sampler (and Schedule type) pairs;
        `embedding_hashes`: the (name, hash) of the embeddings its prompts used."""
        params = {
            STEPS: self.steps,
            **sampler,
            CFG_SCALE: self.guidance_scale,
            SEED: seed,
            SIZE: format_size(self.width, self.height),
            MODEL: model,
            **({MODEL_HASH: model_hash} if model_hash else {}),
            **dict(self.infotext_extra),
        }
        if self.clip_skip != 1:
            params[CLIP_SKIP] = self.clip_skip
        if self.lora_hashes:  # as A1111: Lora hashes: "name: 0123456789ab, other: ..."
            params[LORA_HASHES] = format_lora_hashes(self.lora_hashes)
        if embedding_hashes:  # A1111's key and format for them: TI hashes: "name: 0123456789ab"
            params[TI_HASHES] = format_lora_hashes(embedding_hashes)
        params.update(infotext_pairs(self.control))  # "ControlNet 0: ...", as sd-webui-controlnet writes them
        return format_infotext(self.recorded_prompt, self.negative_prompt, params)

    @property
    def recorded_prompt(self) -> str:
        """The prompt as sent, with params.loras written as A1111's tags after it: A1111 tools (and our
        replay) read a LoRA's weight from the prompt, and the tags add up to the same set when sent back
        (check_params keeps this prompt within max_prompt_chars, so a replay of it is accepted)."""
        return self.prompt + lora_tags(self.requested_loras)
