"""spandrel imports without torchvision: its two torchvision architectures get a stand-in that raises when
run, nothing else sees a torchvision, and ESRGAN loads. Run in a fresh interpreter (imports are global)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[4]

PROBE = """
import logging, sys
logging.basicConfig(level=logging.WARNING, format="%(name)s %(message)s")
import threading
from services.core.models.spandrel_import import TorchvisionMissing, load_spandrel
got = []
threads = [threading.Thread(target=lambda: got.append(load_spandrel())) for _ in range(4)]
for t in threads: t.start()
for t in threads: t.join()
spandrel = got[0]
assert all(g is spandrel and hasattr(g, "ModelLoader") for g in got)  # at once, never half imported
assert load_spandrel() is spandrel
assert not any(name.split(".")[0] == "torchvision" for name in sys.modules), "the stand-in stayed"
import importlib.util
assert importlib.util.find_spec("torchvision") is None  # what transformers and diffusers ask
from spandrel.architectures.LaMa.__arch import LaMa
try:
    LaMa.rotate(None, None, LaMa.InterpolationMode.BILINEAR)
except TorchvisionMissing as exc:
    print("raised:", exc)
from spandrel.architectures.ESRGAN import ESRGAN
print("loaded:", spandrel.ModelLoader().load_from_state_dict(ESRGAN(num_filters=8, num_blocks=1).state_dict()).scale)
"""


def torchvision_imports() -> bool:
    try:
        import torchvision  # noqa: F401
    except Exception:  # noqa: BLE001 - missing, or broken against this torch: both get the stand-in
        return False
    return True


@pytest.mark.skipif(torchvision_imports(), reason="torchvision imports here: spandrel gets the real one")
def test_spandrel_imports_without_torchvision_and_esrgan_loads():
    run = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "raised: torchvision.transforms.functional.rotate needs torchvision" in run.stdout
    assert "loaded: 4" in run.stdout
    warnings = [line for line in run.stderr.splitlines() if "spandrel_import" in line]
    assert len(warnings) == 1 and "LaMa and RestoreFormer upscaler architectures are unavailable" in warnings[0]
