"""`spandrel`, importable with or without torchvision.

spandrel's package imports every architecture it knows, and two of them (LaMa, RestoreFormer) import
torchvision at module level - for a rotation and a normalisation they only use when run. torchvision is
not installable beside a CPU torch here (PyPI's builds pin another torch, or fail to load against this
one), and spandrel is installed with --no-deps for that reason (requirements-nodeps.txt). Where
torchvision cannot be imported, a placeholder stands in, while spandrel is imported, for exactly the names
those two import (torchvision.transforms.functional: InterpolationMode, rotate, normalize); calling one
raises, so a LaMa or RestoreFormer file fails loudly when run, and every other architecture (ESRGAN's
family among them) works as usual. Where torchvision imports (the CUDA PyTorch images) nothing is replaced.
"""

from __future__ import annotations

import enum
import logging
import sys
import threading
import types

log = logging.getLogger(__name__)

# The architectures that need the real torchvision, for the warning.
NEEDS_TORCHVISION = ("LaMa", "RestoreFormer")


class TorchvisionMissing(RuntimeError):
    """A spandrel architecture called a torchvision function the placeholder stands in for."""


def _missing(name: str):
    def call(*_args, **_kwargs):
        raise TorchvisionMissing(f"torchvision.transforms.functional.{name} needs torchvision, which is not "
                                 f"installed: the {' and '.join(NEEDS_TORCHVISION)} architectures cannot run")

    call.__name__ = name
    return call


class _InterpolationMode(enum.Enum):
    # The members LaMa names at import and use; their values are torchvision's.
    NEAREST = "nearest"
    BILINEAR = "bilinear"
    BICUBIC = "bicubic"


def _placeholder() -> dict[str, types.ModuleType]:
    """The torchvision modules the two architectures import from, holding only what they import."""
    functional = types.ModuleType("torchvision.transforms.functional")
    functional.InterpolationMode = _InterpolationMode
    functional.rotate = _missing("rotate")
    functional.normalize = _missing("normalize")
    transforms = types.ModuleType("torchvision.transforms")
    transforms.functional = functional
    root = types.ModuleType("torchvision")
    root.transforms = transforms
    root.__path__ = []  # a package, so `import torchvision.transforms.functional` resolves to these
    return {"torchvision": root, "torchvision.transforms": transforms,
            "torchvision.transforms.functional": functional}


_lock = threading.Lock()  # one import at a time: a second thread would see a half-initialised spandrel
_loaded: list = []  # the spandrel package, once imported here


def load_spandrel():
    """The spandrel package, its torchvision stand-in registered first where torchvision is missing."""
    with _lock:
        if not _loaded:
            _loaded.append(_import())
        return _loaded[0]


def _import():
    try:
        import torchvision  # noqa: F401 - where it imports, spandrel gets the real one
    except Exception as exc:  # noqa: BLE001 - missing, or built for another torch (its operators fail to load)
        missing = f"{type(exc).__name__}: {str(exc)[:120]}"
    else:
        import spandrel

        return spandrel
    placeholder = _placeholder()
    sys.modules.update(placeholder)
    try:
        import spandrel
    finally:
        # Only for spandrel's own imports (their names are bound by now): left in sys.modules, the stand-in
        # would tell other libraries (transformers, diffusers look for torchvision) that it is installed.
        for name in placeholder:
            if sys.modules.get(name) is placeholder[name]:
                del sys.modules[name]
    log.warning("torchvision cannot be imported (%s): the %s upscaler architectures are unavailable (every "
                "other one, ESRGAN's family among them, works)", missing, " and ".join(NEEDS_TORCHVISION))
    return spandrel
