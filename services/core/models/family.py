"""Which Stable Diffusion a model is (sd1, sd2, sdxl) and whether it is an inpainting model.

Told from a loaded pipeline (what GetInfo reports, whatever the model came from) and from a single-file
checkpoint's key names and tensor shapes (to pick the pipeline class before loading it). Both live here
so the two answers cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass

FAMILIES = ("sd1", "sd2", "sdxl")
# OpenCLIP ViT-H, SD 2.x's text encoder, is 1024 wide; SD 1.x's CLIP ViT-L is 768.
SD2_TEXT_WIDTH = 1024
INPAINT_CHANNELS = 9  # latents 4 + mask 1 + masked-image latents 4

# The original (LDM/SGM) layout of A1111 and Civitai checkpoints.
UNET_IN = "model.diffusion_model.input_blocks.0.0.weight"
VAE = "first_stage_model."
SD1_TEXT = "cond_stage_model.transformer."  # CLIP ViT-L, transformers' layout
SD2_TEXT = "cond_stage_model.model."  # OpenCLIP ViT-H, open_clip's layout
SDXL_TEXT_2 = "conditioner.embedders.1."  # SDXL's second (OpenCLIP bigG) text encoder
SDXL_REFINER_TEXT = "conditioner.embedders.0.model."  # the refiner has the OpenCLIP encoder only


@dataclass(frozen=True)
class ModelKind:
    family: str  # "sd1", "sd2" or "sdxl"
    inpaint: bool  # the UNet takes the mask and the masked image (9 input channels)

    def describe(self) -> str:
        return self.family + (" inpainting" if self.inpaint else "")


class NotACheckpoint(ValueError):
    """The file's tensors are not a Stable Diffusion 1.x/2.x/XL checkpoint; the message says why."""


def of_pipeline(pipe) -> ModelKind:
    """The kind of a loaded diffusers pipeline."""
    inpaint = pipe.unet.config.in_channels == INPAINT_CHANNELS
    if getattr(pipe, "text_encoder_2", None) is not None or "XL" in type(pipe).__name__:
        return ModelKind("sdxl", inpaint)
    text_width = getattr(getattr(pipe.text_encoder, "config", None), "hidden_size", None)
    predicts_v = pipe.scheduler.config.get("prediction_type") == "v_prediction"
    return ModelKind("sd2" if text_width == SD2_TEXT_WIDTH or predicts_v else "sd1", inpaint)


def of_checkpoint(shapes: dict[str, tuple]) -> ModelKind:
    """The kind of a checkpoint in the original layout, from {key: tensor shape}. Raises NotACheckpoint."""
    if UNET_IN not in shapes:
        raise NotACheckpoint(f"no UNet in the original layout ({UNET_IN} is missing)")
    in_channels = shapes[UNET_IN][1] if len(shapes[UNET_IN]) == 4 else None
    if in_channels not in (4, INPAINT_CHANNELS):
        raise NotACheckpoint(f"its UNet takes {in_channels} input channels (Stable Diffusion: 4, inpainting: 9)")
    if not any(key.startswith(VAE) for key in shapes):
        raise NotACheckpoint(f"it has no VAE ({VAE}*)")
    inpaint = in_channels == INPAINT_CHANNELS
    if any(key.startswith(SDXL_TEXT_2) for key in shapes):
        return ModelKind("sdxl", inpaint)
    if any(key.startswith(SDXL_REFINER_TEXT) for key in shapes):
        raise NotACheckpoint("it is an SDXL refiner, which is not served (use an SDXL base checkpoint)")
    if any(key.startswith(SD2_TEXT) for key in shapes):
        return ModelKind("sd2", inpaint)
    if any(key.startswith(SD1_TEXT) for key in shapes):
        return ModelKind("sd1", inpaint)
    raise NotACheckpoint(f"it has no text encoder ({SD1_TEXT}*, {SD2_TEXT}* or conditioner.embedders.*)")
