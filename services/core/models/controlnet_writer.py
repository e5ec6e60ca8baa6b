"""ControlNets written as single files in the original ControlNet layout, as lllyasviel and civitai
distribute them (`control_model.input_blocks.0.0.weight`, `input_hint_block.*`, `zero_convs.*`,
`middle_block_out.*`, SDXL's `label_emb.*`): for the embedded samples and tests of controlnet_file.

`original_state` is the inverse of diffusers' convert_controlnet_checkpoint (and of the label_emb mapping
controlnet_file adds to it), key by key, for a diffusers ControlNetModel of any size.
"""

from __future__ import annotations

import re
from pathlib import Path

from .controlnet_file import PREFIX

# diffusers' resnet parts -> the original's (update_unet_resnet_ldm_to_diffusers, reversed).
_RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1",
           "norm2": "out_layers.0", "conv2": "out_layers.3", "conv_shortcut": "skip_connection"}
_FIXED = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
          "add_embedding.linear_1": "label_emb.0.0", "add_embedding.linear_2": "label_emb.0.2",
          "conv_in": "input_blocks.0.0", "controlnet_cond_embedding.conv_in": "input_hint_block.0",
          "controlnet_mid_block": "middle_block_out.0"}


def _resnet(rest: str) -> str:
    part, _, tail = rest.partition(".")
    return f"{_RESNET[part]}.{tail}"


def original_key(key: str, layers_per_block: int, embedding_steps: int) -> str:
    """The original layout's name of a diffusers ControlNet key."""
    module, _, part = key.rpartition(".")
    if module in _FIXED:
        return f"{_FIXED[module]}.{part}"
    if module == "controlnet_cond_embedding.conv_out":  # after conv_in and each step's convs, SiLUs between
        return f"input_hint_block.{2 * (embedding_steps + 1)}.{part}"
    if m := re.fullmatch(r"controlnet_cond_embedding\.blocks\.(\d+)", module):
        return f"input_hint_block.{2 * (int(m.group(1)) + 1)}.{part}"
    if m := re.fullmatch(r"controlnet_down_blocks\.(\d+)", module):
        return f"zero_convs.{m.group(1)}.0.{part}"
    if m := re.match(r"down_blocks\.(\d+)\.(resnets|attentions|downsamplers)\.(\d+)\.(.*)", key):
        level, kind, index, rest = int(m.group(1)), m.group(2), int(m.group(3)), m.group(4)
        first = 1 + level * (layers_per_block + 1)  # input block 0 is conv_in; a downsampler ends each level
        if kind == "downsamplers":
            return f"input_blocks.{first + layers_per_block}.0.op.{rest.removeprefix('conv.')}"
        if kind == "resnets":
            return f"input_blocks.{first + index}.0.{_resnet(rest)}"
        return f"input_blocks.{first + index}.1.{rest}"
    if m := re.match(r"mid_block\.(resnets|attentions)\.(\d+)\.(.*)", key):
        kind, index, rest = m.groups()
        if kind == "attentions":
            return f"middle_block.1.{rest}"
        return f"middle_block.{2 * int(index)}.{_resnet(rest)}"
    raise ValueError(f"no original-layout name for {key}")


def original_state(net, prefix: bool = True) -> dict:
    """`net`'s (a diffusers ControlNetModel) tensors under their original-layout names, with the
    `control_model.` prefix of a ControlLDM checkpoint or without it."""
    state = net.state_dict()
    steps = len(net.controlnet_cond_embedding.blocks)
    lead = PREFIX if prefix else ""
    return {lead + original_key(key, net.config.layers_per_block, steps): value.contiguous()
            for key, value in state.items()}


def write_original(net, path: Path, prefix: bool = True) -> Path:
    """Write `net` to `path` in the original layout: `.safetensors`, or a `.pth` of plain tensors."""
    path = Path(path)
    state = original_state(net, prefix)
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path))
    else:
        import torch

        torch.save(state, str(path))
    return path
