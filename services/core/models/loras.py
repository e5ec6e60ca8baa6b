"""LoRAs per request: the operator's folder of them, their A1111 hashes, and the adapters on a pipeline.

Every `NAME.safetensors` directly in `--lora-dir` is the LoRA `NAME`, in diffusers' format or kohya's
(what A1111 users have: diffusers' `load_lora_weights` converts its keys). A request names LoRAs by
name only; `available` is the one list the checks, GetInfo and loading go by, so a path never reaches
the file system. It lists only names a `<lora:name:weight>` tag carries (what infotext records must read
back); a file safetensors cannot read is refused at the checks (`short_hash`). A status never carries a
path or a loader's words: those go to the log, under the id the status gives.

`LoraAdapters` keeps the loaded ones on one pipeline (at most CACHE_SIZE, least recently used unloaded
first) and `activate`s a request's set - on the UNet and the text encoders - right before each UNet
call or prompt encoding; both engines call it, from the one thread that owns the pipeline.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Callable

from safetensors import SafetensorError, safe_open

from ..errors import InvalidArgument
from ..prompts import lora_name_problem

log = logging.getLogger(__name__)

SUFFIX = ".safetensors"
MAX_WEIGHT = 4.0  # |weight| bound for a request's LoRA (field or prompt tag)
CACHE_SIZE = 8  # adapters kept loaded on a pipeline; also the most distinct LoRAs one request may use

# A request's LoRA set: (name, weight) pairs, sorted by name, no zero weights. Requests with unequal
# sets never share a UNet call (the weights live in the layers, not in the batch).
LoraSet = tuple[tuple[str, float], ...]


class NotSafetensors(ValueError):
    """A file safetensors cannot read: its header's length against the file's size, the header's JSON, or
    the tensor data it describes do not hold together (a corrupt or cut-short download)."""


_skipped: set[tuple[str, str]] = set()  # (file, why) already logged: the folder is listed at every request


def available(lora_dir: Path | None) -> dict[str, Path]:
    """name -> file of every LoRA in the folder (none without one, or when it cannot be read). A file whose
    name a <lora:name:weight> tag cannot carry is left out (and logged once): what the service records in
    infotext must read back as the same request."""
    if lora_dir is None:
        return {}
    try:
        entries = list(os.scandir(lora_dir))
    except OSError:
        return {}
    found = {}
    for entry in entries:
        if entry.name.endswith(SUFFIX) and len(entry.name) > len(SUFFIX) and entry.is_file():
            name = entry.name[: -len(SUFFIX)]
            problem = lora_name_problem(name)
            if problem is None:
                found[name] = Path(entry.path)
            elif (entry.path, problem) not in _skipped:
                _skipped.add((entry.path, problem))
                log.warning("LoRA file %s is skipped: %s (rename it to use it)", entry.path, problem)
    return found


def names(lora_dir: Path | None) -> list[str]:
    return sorted(available(lora_dir))


def no_loras(lora_dir: Path | None, field: str) -> InvalidArgument:
    """The refusal of a request naming a LoRA when the folder lists none: no folder configured, the folder
    missing or unreadable now (its path and the error only in the log, under the refusal's id), or empty."""
    if lora_dir is None:
        return InvalidArgument(field, "this service has no LoRAs (it was started without --lora-dir)")
    try:
        os.scandir(lora_dir).close()
    except OSError as exc:
        return InvalidArgument.logged(field, "the service's LoRA folder is missing or cannot be read now",
                                      f"--lora-dir {lora_dir}: {exc.strerror or exc}", log)
    return InvalidArgument(field, "the service's LoRA folder has no LoRAs (NAME.safetensors files) now")


_hash_lock = threading.Lock()
_hashes: dict[tuple, str] = {}  # (path, mtime, size) -> short hash: a file is hashed once while unchanged


def short_hash(path: Path) -> str:
    """A1111's LoRA hash: the first 12 hex digits of sha256 over a .safetensors file's tensor data (the
    "addnet hash": the header, which holds free-form metadata, is left out), as its `Lora hashes` records.
    The file is checked first (so a request naming a corrupt one is refused before any work): NotSafetensors
    when safetensors cannot read it, OSError when it cannot be opened."""
    stat = path.stat()
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    with _hash_lock:
        if key in _hashes:
            return _hashes[key]
    try:  # safetensors' own checks: header length within the file (8 + header <= size), JSON, data covered
        with safe_open(str(path), framework="numpy"):
            pass
    except SafetensorError as exc:
        raise NotSafetensors(str(exc)) from None
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        header = int.from_bytes(file.read(8), "little")
        if 8 + header > stat.st_size:  # replaced since it was checked: never seek past the end
            raise NotSafetensors(f"header length {header} is beyond the file's {stat.st_size} bytes")
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
            with warnings.catch_warnings():
                # peft warns at every adapter after the first on a model ("Already found a `peft_config`
                # attribute in the model"): several adapters on one model is what this cache is for.
                warnings.filterwarnings("ignore", message="Already found a `peft_config` attribute",
                                        category=UserWarning)
                self.pipe.load_lora_weights(str(path), adapter_name=adapter)
        except Exception as exc:  # noqa: BLE001 - a file that does not fit this model is the request's problem
            self._forget(adapter)
            # The loader's words carry the file's path: they go to the log only, under the refusal's id.
            raise InvalidArgument.logged("params.loras", f"LoRA {name!r} cannot be applied to this model",
                                         f"{path}: {type(exc).__name__}: {exc}", log) from None
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
