"""Stable Diffusion architectures built from config, with random weights and no download.

`tiny`: the embedded model, at toy size. Its images are noise, but every shape rule of the real
model holds: the VAE has 4 down blocks and downsamples by 8, the text encoder takes 77 tokens, and
the inpaint UNet takes 9 input channels. It is written to a cache folder once and then loaded
through the same `from_pretrained` path as a real model, so tests exercise the real loading code.

`tiny-xl`: the same for Stable Diffusion XL: two text encoders (the second with a projection, whose
pooled output and the image's size and crop feed the UNet's text-time embedding), an SDXL UNet layout
and SDXL's scheduler and VAE settings, so every SDXL code path runs in tests.

`sd15`: the full Stable Diffusion 1.5 sizes (UNet 860M, VAE 84M, CLIP text encoder 123M
parameters), built in memory on the target device: the real model's compute and memory cost, for
benchmarks and GPU checks. Real weights load through the normal path (`--model ID or folder`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

TINY_VERSION = "v2"  # bump when the tiny sizes below change, so old caches are not reused
_SPECIAL = ["<|startoftext|>", "<|endoftext|>"]
# The embedded models, by --model name: the folder name in the cache.
EMBEDDED = {"tiny": "sd", "tiny-xl": "sdxl"}


def tiny_path(cache_dir: Path, inpaint: bool, name: str = "tiny") -> Path:
    return Path(cache_dir) / f"tiny-{TINY_VERSION}" / (EMBEDDED[name] + ("-inpaint" if inpaint else ""))


def ensure_tiny(cache_dir: Path, inpaint: bool, name: str = "tiny") -> Path:
    """Return an embedded model's folder, building it first if the cache does not hold it yet."""
    target = tiny_path(cache_dir, inpaint, name)
    if (target / "model_index.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # Build beside the target and rename: services starting together never see half a model.
    staging = Path(tempfile.mkdtemp(prefix=".build-", dir=target.parent))
    try:
        (build_tiny_xl_pipeline if name == "tiny-xl" else build_tiny_pipeline)(inpaint).save_pretrained(staging)
        try:
            os.rename(staging, target)
        except OSError:
            if not (target / "model_index.json").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


# The sample textual-inversion embeddings `make run` serves (services/launch.py passes their folder):
# name -> {part: (vectors, width)}, at the tiny models' text-encoder widths (TINY's, TINY_XL's below). Each
# model loads the one that fits it and skips the other with a log line, as A1111 skips another family's.
SAMPLE_EMBEDDINGS = {"tiny-embedding": {"emb_params": (2, 32)},
                     "tiny-xl-embedding": {"clip_l": (2, 32), "clip_g": (2, 48)}}


def ensure_sample_embeddings(cache_dir: Path) -> Path:
    """The folder of SAMPLE_EMBEDDINGS (random vectors, seeded; A1111's .safetensors layouts), written
    into the cache once."""
    import numpy as np
    from safetensors.numpy import save_file

    folder = Path(cache_dir) / f"tiny-{TINY_VERSION}" / "embeddings"
    folder.mkdir(parents=True, exist_ok=True)
    for seed, (name, parts) in enumerate(SAMPLE_EMBEDDINGS.items()):
        target = folder / f"{name}.safetensors"
        if target.is_file():
            continue
        rng = np.random.default_rng(seed)
        # At the scale of a prompt's own token embeddings, well above them: the sample visibly does something.
        tensors = {part: (rng.standard_normal(shape) * 0.5).astype(np.float32)
                   for part, shape in parts.items()}
        staging = folder / f".{name}.{os.getpid()}.tmp"  # written beside and renamed: never half a file
        save_file(tensors, str(staging))
        os.replace(staging, target)
    return folder


# The sample LoRAs `make run` serves (services/launch.py passes their folder): name -> (the embedded model
# it is for, its seed, kohya's format). Random non-zero weights on the attention layers (lora_writer), so
# using one changes the image; a model refuses the other one naming params.loras, as it would any LoRA of
# another family.
SAMPLE_LORAS = {"tiny-lora": ("tiny", 0, True), "tiny-xl-lora": ("tiny-xl", 1, False)}


def ensure_sample_loras(cache_dir: Path) -> Path:
    """The folder of SAMPLE_LORAS (tiny-lora in kohya's format, what A1111 users download; tiny-xl-lora in
    diffusers'), written into the cache once, beside the sample embeddings."""
    from .lora_writer import write_lora

    folder = Path(cache_dir) / f"tiny-{TINY_VERSION}" / "loras"
    folder.mkdir(parents=True, exist_ok=True)
    for name, (model, seed, kohya) in SAMPLE_LORAS.items():
        target = folder / f"{name}.safetensors"
        if target.is_file():
            continue
        # Only the layers' shapes matter, not the model's weights: built in memory, nothing loaded.
        pipe = (build_tiny_xl_pipeline if model == "tiny-xl" else build_tiny_pipeline)(False)
        staging = Path(tempfile.mkdtemp(prefix=".build-", dir=folder))  # written beside and renamed
        try:
            os.replace(write_lora(staging, name, pipe, seed=seed, kohya=kohya), target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return folder


# The sample ControlNets `make run` serves (services/launch.py passes their folder): name -> the embedded
# model whose UNet each is made from (ControlNetModel.from_unet: its encoder half, so its family).
SAMPLE_CONTROLNETS = {"tiny-controlnet": "tiny", "tiny-xl-controlnet": "tiny-xl"}
# ... and as a single file in the original ControlNet layout (controlnet_writer), the kind people download:
# name -> the embedded model it is for (build_tiny_controlnet(original=True)).
SAMPLE_CONTROLNET_FILES = {"tiny-controlnet-original": "tiny"}


def build_tiny_controlnet(model: str, seed: int = 0, original: bool = False):
    """A ControlNet of an embedded model's UNet whose zero convolutions (the control image's last
    embedding layer and the residual outputs) are drawn at random from `seed`: a fresh ControlNet adds
    zeros, so one that steers nothing would prove nothing in tests or in `make run`.

    original=True: its sizes, but what the original ControlNet layout fixes in place of the tiny UNet's
    own choices (controlnet_file.implied: 32 norm groups, SD's attention heads, SDXL's 256-wide time
    embedding), its weights drawn afresh: a ControlNet that a single file in that layout describes."""
    import torch
    from diffusers import ControlNetModel

    unet = (build_tiny_xl_pipeline if model == "tiny-xl" else build_tiny_pipeline)(False).unet
    # The control image is embedded down by 8 (three stride-2 layers), as the VAE's latents are.
    net = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8, 16, 32, 32))
    if original:
        from .controlnet_file import ORIGINAL, implied

        config = dict(net.config)
        if config.get("addition_embed_type") == "text_time":  # SDXL's six size numbers, each embedded wider
            pooled = config["projection_class_embeddings_input_dim"] - 6 * config["addition_time_embed_dim"]
            config["projection_class_embeddings_input_dim"] = 6 * ORIGINAL["sdxl_time_width"] + pooled
        torch.manual_seed(seed)
        net = ControlNetModel.from_config(implied(config))
    generator = torch.Generator().manual_seed(seed)
    zeroed = [net.controlnet_cond_embedding.conv_out, *net.controlnet_down_blocks, net.controlnet_mid_block]
    with torch.no_grad():
        for layer in zeroed:
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator) * 0.3)
            layer.bias.copy_(torch.randn(layer.bias.shape, generator=generator) * 0.05)
    return net


def ensure_sample_controlnets(cache_dir: Path) -> Path:
    """The folder of SAMPLE_CONTROLNETS (diffusers folders) and SAMPLE_CONTROLNET_FILES (.safetensors in
    the original layout), built into the cache once."""
    from .controlnet_writer import write_original

    folder = Path(cache_dir) / f"tiny-{TINY_VERSION}" / "controlnets"
    folder.mkdir(parents=True, exist_ok=True)
    for seed, (name, model) in enumerate(SAMPLE_CONTROLNET_FILES.items(), start=len(SAMPLE_CONTROLNETS)):
        target = folder / f"{name}.safetensors"
        if not target.is_file():
            staging = folder / f".{name}.{os.getpid()}.tmp.safetensors"  # written beside and renamed
            try:
                write_original(build_tiny_controlnet(model, seed, original=True), staging)
                os.replace(staging, target)
            finally:
                staging.unlink(missing_ok=True)
    for seed, (name, model) in enumerate(SAMPLE_CONTROLNETS.items()):
        target = folder / name
        if (target / "config.json").is_file():
            continue
        staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=folder))  # built beside, then renamed
        try:
            build_tiny_controlnet(model, seed).save_pretrained(staging)
            try:
                os.rename(staging, target)
            except OSError:
                if not (target / "config.json").is_file():
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return folder


# The embedded upscaler `make run` serves to the img2img service (Upscale) and the txt2img service (the hires
# fix's upscaler; services/launch.py passes its folder to both): an
# ESRGAN (spandrel's own RRDBNet) at toy size with seeded random weights, 2x, so its images are noise at
# twice the size, but it loads, tiles and reaches target sizes as a real one does.
TINY_ESRGAN = "tiny-esrgan-2x"
TINY_ESRGAN_SIZES = dict(num_filters=8, num_blocks=1, scale=2)


def ensure_tiny_upscalers(cache_dir: Path) -> Path:
    """The folder holding TINY_ESRGAN (`NAME.safetensors`), written into the cache once."""
    import torch
    from safetensors.torch import save_file

    from .spandrel_import import load_spandrel

    folder = Path(cache_dir) / f"tiny-{TINY_VERSION}" / "upscalers"
    target = folder / f"{TINY_ESRGAN}.safetensors"
    if target.is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    load_spandrel()
    from spandrel.architectures.ESRGAN import ESRGAN

    torch.manual_seed(0)
    model = ESRGAN(**TINY_ESRGAN_SIZES)
    staging = folder / f".{TINY_ESRGAN}.{os.getpid()}.tmp"  # written beside and renamed: never half a file
    save_file({key: value.contiguous() for key, value in model.state_dict().items()}, str(staging))
    os.replace(staging, target)
    return folder


def build_tiny_tokenizer():
    """A CLIP tokenizer over a small vocabulary: every byte-level symbol, alone and word-final.

    With no merges, any text tokenizes (one token per character), and save_pretrained writes
    the same files a real CLIP tokenizer has."""
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import CLIPTokenizer

    symbols = sorted(ByteLevel.alphabet())
    vocab = {s: i for i, s in enumerate(symbols + [s + "</w>" for s in symbols] + _SPECIAL)}
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)


# Component sizes. Only what differs from diffusers' and transformers' defaults is written down.
TINY = {
    "unet": dict(block_out_channels=(32, 64), layers_per_block=1, cross_attention_dim=32, attention_head_dim=8,
                 norm_num_groups=8, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                 up_block_types=("CrossAttnUpBlock2D", "UpBlock2D")),
    "vae": dict(block_out_channels=(8, 8, 16, 16), layers_per_block=1, norm_num_groups=8),
    "text": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4),
}
SD15 = {
    "unet": dict(block_out_channels=(320, 640, 1280, 1280), layers_per_block=2, cross_attention_dim=768,
                 attention_head_dim=8, norm_num_groups=32,
                 down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                 up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3),
    "vae": dict(block_out_channels=(128, 256, 512, 512), layers_per_block=2, norm_num_groups=32),
    "text": dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                 hidden_act="quick_gelu", vocab_size=49408),
}


def build_pipeline(sizes: dict, inpaint: bool):
    """A Stable Diffusion pipeline of the given sizes, seeded per component like diffusers' own tests."""
    import torch
    from diffusers import (
        AutoencoderKL,
        PNDMScheduler,
        StableDiffusionInpaintPipeline,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = build_tiny_tokenizer()
    torch.manual_seed(0)
    unet = UNet2DConditionModel(sample_size=64, in_channels=9 if inpaint else 4, out_channels=4, **sizes["unet"])
    torch.manual_seed(0)
    vae = AutoencoderKL(
        sample_size=512, in_channels=3, out_channels=3, latent_channels=4,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4, **sizes["vae"],
    )
    torch.manual_seed(0)
    text = {"vocab_size": len(tokenizer), **sizes["text"]}
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            max_position_embeddings=77,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            **text,
        )
    )
    # Stable Diffusion v1's own scheduler settings.
    scheduler = PNDMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        skip_prk_steps=True,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    cls = StableDiffusionInpaintPipeline if inpaint else StableDiffusionPipeline
    return cls(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def build_tiny_pipeline(inpaint: bool):
    return build_pipeline(TINY, inpaint)


# SDXL's layout at toy size: transformer depth per block, linear projections, and the text-time
# embedding (6 size numbers of addition_time_embed_dim each, plus the pooled text projection).
# The second text encoder is wider than the first, as in SDXL (1280 vs 768): diffusers' single-file
# loader tells the two apart in a checkpoint by their widths.
TINY_XL = {
    "unet": dict(block_out_channels=(32, 64), layers_per_block=2, cross_attention_dim=32 + 48, attention_head_dim=(2, 4),
                 norm_num_groups=8, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                 up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), use_linear_projection=True,
                 transformer_layers_per_block=(1, 2), addition_embed_type="text_time", addition_time_embed_dim=8,
                 projection_class_embeddings_input_dim=6 * 8 + 32),
    "text": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4),
    "text_2": dict(hidden_size=48, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4, projection_dim=32),
}


def build_tiny_xl_pipeline(inpaint: bool):
    """A toy SDXL pipeline (base, or inpainting with a 9-channel UNet), seeded per component."""
    import torch
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionXLInpaintPipeline,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    tokenizer = build_tiny_tokenizer()
    torch.manual_seed(0)
    unet = UNet2DConditionModel(sample_size=128, in_channels=9 if inpaint else 4, out_channels=4, **TINY_XL["unet"])
    torch.manual_seed(0)
    vae = AutoencoderKL(
        sample_size=1024, in_channels=3, out_channels=3, latent_channels=4, scaling_factor=0.13025,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4, **TINY["vae"],
    )
    def text_config(sizes):
        return CLIPTextConfig(
            max_position_embeddings=77, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id, vocab_size=len(tokenizer), **sizes,
        )

    torch.manual_seed(0)
    text_encoder = CLIPTextModel(text_config(TINY_XL["text"]))
    torch.manual_seed(1)
    text_encoder_2 = CLIPTextModelWithProjection(text_config(TINY_XL["text_2"]))
    # SDXL base's own scheduler settings.
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1,
        timestep_spacing="leading", interpolation_type="linear",
    )
    cls = StableDiffusionXLInpaintPipeline if inpaint else StableDiffusionXLPipeline
    return cls(vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2, tokenizer=tokenizer,
               tokenizer_2=build_tiny_tokenizer(), unet=unet, scheduler=scheduler, add_watermarker=False)


def build_sd15_pipeline(inpaint: bool, device: str, dtype):
    """SD 1.5 sizes, built straight on the device (random init there is fast), in dtype."""
    import torch

    with torch.device(device):
        pipe = build_pipeline(SD15, inpaint)
    return pipe.to(device=device, dtype=dtype)


# Presets built in memory on the device rather than saved and loaded (a GB of random weights is made
# faster than it is read), by --model name: (inpaint, device, dtype) -> pipeline.
BUILT_ON_DEVICE = {"sd15": build_sd15_pipeline}


def is_preset(name: str) -> bool:
    return name in EMBEDDED or name in BUILT_ON_DEVICE


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Build the embedded tiny model into the cache.")
    from services.core.config import default_cache_dir

    parser.add_argument("--cache-dir", type=Path, default=default_cache_dir(os.environ))
    args = parser.parse_args()
    for name in EMBEDDED:
        for inpaint in (False, True):
            print(ensure_tiny(args.cache_dir, inpaint, name))
    print(ensure_sample_embeddings(args.cache_dir))
    print(ensure_sample_loras(args.cache_dir))
    print(ensure_tiny_upscalers(args.cache_dir))
    print(ensure_sample_controlnets(args.cache_dir))
