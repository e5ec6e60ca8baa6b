"""Small random textual-inversion embeddings for the embedded tiny models, in the formats people have:
A1111's `.pt` (what its Train tab writes: `string_to_param`, `step`, the checkpoint's hash and name),
A1111's `.safetensors` (`emb_params`), and SDXL's (`clip_l` + `clip_g`)."""

from __future__ import annotations

from pathlib import Path

TINY_WIDTH = 32  # the tiny model's text encoder width (presets.TINY["text"]["hidden_size"])
TINY_XL_WIDTHS = (32, 48)  # tiny-xl's two text encoders


def vectors(count: int, width: int, seed: int):
    """Random vectors at the scale of the tiny text encoder's own token embeddings (diffusers' init)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    return torch.randn(count, width, generator=generator) * 0.5


def write_pt(folder: Path, name: str, count: int = 1, seed: int = 0, width: int = TINY_WIDTH) -> Path:
    """A1111's own .pt, as its textual_inversion.Embedding.save writes it."""
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.pt"
    torch.save({"string_to_token": {"*": 265}, "string_to_param": {"*": vectors(count, width, seed)},
                "name": name, "step": 1500, "sd_checkpoint": "0123456789", "sd_checkpoint_name": "tiny"},
               path)
    return path


def write_safetensors(folder: Path, name: str, count: int = 1, seed: int = 0,
                      width: int = TINY_WIDTH) -> Path:
    """A1111's .safetensors: one tensor, `emb_params`."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.safetensors"
    save_file({"emb_params": vectors(count, width, seed)}, str(path))
    return path


def write_sdxl(folder: Path, name: str, count: int = 1, seed: int = 0, widths=TINY_XL_WIDTHS) -> Path:
    """An SDXL embedding: the first text encoder's vectors (`clip_l`) and the second's (`clip_g`)."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.safetensors"
    save_file({"clip_l": vectors(count, widths[0], seed), "clip_g": vectors(count, widths[1], seed + 1)},
              str(path))
    return path
