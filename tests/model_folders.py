"""Folders of tiny checkpoints that differ, for --models-dir: the model pool's tests and `make bench`.

Each model is a copy of the embedded tiny folder whose UNet weights carry seeded noise, so every one
makes its own images while loading through the same from_pretrained path as the tiny model.
"""

from __future__ import annotations

import shutil
from pathlib import Path


def reseeded(base, target, seed: int) -> Path:
    """A copy of the tiny folder `base` whose UNet weights differ by seeded noise: another checkpoint."""
    import torch
    from safetensors.torch import load_file, save_file

    folder = Path(shutil.copytree(base, target))
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    tensors = load_file(weights)
    generator = torch.Generator().manual_seed(seed)
    save_file({key: (t + 0.05 * torch.randn(t.shape, generator=generator, dtype=t.dtype)
                     if t.is_floating_point() else t) for key, t in tensors.items()}, weights)
    return folder


def tiny_models_folder(root, base, names=("alpha", "beta")) -> Path:
    """`root` holding one reseeded copy of `base` per name (seeds 1, 2, ...)."""
    root = Path(root)
    for seed, name in enumerate(names, start=1):
        reseeded(base, root / name, seed)
    return root
