"""ControlNets by name: the operator's --controlnet-dir, each one's family and A1111 hash, and a bounded
cache of the loaded ones.

Every diffusers ControlNet folder (a `config.json` of a ControlNet class, and its weights) and every
single-file ControlNet (`.safetensors`, `.pth`, ...) directly in the folder is the ControlNet of its name
without extension. `available` is the one list the checks, GetInfo and loading go by, so a request names
entries, never paths. Its family (what models it can steer) is read from the folder's config, or from
a single file's tensor shapes (its cross-attention width), never from weights. A single file loads
offline, its config derived from its tensors (controlnet_file).

`ControlNetCache` keeps at most CACHE_SIZE loaded on the device, least recently used out first; a row
holds the module it runs with, so a ControlNet evicted meanwhile stays alive until those rows are done.
Only the engine thread loads (the checks read configs and headers only).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from ..errors import InvalidArgument
from . import controlnet_file, single_file
from .family import SD2_TEXT_WIDTH

log = logging.getLogger(__name__)

CACHE_SIZE = 4  # ControlNets kept loaded at once (a request uses at most limits.max_control_units)
HASH_LENGTH = 10  # as the checkpoints' short hash (catalog.HASH_LENGTH)
SDXL_CONTEXT = 2048  # SDXL's two text encoders side by side (768 + 1280)
_WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")


@dataclass(frozen=True)
class ControlNetFile:
    """One ControlNet of the folder."""

    name: str
    path: Path  # its folder or file
    family: str  # "sd1", "sd2", "sdxl"
    stamp: tuple  # (mtime_ns, size) of its weights: a replaced file is loaded again

    @property
    def weights(self) -> Path | None:
        """The file its hash is of: the single file, or the folder's weights."""
        if self.path.is_file():
            return self.path
        return next((self.path / name for name in _WEIGHTS if (self.path / name).is_file()), None)


def family_of_config(config: dict) -> str:
    """A diffusers ControlNet's family from its config: SDXL's text-time embedding, else the width of
    the text it attends to (SD 2.x's OpenCLIP is 1024 wide; SD 1.x's, and the tiny models', are not)."""
    if config.get("addition_embed_type") == "text_time":
        return "sdxl"
    return "sd2" if config.get("cross_attention_dim") == SD2_TEXT_WIDTH else "sd1"


def family_of_shapes(shapes: dict[str, tuple]) -> str:
    """A single-file ControlNet's family from its tensors' shapes (either layout): the text-time
    embedding, or the width of the cross-attention's keys. Raises ValueError for what is no ControlNet."""
    widths = {shape[1] for key, shape in shapes.items() if key.endswith("attn2.to_k.weight") and len(shape) == 2}
    if not widths and not any("zero_convs" in key or "controlnet_down_blocks" in key for key in shapes):
        raise ValueError("no ControlNet tensors in it")
    if any(key.startswith(("add_embedding.", "label_emb.", "control_model.label_emb.")) for key in shapes):
        return "sdxl"
    if SDXL_CONTEXT in widths:
        return "sdxl"
    return "sd2" if SD2_TEXT_WIDTH in widths else "sd1"


_known: dict[tuple, ControlNetFile] = {}  # (path, stamp) -> entry: a file's header is read once
_skipped: set[tuple] = set()  # (path, stamp) already logged as skipped


def _stamp(path: Path) -> tuple:
    target = path if path.is_file() else next((path / n for n in _WEIGHTS if (path / n).is_file()),
                                              path / "config.json")
    info = target.stat()
    return info.st_mtime_ns, info.st_size


def _read(path: Path, name: str, stamp: tuple) -> ControlNetFile:
    if path.is_dir():
        config = json.loads((path / "config.json").read_text())
        if "ControlNet" not in str(config.get("_class_name", "")):
            raise ValueError(f"its config.json is a {config.get('_class_name')!r}, not a ControlNet")
        return ControlNetFile(name, path, family_of_config(config), stamp)
    shapes, _extra = single_file.read_header(path)
    return ControlNetFile(name, path, family_of_shapes(shapes), stamp)


def available(folder: Path | None) -> dict[str, ControlNetFile]:
    """name -> ControlNet of the folder (none without one, or when it cannot be read), sorted by name.
    What is not a ControlNet is skipped, logged once."""
    if folder is None:
        return {}
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        return {}
    found: dict[str, ControlNetFile] = {}
    for entry in entries:
        path = Path(entry.path)
        if entry.name.startswith("."):
            continue
        is_folder = entry.is_dir() and (path / "config.json").is_file()
        if not (is_folder or entry.is_file() and single_file.is_checkpoint_path(path)):
            continue
        name = path.name if is_folder else path.stem
        key: tuple = (str(path), ())
        try:
            stamp = _stamp(path)
            key = (str(path), stamp)
            if key not in _known:
                _known[key] = _read(path, name, stamp)
        except (OSError, ValueError, KeyError, single_file.CheckpointError) as exc:
            if key not in _skipped:
                _skipped.add(key)
                log.warning("ControlNet folder: skipped %s, not a ControlNet: %s", entry.name, exc)
            continue
        if name not in found:
            found[name] = _known[key]
    return found


def no_controlnets(folder: Path | None, field: str) -> InvalidArgument:
    """The refusal of a unit when the service has no ControlNet to offer."""
    if folder is None:
        return InvalidArgument(field, "this service has no ControlNets (it was started without --controlnet-dir)")
    return InvalidArgument(field, "the service's ControlNet folder has no ControlNets now")


_hash_lock = threading.Lock()
_hashes: dict[tuple, str] = {}  # (path, stamp) -> short hash: a file is hashed once while unchanged


def short_hash(entry: ControlNetFile) -> str:
    """A1111's short hash (the first HASH_LENGTH hex digits of the weights file's sha256), once per
    file version; "" when the folder has no weights file to hash."""
    key = (str(entry.path), entry.stamp)
    with _hash_lock:
        if key in _hashes:
            return _hashes[key]
    weights = entry.weights
    if weights is None:
        return ""
    digest = hashlib.sha256()
    with open(weights, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    value = digest.hexdigest()[:HASH_LENGTH]
    with _hash_lock:
        _hashes[key] = value
    return value


def known_hash(entry: ControlNetFile) -> str:
    """The hash if computed already, else "" (GetInfo never waits for one)."""
    with _hash_lock:
        return _hashes.get((str(entry.path), entry.stamp), "")


def hash_in_background(folder: Path | None) -> threading.Thread:
    """Hash every ControlNet of the folder once, off the request path (a ControlNet is a GB or so)."""
    def run():
        for entry in available(folder).values():
            try:
                short_hash(entry)
            except OSError as exc:
                log.warning("could not hash the ControlNet %s: %s", entry.name, exc)

    thread = threading.Thread(target=run, name="controlnet-hashes", daemon=True)
    thread.start()
    return thread


class ControlNetCache:
    """Loaded ControlNets, by (name, file version, device, dtype), at most `capacity`."""

    def __init__(self, folder: Path | None, capacity: int = CACHE_SIZE):
        self.folder, self.capacity = folder, capacity
        self._loaded: OrderedDict[tuple, object] = OrderedDict()
        self._lock = threading.Lock()  # GetInfo's `is_loaded` reads from other threads

    def is_loaded(self, name: str) -> bool:
        with self._lock:
            return any(key[0] == name for key in self._loaded)

    def get(self, name: str, device, dtype, field: str):
        """The ControlNet `name` on `device` in `dtype`, loaded if need be. Engine thread only. Raises
        InvalidArgument naming `field` when it is gone or cannot be loaded (its path only in the log)."""
        entry = available(self.folder).get(name)
        if entry is None:
            raise InvalidArgument(field, f"ControlNet {name!r} is no longer in the ControlNet folder")
        key = (name, entry.stamp, str(device), str(dtype))
        with self._lock:
            if key in self._loaded:
                self._loaded.move_to_end(key)
                return self._loaded[key]
        try:
            net = self._load(entry, dtype).to(device)
        except Exception as exc:  # noqa: BLE001 - a file that does not load is the request's problem
            raise InvalidArgument.logged(field, f"ControlNet {name!r} cannot be loaded",
                                         f"{entry.path}: {type(exc).__name__}: {exc}", log) from None
        net.eval()
        with self._lock:
            for old in [k for k in self._loaded if k[0] == name]:  # an older version of its file
                del self._loaded[old]
            while len(self._loaded) >= self.capacity:
                self._loaded.popitem(last=False)
            self._loaded[key] = net
        log.info("ControlNet %s loaded (%s, %s on %s)", name, entry.family, str(dtype).removeprefix("torch."),
                 device)
        return net

    def _load(self, entry: ControlNetFile, dtype):
        if entry.path.is_dir():
            from diffusers import ControlNetModel

            return ControlNetModel.from_pretrained(str(entry.path), torch_dtype=dtype)
        # A single file (either layout): its config derived from its tensors, offline.
        return controlnet_file.load(entry.path, dtype)
