"""Upscaler model files for tests: the embedded tiny ESRGAN's folder, and copies of it in other forms."""

from __future__ import annotations

import shutil
from pathlib import Path

from services.core.models.presets import TINY_ESRGAN, ensure_tiny_upscalers
from tests.conftest import CACHE_DIR


def tiny_esrgan() -> Path:
    """The embedded tiny ESRGAN's .safetensors file (built into the test cache once)."""
    return ensure_tiny_upscalers(CACHE_DIR) / f"{TINY_ESRGAN}.safetensors"


class RunsCode:
    """Unpickling this creates `marker`: a stand-in for a file that runs code when loaded by plain pickle."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def upscaler_folder(folder: Path) -> Path:
    """A folder with the tiny ESRGAN as .safetensors, the same weights as a plain .pth, a .pth whose
    unpickling would run code, a file that is no model, and one that is not an upscaler file at all."""
    import torch
    from safetensors.torch import load_file

    shutil.copy(tiny_esrgan(), folder / "esrgan.safetensors")
    torch.save(load_file(tiny_esrgan()), folder / "esrgan-pth.pth")
    torch.save({"model.0.weight": torch.zeros(1), "payload": RunsCode(folder / "ran")}, folder / "evil.pth")
    torch.save({"weight": torch.zeros(3, 3)}, folder / "not-a-model.pth")
    (folder / "notes.txt").write_text("not an upscaler")
    return folder
