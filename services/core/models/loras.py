"""LoRAs per request: the operator's folder of them, their A1111 hashes, and the adapters on a pipeline.

Every `NAME.safetensors` directly in `--lora-dir` is the LoRA `NAME`, in diffusers' format or kohya's
(what A1111 users have: diffusers' `load_lora_weights` converts its keys). A request names LoRAs by
name only; `available` is the one list the checks, GetInfo and loading go by, so a path never reaches
the file system.

`LoraAdapters` keeps the loaded ones on one pipeline (at most CACHE_SIZE, least recently used unloaded
first) and `activate`s a request's set - on the UNet and the text encoders - right before each UNet
call or prompt encoding; both engines call it, from the one thread that owns the pipeline.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Callable

from ..errors import InvalidArgument

log = logging.getLogger(__name__)

SUFFIX = ".safetensors"
MAX_WEIGHT = 4.0  # |weight| bound for a request's LoRA (field or prompt tag)
CACHE_SIZE = 8  # adapters kept loaded on a pipeline; also the most distinct LoRAs one request may use

# A request's LoRA set: (name, weight) pairs, sorted by name, no zero weights. Requests with unequal
# sets never share a UNet call (the weights live in the layers, not in the batch).
LoraSet = tuple[tuple[str, float], ...]


def available(lora_dir: Path | None) -> dict[str, Path]:
    """name -> file of every LoRA in the folder (none without one, or when it cannot be read)."""
    if lora_dir is None:
        return {}
    try:
        entries = list(os.scandir(lora_dir))
    except OSError:
        return {}
    found = {}
    for entry in entries:
        if entry.name.endswith(SUFFIX) and len(entry.name) > len(SUFFIX) and entry.is_file():
            found[entry.name[: -len(SUFFIX)]] = Path(entry.path)
    return found


def names(lora_dir: Path | None) -> list[str]:
    return sorted(available(lora_dir))


_hash_lock = threading.Lock()
_hashes: dict[tuple, str] = {}  # (path, mtime, size) -> short hash: a file is hashed once while unchanged


def short_hash(path: Path) -> str:
    """A1111's LoRA hash: the first 12 hex digits of sha256 over a .safetensors file's tensor data (the
    "addnet hash": the header, which holds free-form metadata, is left out), as its `Lora hashes` records."""
    stat = path.stat()
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    with _hash_lock:
        if key in _hashes:
            return _hashes[key]
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        header = int.from_bytes(file.read(8), "little")
        file.seek(8 + header)
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    value = digest.hexdigest()[:12]
    with _hash_lock:
        _hashes[key] = value
    return value


def _stamp(path: Path) -> tuple:
    stat = path.stat()
    return stat.st_mtime_ns, stat.st_size


class LoraAdapters:
    """The LoRAs loaded on one pipeline, as peft adapters; not thread-safe (the pipeline's owner calls it)."""

    def __init__(self, pipe, lora_dir: Path | None, capacity: int = CACHE_SIZE,
                 on_load: Callable[[], None] | None = None):
        self.pipe, self.lora_dir, self.capacity = pipe, lora_dir, capacity
        self.on_load = on_load  # called after each file loaded (the service counts them: cache misses)
        self._loaded: OrderedDict[str, tuple[str, tuple]] = OrderedDict()  # name -> (adapter, file stamp)
        self._active: LoraSet | None = ()  # the set the pipeline runs with now; None: unknown
        self._count = 0

    @property
    def loaded(self) -> list[str]:
        """Names loaded now, least recently used first."""
        return list(self._loaded)

    def activate(self, loras: LoraSet, refresh: bool = False) -> None:
        """Make the pipeline run with exactly `loras` (none: the plain model). `refresh`: reload a file that
        changed on disk (at admission; a request already running keeps the weights it started with)."""
        if loras == self._active and not refresh:
            return
        if not loras:
            if self._loaded:
                self.pipe.disable_lora()  # the model's own weights, exactly: no LoRA layer runs
            self._active = ()
            return
        adapters = [self._ensure(name, keep={n for n, _ in loras}, refresh=refresh) for name, _ in loras]
        self._active = None
        self.pipe.enable_lora()  # set_adapters does not undo disable_lora
        self.pipe.set_adapters(adapters, adapter_weights=[weight for _, weight in loras])
        self._active = loras

    def _ensure(self, name: str, keep: set[str], refresh: bool) -> str:
        """The adapter of LoRA `name`, loaded if it is not (or, with `refresh`, if its file changed)."""
        if name in self._loaded and not refresh:
            self._loaded.move_to_end(name)
            return self._loaded[name][0]
        path = available(self.lora_dir).get(name)  # by name only: the checks went by the same list
        if path is None:
            raise InvalidArgument("params.loras", f"LoRA {name!r} is no longer in the LoRA folder")
        if name in self._loaded:
            adapter, stamp = self._loaded[name]
            if stamp == _stamp(path):
                self._loaded.move_to_end(name)
                return adapter
            self._unload(name)
        while len(self._loaded) >= self.capacity:
            victim = next((n for n in self._loaded if n not in keep), None)
            if victim is None:
                break
            self._unload(victim)
        self._count += 1
        adapter = f"lora{self._count}"  # peft names are module keys: file names (dots, spaces) are not
        self._active = None
        stamp = _stamp(path)
        try:
            self.pipe.load_lora_weights(str(path), adapter_name=adapter)
        except Exception as exc:  # noqa: BLE001 - a file that does not fit this model is the request's problem
            self._forget(adapter)
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise InvalidArgument("params.loras", f"LoRA {name!r} cannot be applied to this model: {first}") from None
        self._loaded[name] = (adapter, stamp)
        if self.on_load is not None:
            self.on_load()
        log.info("LoRA %s loaded (%s); %d loaded", name, adapter, len(self._loaded))
        return adapter

    def _unload(self, name: str) -> None:
        adapter, _ = self._loaded.pop(name)
        self._active = None
        self._forget(adapter)
        log.info("LoRA %s unloaded (%s)", name, adapter)

    def _forget(self, adapter: str) -> None:
        """Delete an adapter from every component that has it (a failed load may have left part of it)."""
        try:
            present = {a for names_ in self.pipe.get_list_adapters().values() for a in names_}
            if adapter in present:
                self.pipe.delete_adapters([adapter])
        except Exception as exc:  # noqa: BLE001 - nothing was loaded, or it is gone already
            log.debug("deleting adapter %s: %s", adapter, exc)
