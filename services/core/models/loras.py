"""LoRAs per request: the operator's folder of them, their A1111 hashes, and the adapters on a pipeline.

Every `NAME.safetensors` directly in `--lora-dir` is the LoRA `NAME`, in diffusers' format or kohya's
(what A1111 users have: diffusers' `load_lora_weights` converts its keys). A request names LoRAs by
name only; `available` is the one list the checks, GetInfo and loading go by, so a path never reaches
the file system. It lists only names a `<lora:name:weight>` tag carries (what infotext records must read
back); a file safetensors cannot read is refused at the checks (`short_hash`). A status never carries a
path or a loader's words: those go to the log, under the id the status gives.

`LoraAdapters` keeps the loaded ones on one pipeline (at most CACHE_SIZE, least recently used unloaded
first, never one a running request uses), pins a request's set for its life, and `activate`s it - on the
UNet and the text encoders - right before each UNet call or prompt encoding; both engines call it, from
the one thread that owns the pipeline.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from safetensors import SafetensorError, safe_open

from imagegen.v1.contract import MAX_LORA_WEIGHT

from ..errors import InvalidArgument
from ..prompts import lora_name_problem

log = logging.getLogger(__name__)

SUFFIX = ".safetensors"
MAX_WEIGHT = MAX_LORA_WEIGHT  # |weight| bound for a request's LoRA (field or prompt tag)
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


def _read(path: Path) -> tuple[tuple, dict]:
    """(the file's stamp, its tensors) read into memory: a file loaded by path is memory-mapped, and its
    adapter's weights would change with the file if it were rewritten in place under a running request."""
    from safetensors.torch import load

    for _attempt in range(3):
        stamp = _stamp(path)
        data = path.read_bytes()
        if _stamp(path) == stamp:
            return stamp, load(data)
    raise OSError(f"{path.name} kept changing while it was read")


def _stamp_or_none(path: Path) -> tuple | None:
    try:
        return _stamp(path)
    except OSError:
        return None


@dataclass(eq=False)
class _Version:
    """One file's weights as loaded: a peft adapter, the file's stamp then, and the requests using it."""

    name: str
    adapter: str
    stamp: tuple
    users: int = 0


# A request's LoRA set as pinned: (adapter, weight) pairs of the very weights it runs with. Requests with
# unequal pinned sets never share a UNet call; a file replaced on disk gives later requests a new adapter.
PinnedSet = tuple[tuple[str, float], ...]


class LoraAdapters:
    """The LoRAs loaded on one pipeline, as peft adapters; not thread-safe (the pipeline's owner calls it).

    A request `pin`s its set when it starts: each LoRA's current file is loaded if it is not (or changed
    on disk since), and the adapter stays until the request `unpin`s it, even if the file is replaced
    meanwhile (later requests get the new file as a new adapter; the old one goes with its last user).
    Adapters in use are never evicted: `room_for` tells whether a set can be pinned now without evicting
    one, so the engines hold a newcomer rather than reload files at every step.
    """

    def __init__(self, pipe, lora_dir: Path | None, capacity: int = CACHE_SIZE,
                 on_load: Callable[[], None] | None = None):
        self.pipe, self.lora_dir, self.capacity = pipe, lora_dir, capacity
        self.on_load = on_load  # called after each file loaded (the service counts them: cache misses)
        self._versions: OrderedDict[str, _Version] = OrderedDict()  # adapter -> version, least recent first
        self._current: dict[str, _Version] = {}  # LoRA name -> its latest loaded version
        self._active: PinnedSet | None = ()  # the set the pipeline runs with now; None: unknown
        self._count = 0

    @property
    def loaded(self) -> list[str]:
        """Names loaded now, least recently used first (a replaced file's old weights: its name again)."""
        return [version.name for version in self._versions.values()]

    def room_for(self, loras: LoraSet) -> bool:
        """Whether `loras` can be pinned now without evicting an adapter a running request uses."""
        if not loras:
            return True
        found = available(self.lora_dir)  # one look at the folder for the whole set
        fresh = {name for name, _ in loras if self._fresh(name, found.get(name))}
        staying = {v.adapter for v in self._versions.values() if v.users} | {self._current[n].adapter for n in fresh}
        return len(staying) + len(loras) - len(fresh) <= self.capacity

    def pin(self, loras: LoraSet) -> PinnedSet:
        """The adapters of `loras`' current files, loaded where they are not, kept until `unpin`."""
        names = {name for name, _ in loras}
        pinned = []
        try:
            for name, weight in loras:
                version = self._ensure(name, keep=names)
                version.users += 1
                pinned.append((version.adapter, weight))
        except BaseException:
            self.unpin(tuple(pinned))
            raise
        return tuple(pinned)

    def unpin(self, pinned: PinnedSet) -> None:
        """A request is done with its adapters; weights superseded by a newer file go with their last user."""
        for adapter, _ in pinned:
            version = self._versions.get(adapter)
            if version is None:
                continue
            version.users -= 1
            if version.users <= 0 and self._current.get(version.name) is not version:
                self._unload(version)

    def activate(self, pinned: PinnedSet) -> None:
        """Make the pipeline run with exactly the pinned adapters and weights (none: the plain model)."""
        if pinned == self._active:
            return
        if not pinned:
            if self._versions:
                self.pipe.disable_lora()  # the model's own weights, exactly: no LoRA layer runs
            self._active = ()
            return
        self._active = None
        self.pipe.enable_lora()  # set_adapters does not undo disable_lora
        self.pipe.set_adapters([adapter for adapter, _ in pinned], adapter_weights=[w for _, w in pinned])
        for adapter, _ in pinned:
            self._versions.move_to_end(adapter)
        self._active = pinned

    def _fresh(self, name: str, path: Path | None) -> bool:
        """Whether LoRA `name`'s current file (at `path`) is loaded as it is on disk now."""
        version = self._current.get(name)
        return version is not None and path is not None and _stamp_or_none(path) == version.stamp

    def _ensure(self, name: str, keep: set[str]) -> _Version:
        """The version of LoRA `name` as its file is now, loaded if it is not."""
        path = available(self.lora_dir).get(name)  # by name only: the checks went by the same list
        if path is None:
            raise InvalidArgument("params.loras", f"LoRA {name!r} is no longer in the LoRA folder")
        stamp = _stamp_or_none(path)
        if stamp is None:
            raise InvalidArgument("params.loras", f"LoRA {name!r} is no longer in the LoRA folder")
        version = self._current.get(name)
        if version is not None and version.stamp == stamp:
            self._versions.move_to_end(version.adapter)
            return version
        if version is not None and not version.users:
            self._unload(version)  # replaced on disk, and nobody runs with it
        for victim in [v for v in self._versions.values() if not v.users and v.name not in keep]:
            if len(self._versions) < self.capacity:
                break
            self._unload(victim)  # least recently used first
        if len(self._versions) >= self.capacity:
            raise InvalidArgument("params.loras", f"no room for LoRA {name!r}: {len(self._versions)} LoRAs are in "
                                                  "use by running requests; try again shortly")
        self._count += 1
        adapter = f"lora{self._count}"  # peft names are module keys: file names (dots, spaces) are not
        self._active = None
        try:
            stamp, weights = _read(path)
            with warnings.catch_warnings():
                # peft warns at every adapter after the first on a model ("Already found a `peft_config`
                # attribute in the model"): several adapters on one model is what this cache is for.
                warnings.filterwarnings("ignore", message="Already found a `peft_config` attribute",
                                        category=UserWarning)
                self.pipe.load_lora_weights(weights, adapter_name=adapter)
            if adapter not in self._present():
                raise ValueError("it holds no weights for this model's layers")
        except Exception as exc:  # noqa: BLE001 - a file that does not fit this model is the request's problem
            self._forget(adapter)
            # The loader's words may carry the file's path: they go to the log only, under the refusal's id.
            raise InvalidArgument.logged("params.loras", f"LoRA {name!r} cannot be applied to this model",
                                         f"{path}: {type(exc).__name__}: {exc}", log) from None
        version = self._versions[adapter] = self._current[name] = _Version(name, adapter, stamp)
        if self.on_load is not None:
            self.on_load()
        log.info("LoRA %s loaded (%s); %d loaded", name, adapter, len(self._versions))
        return version

    def _unload(self, version: _Version) -> None:
        self._versions.pop(version.adapter, None)
        if self._current.get(version.name) is version:
            del self._current[version.name]
        self._active = None
        self._forget(version.adapter)
        log.info("LoRA %s unloaded (%s)", version.name, version.adapter)

    def _present(self) -> set[str]:
        return {a for names_ in self.pipe.get_list_adapters().values() for a in names_}

    def _forget(self, adapter: str) -> None:
        """Delete an adapter from every component that has it (a failed load may have left part of it)."""
        try:
            if adapter in self._present():
                self.pipe.delete_adapters([adapter])
        except Exception as exc:  # noqa: BLE001 - nothing was loaded, or it is gone already
            log.debug("deleting adapter %s: %s", adapter, exc)
