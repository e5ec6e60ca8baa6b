"""Test fixture: a diffusers pipeline's weights written as one file in the original LDM/SGM layout.

That is the layout A1111 and Civitai distribute (`model.diffusion_model.*`, `first_stage_model.*`,
`cond_stage_model.*`, `conditioner.embedders.*`). Neither diffusers nor another maintained library ships
this direction as a function (diffusers has it as scripts, fixed to the real models' block counts), so
this is the inverse of diffusers' single-file conversion (loaders/single_file_utils.py), for any block
and layer count, so the toy models can be written too. For tests only: the services load such files
through diffusers' own loader.
"""

from __future__ import annotations

from pathlib import Path

UNET_RESNET = [("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("norm2", "out_layers.0"),
               ("conv2", "out_layers.3"), ("time_emb_proj", "emb_layers.1"), ("conv_shortcut", "skip_connection")]
UNET_FIXED = {"time_embedding.linear_1.": "time_embed.0.", "time_embedding.linear_2.": "time_embed.2.",
              "add_embedding.linear_1.": "label_emb.0.0.", "add_embedding.linear_2.": "label_emb.0.2.",
              "conv_in.": "input_blocks.0.0.", "conv_norm_out.": "out.0.", "conv_out.": "out.2.",
              "mid_block.resnets.0.": "middle_block.0.", "mid_block.attentions.0.": "middle_block.1.",
              "mid_block.resnets.1.": "middle_block.2."}
VAE_ATTENTION = [("group_norm", "norm"), ("to_q", "q"), ("to_k", "k"), ("to_v", "v"), ("to_out.0", "proj_out")]
OPEN_CLIP_LAYER = [("self_attn.out_proj", "attn.out_proj"), ("layer_norm1", "ln_1"), ("layer_norm2", "ln_2"),
                   ("mlp.fc1", "mlp.c_fc"), ("mlp.fc2", "mlp.c_proj")]


def _rename(key: str, pairs) -> str:
    for new, old in pairs:
        key = key.replace(new, old)
    return key


def unet_to_ldm(state: dict, config) -> dict:
    """Diffusers UNet2DConditionModel keys -> `model.diffusion_model.*`."""
    per_block = config["layers_per_block"]
    blocks = len(config["down_block_types"])
    renames = dict(UNET_FIXED)
    for b in range(blocks):
        for j in range(per_block):
            at = 1 + b * (per_block + 1) + j
            renames[f"down_blocks.{b}.resnets.{j}."] = f"input_blocks.{at}.0."
            renames[f"down_blocks.{b}.attentions.{j}."] = f"input_blocks.{at}.1."
        renames[f"down_blocks.{b}.downsamplers.0.conv."] = f"input_blocks.{(b + 1) * (per_block + 1)}.0.op."
        for j in range(per_block + 1):
            at = b * (per_block + 1) + j
            renames[f"up_blocks.{b}.resnets.{j}."] = f"output_blocks.{at}.0."
            renames[f"up_blocks.{b}.attentions.{j}."] = f"output_blocks.{at}.1."
        has_attention = any(key.startswith(f"up_blocks.{b}.attentions.") for key in state)
        last = b * (per_block + 1) + per_block
        renames[f"up_blocks.{b}.upsamplers.0."] = f"output_blocks.{last}.{2 if has_attention else 1}."
    out = {}
    for key, value in state.items():
        prefix = next(p for p in renames if key.startswith(p))  # every diffusers key has one
        new = renames[prefix] + key[len(prefix):]
        if ".resnets." in prefix:
            new = _rename(new, UNET_RESNET)
        out["model.diffusion_model." + new] = value
    return out


def vae_to_ldm(state: dict, config) -> dict:
    """Diffusers AutoencoderKL keys -> `first_stage_model.*` (mid attention as 1x1 convolutions)."""
    blocks = len(config["down_block_types"])
    out = {}
    for key, value in state.items():
        new = key
        for b in range(blocks):
            new = new.replace(f"encoder.down_blocks.{b}.resnets.", f"encoder.down.{b}.block.")
            new = new.replace(f"encoder.down_blocks.{b}.downsamplers.0.", f"encoder.down.{b}.downsample.")
            new = new.replace(f"decoder.up_blocks.{b}.resnets.", f"decoder.up.{blocks - 1 - b}.block.")
            new = new.replace(f"decoder.up_blocks.{b}.upsamplers.0.", f"decoder.up.{blocks - 1 - b}.upsample.")
        new = new.replace("mid_block.resnets.0.", "mid.block_1.").replace("mid_block.resnets.1.", "mid.block_2.")
        new = new.replace("conv_shortcut", "nin_shortcut")
        if "mid_block.attentions.0." in new:
            new = _rename(new.replace("mid_block.attentions.0.", "mid.attn_1."), VAE_ATTENTION)
            if value.ndim == 2:
                value = value[:, :, None, None]
        new = new.replace("coder.conv_norm_out.", "coder.norm_out.")
        out["first_stage_model." + new] = value
    return out


def clip_to_ldm(state: dict, prefix: str) -> dict:
    """transformers' CLIPTextModel keys -> `<prefix>text_model.*` (SD 1.x, SDXL's first encoder)."""
    return {prefix + "text_model." + key.removeprefix("text_model."): value for key, value in state.items()}


def open_clip_to_ldm(state: dict, prefix: str) -> dict:
    """transformers' CLIPTextModelWithProjection keys -> open_clip's layout under `prefix` (SDXL's second)."""
    import torch

    out = {}
    fused: dict[str, dict] = {}
    for key, value in state.items():
        key = key.removeprefix("text_model.")
        if key == "embeddings.position_embedding.weight":
            out[prefix + "positional_embedding"] = value
        elif key == "embeddings.token_embedding.weight":
            out[prefix + "token_embedding.weight"] = value
        elif key.startswith("final_layer_norm."):
            out[prefix + "ln_final." + key.split(".")[-1]] = value
        elif key == "text_projection.weight":
            out[prefix + "text_projection"] = value.T.contiguous()
        elif key.startswith("encoder.layers."):
            layer = key.split(".")[2]
            rest = key.split(".", 3)[3]
            if rest.startswith("self_attn.") and rest.split(".")[1] in ("q_proj", "k_proj", "v_proj"):
                fused.setdefault(f"{layer}.{rest.split('.')[-1]}", {})[rest.split(".")[1]] = value
            else:
                out[f"{prefix}transformer.resblocks.{layer}.{_rename(rest, OPEN_CLIP_LAYER)}"] = value
    for name, parts in fused.items():
        layer, kind = name.split(".")
        out[f"{prefix}transformer.resblocks.{layer}.attn.in_proj_{kind}"] = torch.cat(
            [parts["q_proj"], parts["k_proj"], parts["v_proj"]])
    return out


def to_ldm(pipe) -> dict:
    """The whole pipeline's weights in the original single-file layout."""
    state = {**unet_to_ldm(pipe.unet.state_dict(), pipe.unet.config),
             **vae_to_ldm(pipe.vae.state_dict(), pipe.vae.config)}
    if getattr(pipe, "text_encoder_2", None) is not None:
        state.update(clip_to_ldm(pipe.text_encoder.state_dict(), "conditioner.embedders.0.transformer."))
        state.update(open_clip_to_ldm(pipe.text_encoder_2.state_dict(), "conditioner.embedders.1.model."))
    else:
        state.update(clip_to_ldm(pipe.text_encoder.state_dict(), "cond_stage_model.transformer."))
    return {key: value.contiguous() for key, value in state.items() if not key.endswith("position_ids")}


def write_single_file(folder: Path, target: Path) -> Path:
    """Write the diffusers model in `folder` to `target` (.safetensors, or .ckpt as {"state_dict": ...})."""
    import torch
    from diffusers import DiffusionPipeline
    from safetensors.torch import save_file

    state = to_ldm(DiffusionPipeline.from_pretrained(folder))
    if target.suffix == ".safetensors":
        save_file(state, str(target))
    else:
        torch.save({"state_dict": state, "global_step": 1}, target)
    return target
