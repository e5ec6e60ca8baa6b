"""LoRA files written as the tools people use write them, for the embedded tiny models' samples and tests.

`write_lora` makes one with peft (LoRA layers on the UNet's attention projections and the text
encoder's, random non-zero weights so it changes the image) and saves it in diffusers' format
(`StableDiffusionPipeline.save_lora_weights`), or in kohya's (what A1111 users download:
`lora_unet_..._to_q.lora_down.weight`, `.lora_up.weight`, `.alpha`) with the very same weights. SDXL
pipelines are saved in diffusers' format, both text encoders included.
"""

from __future__ import annotations

import copy
from pathlib import Path

RANK = 4
UNET_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
TEXT_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]


def _layers(module, targets: list[str], seed: int) -> dict:
    """peft's LoRA state dict of a copy of `module` with random LoRA layers on `targets`."""
    import torch
    from peft import LoraConfig, inject_adapter_in_model
    from peft.utils import get_peft_model_state_dict

    torch.manual_seed(seed)
    # init_lora_weights=False: both matrices random (the default zero B would leave the model as it is).
    config = LoraConfig(r=RANK, lora_alpha=RANK, init_lora_weights=False, target_modules=targets)
    adapted = inject_adapter_in_model(config, copy.deepcopy(module))
    return get_peft_model_state_dict(adapted)


def _kohya(layers: dict, prefix: str) -> dict:
    """peft keys (`down_blocks.1.attentions.0....to_q.lora_A.weight`) as kohya's, with each module's alpha."""
    import torch

    out = {}
    for key, value in layers.items():
        module, _, part = key.rpartition(".lora_")
        name = prefix + module.replace(".", "_")
        out[f"{name}.{'lora_down' if part.startswith('A') else 'lora_up'}.weight"] = value.contiguous()
        out[f"{name}.alpha"] = torch.tensor(float(RANK))
    return out


def write_lora(folder: Path, name: str, pipe, seed: int = 0, kohya: bool = False,
               text_encoder: bool = True) -> Path:
    """Write LoRA `name` for `pipe`'s model into `folder` as `name.safetensors`; returns the file."""
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    unet = _layers(pipe.unet, UNET_TARGETS, seed)
    text = _layers(pipe.text_encoder, TEXT_TARGETS, seed + 1000) if text_encoder else None
    path = folder / f"{name}.safetensors"
    encoder_2 = getattr(pipe, "text_encoder_2", None)
    if encoder_2 is not None:  # SDXL: both text encoders, in diffusers' format
        from diffusers import StableDiffusionXLPipeline

        text_2 = _layers(encoder_2, TEXT_TARGETS, seed + 2000) if text_encoder else None
        StableDiffusionXLPipeline.save_lora_weights(
            folder, unet_lora_layers=convert_state_dict_to_diffusers(unet),
            text_encoder_lora_layers=convert_state_dict_to_diffusers(text) if text is not None else None,
            text_encoder_2_lora_layers=convert_state_dict_to_diffusers(text_2) if text_2 is not None else None,
            weight_name=path.name)
        return path
    if kohya:
        state = _kohya(unet, "lora_unet_")
        if text is not None:
            # transformers 5's CLIPTextModel has no `text_model.` level; A1111's files name it.
            state.update(_kohya({k.removeprefix("text_model."): v for k, v in text.items()}, "lora_te_text_model_"))
        save_file(state, str(path))
        return path
    StableDiffusionPipeline.save_lora_weights(
        folder, unet_lora_layers=convert_state_dict_to_diffusers(unet),
        text_encoder_lora_layers=convert_state_dict_to_diffusers(text) if text is not None else None,
        weight_name=path.name)
    return path
