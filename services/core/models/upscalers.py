"""Upscalers by name: AUTOMATIC1111's three that are not models, and the models of --upscaler-dir.

"None", "Lanczos" and "Nearest" are A1111's resizers (modules/upscaler.py). Every `NAME.pth` and
`NAME.safetensors` directly in `--upscaler-dir` is the model upscaler `NAME` (ESRGAN's family, or any
image-to-image model spandrel recognises), loaded safely: a .pth through torch.load(weights_only=True),
which refuses any pickled object but tensors and plain containers (a file whose unpickling would run code
fails to load, and never runs it), a .safetensors through safetensors. A request names an upscaler by
name only; `Upscalers.available` is the one list the checks, GetInfo and loading go by.

`Upscalers.upscale(image, name, (width, height))` is the one way to an upscaled image, for the Upscale
RPC and for anything else that needs one (a hires fix's image upscaler): a model runs over tiles
(imaging/tiles.py) as many passes of its own factor as reach the target (at most 3, as A1111), then the
result is resized to exactly the target with Lanczos. Loaded models are kept in a small cache, least
recently used out first.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from imagegen.v1.contract import RESIZERS as RESIZER_NAMES

from ..imaging import tiles

log = logging.getLogger(__name__)

SUFFIXES = (".safetensors", ".pth")  # the first wins when a folder has both for one name
CACHE_SIZE = 2  # models kept loaded (an ESRGAN 4x is about 64 MB)
MAX_PASSES = 3  # A1111's Upscaler.upscale: model passes until the target is reached, at most this many
# A1111's resizers (the contract names them) and their filters; "None" resizes only in the last step.
RESIZERS = dict(zip(RESIZER_NAMES, (None, Image.LANCZOS, Image.NEAREST)))


class UpscalerUnusable(ValueError):
    """A model file that cannot be an upscaler: unreadable, unsafe, or not an image model spandrel knows."""


@dataclass(frozen=True)
class Facts:
    """What GetInfo says about one upscaler, read from its file once per version of the file."""

    name: str
    scale: int = 0  # the model's own factor; 0 for the resizers
    architecture: str = ""
    file: str = ""
    unusable: str = ""


def available(folder: Path | None) -> dict[str, Path]:
    """name -> file of every model upscaler in the folder (none without one, or when it cannot be read).
    A file named like a resizer is left out: the name means the resizer."""
    if folder is None:
        return {}
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        return {}
    found: dict[str, Path] = {}
    for suffix in SUFFIXES:
        for entry in entries:
            name = entry.name[: -len(suffix)]
            if (entry.name.endswith(suffix) and name and not name.startswith(".") and name not in found
                    and name not in RESIZERS and entry.is_file()):
                found[name] = Path(entry.path)
    return found


def read_state_dict(path: Path) -> dict:
    """The tensors of a model file, without running any code it might carry."""
    import torch

    if path.suffix == ".safetensors":
        from safetensors.torch import load

        return load(path.read_bytes())  # read whole: a file rewritten under a loaded model changes nothing
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch's UnpicklingError and anything a bad file raises
        text = str(exc).split("\n")[0][:200]
        raise UpscalerUnusable(f"not a plain weights file (only tensors are loaded; {type(exc).__name__}: "
                               f"{text})") from None
    if not isinstance(state, dict):
        raise UpscalerUnusable(f"holds a {type(state).__name__}, not a dict of weights")
    return state


def load_descriptor(path: Path, device: str = "cpu"):
    """spandrel's descriptor of the model in `path`, on `device`, in eval mode. UpscalerUnusable when it
    is not an RGB image-to-image model spandrel knows."""
    from .spandrel_import import load_spandrel

    spandrel = load_spandrel()
    state = spandrel.canonicalize_state_dict(read_state_dict(path))
    try:
        descriptor = spandrel.ModelLoader("cpu").load_from_state_dict(state)
    except spandrel.UnsupportedModelError:
        raise UpscalerUnusable("not a model architecture spandrel knows") from None
    except Exception as exc:  # noqa: BLE001 - weights that do not fit the architecture they look like
        raise UpscalerUnusable(f"its weights do not load ({type(exc).__name__}: {str(exc)[:200]})") from None
    if not isinstance(descriptor, spandrel.ImageModelDescriptor):
        raise UpscalerUnusable(f"{descriptor.architecture.name} is not an image-to-image model (it needs a mask)")
    if descriptor.input_channels != 3 or descriptor.output_channels != 3:
        raise UpscalerUnusable(f"{descriptor.architecture.name} takes {descriptor.input_channels} channels, not RGB")
    return descriptor.to(device).eval()


def to_tensor(img: Image.Image, device, dtype):
    """An RGB image as the (1, 3, H, W) tensor in 0..1 that spandrel's models take."""
    import torch

    array = np.asarray(img.convert("RGB"), dtype=np.float32) / 255
    return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0).to(device=device, dtype=dtype)


def to_image(tensor) -> Image.Image:
    """A (1, 3, H, W) tensor in 0..1 as an RGB image, rounded to the nearest 8-bit value."""
    array = tensor[0].float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()
    return Image.fromarray((array * 255).round().astype(np.uint8), "RGB")


def model_pass(descriptor, img: Image.Image) -> Image.Image:
    """One untiled run of the model on an image: what spandrel's descriptor gives, as an image."""
    import torch

    param = next(descriptor.model.parameters())
    with torch.inference_mode():
        return to_image(descriptor(to_tensor(img, param.device, param.dtype)))


def resize(img: Image.Image, size: tuple[int, int], name: str) -> Image.Image:
    """A resizer's answer. "None" does nothing itself, so A1111's last step alone (a Lanczos resize to the
    target) makes its size."""
    resample = RESIZERS[name]
    return img if img.size == size else img.resize(size, resample=Image.LANCZOS if resample is None else resample)


class Upscalers:
    """The upscalers of one folder, with a bounded cache of loaded models; thread-safe."""

    def __init__(self, folder: Path | None, device: str = "cpu", capacity: int = CACHE_SIZE,
                 tile: int = tiles.TILE, overlap: int = tiles.OVERLAP):
        self.folder, self.device, self.capacity = folder, device, capacity
        self.tile, self.overlap = tile, overlap
        self._loaded: OrderedDict[tuple, object] = OrderedDict()  # (path, stamp, device) -> descriptor, LRU first
        self._facts: dict[tuple, Facts] = {}  # (path, stamp) -> what the file is
        self._lock = threading.Lock()

    def available(self) -> dict[str, Path]:
        return available(self.folder)

    def names(self) -> list[str]:
        return [*RESIZERS, *self.available()]

    def infos(self) -> list[Facts]:
        """Every upscaler, the resizers first; a model file is read once per version to learn its facts."""
        return [Facts(name) for name in RESIZERS] + [self.facts(name, path)
                                                      for name, path in self.available().items()]

    def read_in_background(self) -> threading.Thread:
        """Learn every model file's facts off the request path (a service does it while warming up), so
        GetInfo does not wait on reading a folder of models."""
        thread = threading.Thread(target=self.infos, name="upscalers-scan", daemon=True)
        thread.start()
        return thread

    def facts(self, name: str, path: Path) -> Facts:
        key = _key(path)
        with self._lock:
            known = self._facts.get(key)
        if known is not None:
            return known
        try:
            descriptor = load_descriptor(path)  # on the CPU, and let go: a scan never fills the device's cache
            found = Facts(name, descriptor.scale, descriptor.architecture.name, path.name)
        except (UpscalerUnusable, OSError) as exc:
            found = Facts(name, file=path.name, unusable=str(exc) if isinstance(exc, UpscalerUnusable)
                          else "the file cannot be read")
        with self._lock:
            self._facts[key] = found
        return found

    def model(self, name: str):
        """The loaded descriptor of model upscaler `name` (KeyError when the folder has none so named)."""
        return self._descriptor(name, self.available()[name])

    def _descriptor(self, name: str, path: Path):
        device = self.device
        key = (*_key(path), device)  # a model read before the service knew its device is read again there
        with self._lock:
            if key in self._loaded:
                self._loaded.move_to_end(key)
                return self._loaded[key]
        descriptor = load_descriptor(path, device)
        log.info("upscaler %s loaded (%s, %dx)", name, descriptor.architecture.name, descriptor.scale)
        with self._lock:
            self._loaded[key] = descriptor
            while len(self._loaded) > self.capacity:
                self._loaded.popitem(last=False)
        return descriptor

    def upscale(self, img: Image.Image, name: str, size: tuple[int, int],
                between: Callable[[], None] | None = None) -> Image.Image:
        """`img` made `size` (width, height) by upscaler `name`; `between` is called before each tile."""
        img = img.convert("RGB")
        if name in RESIZERS:
            return resize(img, size, name)
        descriptor = self.model(name)
        for _ in range(MAX_PASSES):  # A1111: passes until the target is reached or the size stops growing
            before = img.size
            img = tiles.tiled(img, lambda tile: model_pass(descriptor, tile), self.tile, self.overlap, between)
            if img.size == before or (img.width >= size[0] and img.height >= size[1]):
                break
        return img if img.size == size else img.resize(size, resample=Image.LANCZOS)

    def upscale_tensor(self, images, name: str, size: tuple[int, int], between=None):
        """A (B, 3, H, W) batch in 0..1 upscaled image by image (as A1111's hires fix upscales decoded
        images: through 8-bit pictures), back as a (B, 3, height, width) tensor on the batch's device."""
        import torch

        out = [to_tensor(self.upscale(to_image(images[i:i + 1]), name, size, between), images.device,
                         images.dtype) for i in range(images.shape[0])]
        return torch.cat(out)


def _key(path: Path) -> tuple:
    stat = path.stat()
    return str(path), stat.st_mtime_ns, stat.st_size
