"""The model pool: the catalogue's checkpoints handed out by name as `Loaded`, a bounded few on the device.

At most `max_loaded` models live on the device; the least recently used one moves to host memory (a
copy, so a switch back is a copy too, never a reload from disk), and the host cache keeps the most
recently used within `ram_cache_bytes`, dropping the rest (the next use loads from disk). The default
model is never dropped: the runtime reads its tokenizer and limits for checks. Only the engine thread
calls `get` (pipelines are not thread-safe); other threads read `resident` and `is_loaded`.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections import OrderedDict
from typing import Callable

from .catalog import Catalog
from .loaded import Loaded
from .loading import ModelLoadError, ModelOutOfMemory, is_out_of_memory

log = logging.getLogger(__name__)
GB = 1024**3


def pipe_bytes(pipe) -> int:
    """The bytes of a pipeline's weights (its torch modules' parameters and buffers)."""
    import torch

    total = 0
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            total += sum(t.numel() * t.element_size() for t in (*component.parameters(), *component.buffers()))
    return total


class ModelPool:
    def __init__(self, catalog: Catalog, load: Callable[[str], Loaded], device: str, max_loaded: int = 1,
                 ram_cache_bytes: int = 8 * GB, metrics=None, estimator=None):
        self.catalog, self._load, self.device = catalog, load, device
        self.estimator = estimator  # work.estimate.WorkEstimator: what switches cost, for admission
        self.max_loaded, self.ram_cache_bytes, self.metrics = max_loaded, ram_cache_bytes, metrics
        self._device: OrderedDict[str, Loaded] = OrderedDict()  # least recently used first
        self._host: OrderedDict[str, Loaded] = OrderedDict()
        self._bytes: dict[str, int] = {}
        self._lock = threading.Lock()  # guards the two dicts for readers on other threads
        if metrics is not None:
            metrics.models_resident.set_function(lambda: len(self._device))

    def add(self, loaded: Loaded) -> Loaded:
        """A model loaded outside (the runtime's default, at start) put on the device."""
        self._bytes[loaded.name] = pipe_bytes(loaded.pipe)
        self._make_room(keep=loaded.name)
        with self._lock:
            self._device[loaded.name] = loaded
        return loaded

    def is_loaded(self, name: str) -> bool:
        """Whether `name` is on the device now (a request for it needs no switch)."""
        with self._lock:
            return name in self._device

    def in_host(self, name: str) -> bool:
        with self._lock:
            return name in self._host

    def held(self, name: str) -> Loaded | None:
        """The model if it is on the device or in host memory (not moved), else None."""
        with self._lock:
            return self._device.get(name) or self._host.get(name)

    def switch_s(self, name: str) -> float:
        """Predicted seconds before `name` can run: 0 on the device, else a copy or a load."""
        if self.estimator is None or self.is_loaded(name):
            return 0.0
        return self.estimator.model_move_s(from_disk=not self.in_host(name))

    def resident(self) -> list[str]:
        with self._lock:
            return list(self._device)

    def get(self, name: str, why: str = "a request") -> Loaded:
        """The model `name` on the device: as it is, moved from host memory, or loaded from disk.
        Raises ModelLoadError (ModelOutOfMemory when the device ran out of memory) for the caller's
        requests; a failed switch leaves the model in host memory, as it was."""
        with self._lock:
            if name in self._device:
                self._device.move_to_end(name)
                return self._device[name]
        entry = self.catalog.by_name(name)
        if entry is None:  # a rescan dropped it: only once no request used it, so this is a stale name
            raise ModelLoadError(f"the model {name} is no longer in the models folder")
        self._make_room(keep=name)
        started = time.monotonic()
        with self._lock:
            cached = self._host.pop(name, None)
        try:
            if cached is not None:
                cached.pipe.to(cached.device)
                loaded, how = cached, "from host memory"
                if self.metrics is not None:
                    self.metrics.model_switches.inc()
            else:
                loaded, how = self._load(entry.source), "from disk"
                self._bytes[name] = pipe_bytes(loaded.pipe)
                entry.learn(loaded)
                if self.metrics is not None:
                    self.metrics.model_loads.inc()
                    self.metrics.model_load_seconds.observe(time.monotonic() - started)
        except Exception as exc:
            self._failed(name, cached, exc)
            raise
        with self._lock:
            self._device[name] = loaded
        if self.estimator is not None:
            self.estimator.observe_model_move(cached is None, time.monotonic() - started)
        log.info("model %s on %s %s in %.2fs, for %s (resident: %s)", name, self.device, how,
                 time.monotonic() - started, why, ", ".join(self.resident()))
        return loaded

    def _failed(self, name: str, cached: Loaded | None, exc: Exception) -> None:
        """After a failed switch or load: a model from host memory goes back there whole (a copy that
        failed midway leaves parts on the device), and what the attempt held on the device is freed.
        Out of memory is raised as ModelOutOfMemory (the caller's requests, not the service's fault)."""
        from ..work.device import release_device_memory

        if cached is not None:
            try:
                cached.pipe.to("cpu")
            finally:
                with self._lock:
                    self._host[name] = cached
        release_device_memory()
        if is_out_of_memory(exc):
            log.warning("model %s: the device (%s) ran out of memory bringing it there: %s", name,
                        self.device, exc)
            raise ModelOutOfMemory(f"the device ran out of memory loading the model {name}; try again later "
                                   "or name a model that is loaded") from exc

    def forget(self, name: str) -> None:
        """Drop a model from the device and host memory (a rescan found its file gone or changed, and no
        request uses it); its next use loads from disk. Never the default (the runtime holds it). Its
        memory is freed once collected (the caller collects: this runs under the catalogue's lock)."""
        if name == self.catalog.default.name:
            return
        with self._lock:
            held = self._device.pop(name, None) or self._host.pop(name, None)
            self._bytes.pop(name, None)
        if held is not None:
            log.info("model %s dropped from memory (its file changed or vanished)", name)

    def _make_room(self, keep: str) -> None:
        """Move the least recently used models off the device until one more fits, then trim the host
        cache to its budget."""
        while True:
            with self._lock:
                if len(self._device) < self.max_loaded or not self._device:
                    break
                name, evicted = self._device.popitem(last=False)
            evicted.pipe.to("cpu")
            with self._lock:
                self._host[name] = evicted
            if self.metrics is not None:
                self.metrics.model_evictions.inc()
            log.info("model %s moved to host memory to make room for %s", name, keep)
        self._trim_host()

    def _trim_host(self) -> None:
        default = self.catalog.default.name
        with self._lock:
            dropped = []
            # The default is held by the runtime anyway: it is not counted, nor dropped.
            while sum(self._bytes.get(n, 0) for n in self._host if n != default) > self.ram_cache_bytes:
                name = next((n for n in self._host if n != default), None)
                if name is None:
                    break
                del self._host[name]
                dropped.append(name)
        for name in dropped:
            log.info("model %s dropped from host memory (over --ram-cache-gb %.1f)", name,
                     self.ram_cache_bytes / GB)
        if dropped:
            gc.collect()

    def host_bytes(self) -> int:
        with self._lock:
            return sum(self._bytes.get(n, 0) for n in self._host if n != self.catalog.default.name)
