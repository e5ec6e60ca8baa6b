"""The tiny model: built from config, saved once, loaded through from_pretrained, real shapes."""

import json

import torch
from diffusers import AutoPipelineForInpainting, AutoPipelineForText2Image

from services.core.models.presets import ensure_tiny


def test_built_once_then_loaded_through_from_pretrained(tmp_path):
    folder = ensure_tiny(tmp_path, inpaint=False)
    stamp = (folder / "model_index.json").stat().st_mtime_ns
    assert ensure_tiny(tmp_path, inpaint=False) == folder
    assert (folder / "model_index.json").stat().st_mtime_ns == stamp  # not rebuilt
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".build-")]
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline"

    pipe = AutoPipelineForText2Image.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    assert pipe.vae_scale_factor == 8
    assert pipe.tokenizer.model_max_length == 77
    assert pipe.text_encoder.config.max_position_embeddings == 77
    assert pipe.unet.config.in_channels == 4
    tokens = pipe.tokenizer("a red fox, ünïcode ✓", padding="max_length", truncation=True)
    assert len(tokens.input_ids) == 77
    out = pipe("a red fox", num_inference_steps=2, width=512, height=512,
               generator=torch.Generator("cpu").manual_seed(0), output_type="latent")
    assert tuple(out.images.shape) == (1, 4, 64, 64)  # 512 / 8, like real Stable Diffusion


def test_inpaint_unet_has_nine_input_channels(tmp_path):
    pipe = AutoPipelineForInpainting.from_pretrained(ensure_tiny(tmp_path, inpaint=True))
    assert pipe.unet.config.in_channels == 9
    assert type(pipe).__name__ == "StableDiffusionInpaintPipeline"


def test_the_build_is_deterministic(tmp_path):
    a = ensure_tiny(tmp_path / "a", inpaint=False)
    b = ensure_tiny(tmp_path / "b", inpaint=False)
    for name in ("unet/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.safetensors"):
        assert (a / name).read_bytes() == (b / name).read_bytes()


def test_sd15_preset_has_the_real_model_sizes():
    from services.core.models.presets import SD15, build_pipeline

    # On the meta device: the shapes and parameter counts, without allocating 4 GB.
    with torch.device("meta"):
        pipe = build_pipeline(SD15, inpaint=False)
        inpaint = build_pipeline(SD15, inpaint=True)

    def millions(module):
        return sum(p.numel() for p in module.parameters()) / 1e6

    assert 859 < millions(pipe.unet) < 860.5  # SD 1.5's UNet: 859.52M
    assert 83 < millions(pipe.vae) < 84  # 83.65M
    assert 123 < millions(pipe.text_encoder) < 123.2  # 123.06M
    assert pipe.text_encoder.config.vocab_size == 49408 and pipe.vae_scale_factor == 8
    assert inpaint.unet.config.in_channels == 9


def test_tiny_xl_has_sdxl_s_shape_rules(tmp_path):
    from diffusers import AutoPipelineForImage2Image

    folder = ensure_tiny(tmp_path, inpaint=False, name="tiny-xl")
    assert folder.name == "sdxl" and folder != ensure_tiny(tmp_path, inpaint=False)
    pipe = AutoPipelineForText2Image.from_pretrained(folder)
    assert type(pipe).__name__ == "StableDiffusionXLPipeline"
    assert pipe.unet.config.addition_embed_type == "text_time"
    # The UNet's cross-attention takes both text encoders' hidden states side by side.
    assert pipe.unet.config.cross_attention_dim == (pipe.text_encoder.config.hidden_size
                                                    + pipe.text_encoder_2.config.hidden_size)
    assert pipe.vae.config.scaling_factor == 0.13025
    assert type(AutoPipelineForImage2Image.from_pretrained(folder)).__name__ == "StableDiffusionXLImg2ImgPipeline"
    inpaint = AutoPipelineForInpainting.from_pretrained(ensure_tiny(tmp_path, inpaint=True, name="tiny-xl"))
    assert type(inpaint).__name__ == "StableDiffusionXLInpaintPipeline"
    assert inpaint.unet.config.in_channels == 9
