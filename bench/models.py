"""`make bench`'s models section: what a switch between checkpoints costs, and what a crowd asking for two
models costs against a crowd on one, with one model on the device and with two.

The models are two tiny checkpoints of different seeds in one --models-dir (tests/model_folders.py).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from bench.run import Service, concurrent_rate, uniform_request

NAMES = ("alpha", "beta")


def models_folder() -> Path:
    import os

    from services.core.config import default_cache_dir
    from services.core.models.presets import ensure_tiny
    from tests.model_folders import tiny_models_folder

    base = ensure_tiny(default_cache_dir(os.environ), inpaint=False)
    return tiny_models_folder(tempfile.mkdtemp(prefix="imagegen-bench-models-"), base, NAMES)


def bench_models(clients: int, per_client: int, repeats: int) -> list[tuple]:
    folder = models_folder()
    return switch_cost(folder, repeats) + crowds(folder, clients, per_client)


def switch_cost(folder: Path, repeats: int) -> list[tuple]:
    """Seconds for ModelPool.get to put a model on the device: copied back from host memory, and loaded from
    disk (the files are in the page cache after the first read: this is the loader's cost, not the disk's)."""
    from dataclasses import replace

    from services.core.config import ServiceConfig
    from services.core.models.catalog import Catalog
    from services.core.models.loading import load_model
    from services.core.models.pool import GB, ModelPool
    from services.txt2img.mode import MODE

    config = ServiceConfig(mode=MODE.name, model=str(folder / NAMES[0]), models_dir=folder)

    def load(source: str):
        return load_model(MODE, replace(config, model=source))

    def moves(ram_cache_gb: float) -> tuple[str, dict[str, list[float]]]:
        """Alternate the two models on a pool of one device slot: each get's seconds, by its source."""
        first = load(config.model)
        pool = ModelPool(Catalog.build(config.model, folder, MODE.contract.takes_mask), load, first.device,
                         max_loaded=1, ram_cache_bytes=int(ram_cache_gb * GB))
        pool.add(first)
        seen = {"host": [], "disk": []}
        for name in [NAMES[1], NAMES[0]] * (repeats + 1):
            where = "host" if pool.in_host(name) else "disk"
            seen[where].append(synced_seconds(lambda name=name: pool.get(name, "the bench"), first.device))
        return first.device, seen

    device, cached = moves(ram_cache_gb=8)
    _device, uncached = moves(ram_cache_gb=0)  # nothing kept in host memory: every switch to beta loads
    host = statistics.median(cached["host"])
    disk = statistics.median(cached["disk"][1:] + uncached["disk"][1:])  # the first load of each warms up
    note = " (on cpu a move is no copy)" if device == "cpu" else ""
    return [(f"models: switch, host memory -> {device}, tiny checkpoint{note}", f"{host * 1000:.1f} ms",
             f"median of {len(cached['host'])}", ""),
            (f"models: switch, disk -> {device}, tiny checkpoint", f"{disk * 1000:.1f} ms",
             f"{disk / host:.0f}x the host copy" if host > 0 else "", "")]


def synced_seconds(fn, device: str) -> float:
    import torch

    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize(device)

    sync()
    started = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - started


CROWDS = {  # workload -> the model client `index` asks for in its request `n`
    "one model": lambda index, n: NAMES[0],
    "two models alternating": lambda index, n: NAMES[(index + n) % 2],
}


def crowds(folder: Path, clients: int, per_client: int, rounds: int = 2) -> list[tuple]:
    """The same requests (256x256, 20 steps) from a crowd on one model and from a crowd whose every client
    alternates two, on services with --max-loaded 1 and 2 (side by side, taking turns, as the engine
    section's). Moves onto the device are counted by the services' own metrics."""
    services: dict[int, Service] = {}
    results: dict[tuple, tuple[float, list[float]]] = {}
    moves = {}
    try:
        for slots in (1, 2):
            services[slots] = Service("txt2img", "--models-dir", str(folder), "--max-loaded", str(slots),
                                      "--queue-size", str(clients * 2), model=NAMES[0])
        # Workloads and services take turns within each round, so a drift of a shared machine weighs on all.
        order = [(slots, workload) for workload in CROWDS for slots in services]
        for slots, workload in order:
            concurrent_rate(services[slots], clients, 1, crowd_request(workload))  # warm-up: beta loads here
        for _round in range(rounds):
            for slots, workload in order:
                before = moved(services[slots])  # (loads, switches)
                started = time.perf_counter()
                service = services[slots]
                _rate, latencies = concurrent_rate(service, clients, per_client, crowd_request(workload))
                seconds, pooled = results.get((slots, workload), (0.0, []))
                results[slots, workload] = (seconds + time.perf_counter() - started, pooled + latencies)
                was = moves.get((slots, workload), (0, 0))
                moves[slots, workload] = tuple(w + a - b for w, a, b in zip(was, moved(service), before))
    finally:
        for service in services.values():
            service.stop()
    rows = []
    for (slots, workload), (seconds, latencies) in results.items():
        p95 = statistics.quantiles(latencies, n=20)[-1]
        loads, switches = moves[slots, workload]
        rows.append((f"models, --max-loaded {slots}: {workload}", f"{len(latencies) / seconds:.2f} images/s",
                     f"p50 {statistics.median(latencies):.2f} s, p95 {p95:.2f} s; moves onto the device: "
                     f"{loads:.0f} from disk, {switches:.0f} from host memory", ""))
    requests = rounds * clients * per_client
    for slots in services:
        one, two = (len(results[slots, w][1]) / results[slots, w][0] for w in CROWDS)
        rows.append((f"models, --max-loaded {slots}: two models alternating vs one model", "",
                     f"{two / one:.2f}x", ""))
    loads, switches = moves[1, "two models alternating"]
    rows.append(("models, --max-loaded 1, two models alternating: moves onto the device per request",
                 f"{loads + switches:.0f} for {requests}", f"{(loads + switches) / requests:.2f}", ""))
    # The promise: with the model in host memory, a switch is a copy, never a reload from disk.
    reloads = sum(moves[key][0] for key in moves)
    rows.append(("models: loads from disk during the crowds (both models seen in warm-up)", f"{reloads:.0f}",
                 "", ("meets" if reloads == 0 else "misses") + " = 0"))
    return rows


def crowd_request(workload: str):
    """The engine section's uniform request, naming the model the workload gives it."""
    def request_of(index: int, n: int):
        request = uniform_request(index, n)
        request.params.model = CROWDS[workload](index, n)
        return request
    return request_of


def moved(service: Service) -> tuple[float, float]:
    """Models loaded from disk and moved back from host memory so far, by the service's metrics."""
    return service.metric("imagegen_model_loads_total"), service.metric("imagegen_model_switches_total")
