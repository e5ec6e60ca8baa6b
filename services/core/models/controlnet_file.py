"""Single-file ControlNets loaded offline: the diffusers config is derived from the file's tensors.

People download ControlNets as one file (`control_v11p_sd15_canny.pth`, civitai's `.safetensors`), mostly in
the original ControlNet layout (`control_model.input_blocks.0.0.weight`, `input_hint_block.*`, `zero_convs.*`,
`middle_block_out.*`; the `control_model.` prefix is sometimes stripped), some in diffusers' layout.
diffusers' `ControlNetModel.from_single_file` wants the config from the hub; here every size is read
from the tensors' shapes, and what shapes cannot tell (attention heads, norm groups, SDXL's time
embedding width) is what the original architecture fixes (`ORIGINAL`, `implied`): the values of
lllyasviel's cldm_v15 / cldm_v21 configs and of SDXL, as diffusers'
create_controlnet_diffusers_config_from_ldm turns them into a diffusers config.

The original layout is converted with diffusers' own `convert_controlnet_checkpoint`; it leaves out SDXL's
`label_emb` (diffusers expects SDXL single files in its own layout), which is mapped here. The model is
then loaded strictly: a file whose tensors do not make a whole ControlNet is refused, never half random.
A `.pth`/`.ckpt` is read as plain tensors only (single_file.read_tensors), never running its code.
"""

from __future__ import annotations

import re
from pathlib import Path

from . import single_file

PREFIX = "control_model."  # the original layout's keys inside a full ControlLDM checkpoint
# What the original architecture fixes and no tensor shape records.
ORIGINAL = {
    "norm_groups": 32,  # ldm's normalization(): GroupNorm(32, ...) everywhere
    "sd1_heads": 8,  # cldm_v15: num_heads 8 (conv proj_in)
    "head_width": 64,  # cldm_v21 and SDXL: num_head_channels 64 (linear proj_in)
    "sdxl_time_width": 256,  # SDXL's size/crop conditioning: each number embedded 256 wide
}
# SDXL's label_emb, which diffusers' conversion leaves out (diffusers name -> original name).
_LABEL_EMB = {"add_embedding.linear_1": "label_emb.0.0", "add_embedding.linear_2": "label_emb.0.2"}


class ControlNetFileError(ValueError):
    """The file is no ControlNet this loader can build; the message says why, on one line."""


def load(path: Path, dtype):
    """The ControlNetModel of the single file at `path`, in `dtype`. Raises ControlNetFileError or
    single_file.CheckpointError."""
    import torch
    from diffusers import ControlNetModel

    state = to_diffusers(single_file.read_tensors(path))
    config = config_of({key: tuple(value.shape) for key, value in state.items()})
    state = {key: value.to(dtype) for key, value in state.items()}  # assigned as they are, below
    with torch.device("meta"):  # no random init of weights that are replaced at once
        net = ControlNetModel.from_config(config)
    try:
        net.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as exc:
        missing = re.findall(r'"([^"]+)"', str(exc))[:3]
        raise ControlNetFileError(f"its tensors do not fit the ControlNet their shapes describe "
                                  f"(e.g. {', '.join(missing) or exc})") from exc
    return net


def is_original(keys) -> bool:
    return any(key.startswith(("input_hint_block.", PREFIX + "input_hint_block.")) for key in keys)


def to_diffusers(state: dict) -> dict:
    """The file's tensors in diffusers' layout (a file in diffusers' layout as it is)."""
    from diffusers.loaders.single_file_utils import convert_controlnet_checkpoint

    if "difference" in state:
        raise ControlNetFileError("a 'difference' ControlNet (weights relative to a model) is not supported")
    if not is_original(state):
        if "controlnet_cond_embedding.conv_in.weight" not in state:
            raise ControlNetFileError(
                "no ControlNet tensors in it (no input_hint_block / controlnet_cond_embedding)")
        return state
    if any(key.startswith(PREFIX) for key in state):
        state = {key[len(PREFIX):]: value for key, value in state.items() if key.startswith(PREFIX)}
    converted = convert_controlnet_checkpoint(state, {"layers_per_block": _layers_per_block(state)})
    for new, old in _LABEL_EMB.items():
        for part in ("weight", "bias"):
            if f"{old}.{part}" in state:
                converted[f"{new}.{part}"] = state[f"{old}.{part}"]
    return {key: value for key, value in converted.items() if value is not None}


def _layers_per_block(state: dict) -> int:
    """The original layout's resnets per level: input block 0 is conv_in, then each level's resnets and,
    but for the last level, a downsampler (`input_blocks.N.0.op`)."""
    blocks = {int(key.split(".")[1]) for key in state if key.startswith("input_blocks.")}
    downs = {int(key.split(".")[1]) for key in state if re.match(r"input_blocks\.\d+\.0\.op\.", key)}
    if not blocks or min(blocks) != 0:
        raise ControlNetFileError("no input_blocks.0 (the ControlNet's conv_in) in it")
    resnets = max(blocks) - len(downs)
    levels = len(downs) + 1
    if resnets <= 0 or resnets % levels:
        raise ControlNetFileError(f"its {max(blocks)} input blocks do not make {levels} equal levels")
    return resnets // levels


def config_of(shapes: dict[str, tuple]) -> dict:
    """A diffusers ControlNetModel config from the shapes of its tensors in diffusers' layout."""
    def shape(key: str) -> tuple:
        if key not in shapes:
            raise ControlNetFileError(f"cannot derive its ControlNet config: no {key}")
        return shapes[key]

    levels = 1 + max((int(m.group(1)) for key in shapes if (m := re.match(r"down_blocks\.(\d+)\.", key))),
                     default=-1)
    if levels == 0:
        raise ControlNetFileError("cannot derive its ControlNet config: no down blocks")
    layers = len({key.split(".")[3] for key in shapes if key.startswith("down_blocks.0.resnets.")})
    widths = [shape(f"down_blocks.{level}.resnets.0.conv1.weight")[0] for level in range(levels)]
    depths = [_depth(shapes, f"down_blocks.{level}.attentions.0.") for level in range(levels)]
    # The control image's embedding: conv_in, then per step a conv at its width and a stride-2 one on.
    steps = len([key for key in shapes if re.match(r"controlnet_cond_embedding\.blocks\.\d+\.weight$", key)])
    embedding = [shape("controlnet_cond_embedding.conv_in.weight")[0]] + [
        shape(f"controlnet_cond_embedding.blocks.{index}.weight")[0] for index in range(1, steps, 2)]
    keys_width = {s[1] for key, s in shapes.items() if key.endswith("attn2.to_k.weight")}
    proj_in = [s for key, s in shapes.items() if key.endswith("proj_in.weight")]
    text_time = "add_embedding.linear_1.weight" in shapes
    mid_depth = _depth(shapes, "mid_block.attentions.0.")
    if mid_depth and depths[-1] and mid_depth != depths[-1]:  # diffusers gives both the one last depth
        raise ControlNetFileError(f"its middle block has {mid_depth} transformer layers and its last level "
                                  f"{depths[-1]}: diffusers cannot build that")
    if len(keys_width) > 1:
        raise ControlNetFileError(f"its cross-attentions attend to texts of widths {sorted(keys_width)}")
    config = {
        "_class_name": "ControlNetModel",
        "in_channels": shape("conv_in.weight")[1],
        "conditioning_channels": shape("controlnet_cond_embedding.conv_in.weight")[1],
        "conditioning_embedding_out_channels": embedding,
        "block_out_channels": widths,
        "layers_per_block": layers,
        "down_block_types": ["CrossAttnDownBlock2D" if d else "DownBlock2D" for d in depths],
        "transformer_layers_per_block": [d or 1 for d in depths[:-1]] + [mid_depth or depths[-1] or 1],
        "mid_block_type": "UNetMidBlock2DCrossAttn" if mid_depth else "UNetMidBlock2D",
        "cross_attention_dim": next(iter(keys_width), None),
        "use_linear_projection": bool(proj_in) and len(proj_in[0]) == 2,
        "global_pool_conditions": False,
    }
    if text_time:
        config.update(addition_embed_type="text_time",
                      projection_class_embeddings_input_dim=shape("add_embedding.linear_1.weight")[1])
    if config["cross_attention_dim"] is None:  # no attention at all (SDXL's "small"): any width serves
        config["cross_attention_dim"] = 2048 if text_time else 768
    return implied(config)


def implied(config: dict) -> dict:
    """`config` with what the original architecture fixes (ORIGINAL): 32 norm groups; SD 1.x's 8 heads,
    or heads 64 wide where proj_in is linear (SD 2.x, SDXL); SDXL's 256-wide time embedding."""
    config = dict(config, norm_num_groups=ORIGINAL["norm_groups"])
    if config.get("use_linear_projection"):
        config["attention_head_dim"] = [max(1, width // ORIGINAL["head_width"])
                                        for width in config["block_out_channels"]]
    else:
        config["attention_head_dim"] = ORIGINAL["sd1_heads"]
    if config.get("addition_embed_type") == "text_time":
        config["addition_time_embed_dim"] = ORIGINAL["sdxl_time_width"]
    return config


def _depth(shapes: dict, prefix: str) -> int:
    """Transformer layers of the attention at `prefix` (0: none)."""
    inner = prefix + "transformer_blocks."
    return len({key[len(inner):].split(".")[0] for key in shapes if key.startswith(inner)})
