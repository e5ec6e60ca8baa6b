"""models/family.py: the architecture told from a checkpoint's keys and shapes, and from a pipeline."""

from __future__ import annotations

import pytest

from services.core.models.family import ModelKind, NotACheckpoint, of_checkpoint

UNET = "model.diffusion_model.input_blocks.0.0.weight"
VAE = {"first_stage_model.encoder.conv_in.weight": (128, 3, 3, 3)}


def shapes(in_channels=4, **text) -> dict:
    return {UNET: (320, in_channels, 3, 3), **VAE, **text}


SD1 = {"cond_stage_model.transformer.text_model.embeddings.position_embedding.weight": (77, 768)}
SD2 = {"cond_stage_model.model.token_embedding.weight": (49408, 1024)}
SDXL = {"conditioner.embedders.0.transformer.text_model.embeddings.position_embedding.weight": (77, 768),
        "conditioner.embedders.1.model.positional_embedding": (77, 1280)}


@pytest.mark.parametrize("text, in_channels, kind", [
    (SD1, 4, ModelKind("sd1", False)), (SD1, 9, ModelKind("sd1", True)), (SD2, 4, ModelKind("sd2", False)),
    (SD2, 9, ModelKind("sd2", True)), (SDXL, 4, ModelKind("sdxl", False)), (SDXL, 9, ModelKind("sdxl", True))])
def test_the_family_and_inpainting_come_from_key_names_and_shapes(text, in_channels, kind):
    assert of_checkpoint(shapes(in_channels, **text)) == kind


@pytest.mark.parametrize("keys, message", [
    ({"weight": (4, 4)}, "no UNet in the original layout"),
    ({**shapes(8), **SD1}, "takes 8 input channels"),
    ({UNET: (320, 4, 3, 3), **SD1}, "no VAE"),
    (shapes(), "no text encoder"),
    ({**shapes(), "conditioner.embedders.0.model.positional_embedding": (77, 1280)}, "SDXL refiner"),
])
def test_what_is_not_a_served_checkpoint_is_named(keys, message):
    with pytest.raises(NotACheckpoint, match=message):
        of_checkpoint(keys)


def test_a_pipeline_s_family(tmp_path):
    from diffusers import AutoPipelineForText2Image, EulerDiscreteScheduler

    from services.core.models.family import of_pipeline
    from services.core.models.presets import ensure_tiny
    from tests.conftest import CACHE_DIR

    pipe = AutoPipelineForText2Image.from_pretrained(ensure_tiny(CACHE_DIR, False))
    assert of_pipeline(pipe) == ModelKind("sd1", False)
    # SD 2.x's 768-v models predict v; their scheduler says so.
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config, prediction_type="v_prediction")
    assert of_pipeline(pipe) == ModelKind("sd2", False)
    assert of_pipeline(AutoPipelineForText2Image.from_pretrained(ensure_tiny(CACHE_DIR, True, "tiny-xl"))) == \
        ModelKind("sdxl", True)
