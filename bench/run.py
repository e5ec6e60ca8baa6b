"""`make bench`: what the services cost and what batching buys, as ratios measured in one run.

Prints a table and writes it, with the machine it ran on, to bench/results/. Every comparison is
between numbers measured in this run (medians over repeats, after warm-up), never across runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Service:
    """A mode service as its own process, as deployed."""

    def __init__(self, mode: str, *args: str, model: str = "tiny", wait: bool = True):
        from services.client import ImageGenClient

        self.mode = mode
        self.port, self.metrics_port = free_port(), free_port()
        self.started = time.monotonic()
        self._errors = tempfile.TemporaryFile()  # what it says if it fails to start
        self.proc = subprocess.Popen(
            [sys.executable, "-m", f"services.{mode}", "--model", model, "--port", str(self.port),
             # No probe port (its fixed default would clash between services side by side) unless args give one.
             "--metrics-port", str(self.metrics_port), "--health-port", "-1", "--log-level", "WARNING",
             *args],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=self._errors,
        )
        self.address = f"127.0.0.1:{self.port}"
        self.client = ImageGenClient(mode, self.address, timeout=600, retries=10)
        self.serving_after = None
        if wait:
            self.wait_until_serving()

    def wait_until_serving(self, within_s: float = 300) -> None:
        """Until the service reports SERVING; its seconds since the start in `serving_after`."""
        if self.serving_after is not None:
            return
        # A process that exits (a port taken between free_port and its bind, on a shared machine) fails now,
        # with its last words, rather than after the whole wait.
        deadline = self.started + within_s
        while not self.client.wait_until_serving(2):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                self._errors.seek(0)
                raise RuntimeError(f"{self.mode} did not become SERVING: {self._errors.read().decode()[-300:].strip()}")
        self._errors.close()
        self.serving_after = time.monotonic() - self.started

    def metric(self, name: str) -> float:
        """A sample of the service's own Prometheus metrics (the mode label only); 0 before any."""
        text = urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).read().decode()
        for line in text.splitlines():
            if line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def metrics_matching(self, name: str) -> list[float]:
        """Every labelled sample of a metric (all its label values)."""
        text = urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).read().decode()
        return [float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{")]

    def steps_total(self) -> float:
        return self.metric("imagegen_denoising_steps_total")

    def stop(self) -> None:
        self.client.close()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def bench_overhead(repeats: int) -> list[tuple]:
    """The same generation in-process, through Generate, GenerateStream, and the gateway."""
    import torch
    from diffusers import AutoPipelineForText2Image
    from gradio_client import Client

    from services.client import make_request
    from services.core.config import default_cache_dir
    from services.core.models.presets import ensure_tiny

    pipe = AutoPipelineForText2Image.from_pretrained(ensure_tiny(default_cache_dir(os.environ), inpaint=False))
    pipe.set_progress_bar_config(disable=True)
    args = dict(prompt="a red fox", num_inference_steps=20, width=512, height=512)

    def in_process():
        pipe(**args, generator=torch.Generator("cpu").manual_seed(7)).images[0]

    service = Service("txt2img")
    gateway_port = free_port()
    gateway = subprocess.Popen(
        # Saving every image is part of the gateway's work: measured, into a folder of its own.
        [sys.executable, "-m", "gateway_ui", "--port", str(gateway_port), "--txt2img-addr", service.address,
         "--outputs-dir", tempfile.mkdtemp(prefix="imagegen-bench-outputs-")],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        request = make_request("txt2img", "a red fox", steps=20, width=512, height=512, seed=7)
        deadline = time.monotonic() + 120
        while True:
            try:
                gradio = Client(f"http://127.0.0.1:{gateway_port}/", verbose=False)
                break
            except Exception:  # noqa: BLE001 - not up yet
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

        def unary():
            service.client.generate(request)

        def stream():
            for _ in service.client.stream(request):
                pass

        def through_gateway():
            gradio.predict("a red fox", "", 20, 7.5, 512, 512, 7, 1, "model default", api_name="/txt2img")

        # Interleaved rounds, so drift on a shared machine hits every path alike.
        paths = {"in-process diffusers": in_process, "gRPC Generate": unary, "gRPC GenerateStream": stream,
                 "gateway (gradio_client)": through_gateway}
        for fn in paths.values():
            fn()
        samples = {name: [] for name in paths}
        for _ in range(repeats):
            for name, fn in paths.items():
                start = time.perf_counter()
                fn()
                samples[name].append(time.perf_counter() - start)
        medians = {name: statistics.median(values) for name, values in samples.items()}
    finally:
        gateway.send_signal(signal.SIGTERM)
        gateway.wait(30)
        service.stop()
    base = medians["in-process diffusers"]
    targets = {"gRPC Generate": 1.05, "gRPC GenerateStream": 1.05, "gateway (gradio_client)": 1.15}
    rows = []
    for name, seconds in medians.items():
        ratio = seconds / base
        target = targets.get(name)
        verdict = "" if target is None else ("meets" if ratio <= target else "misses") + f" <= {target:.2f}"
        rows.append((f"overhead: {name}", f"{seconds:.3f} s", f"{ratio:.3f}x in-process", verdict))
    return rows


def bench_throughput(clients: int, per_client: int) -> list[tuple]:
    """8 concurrent clients, each sending N requests: batching vs one request at a time."""

    def run(service: Service) -> float:
        return concurrent_rate(service, clients, per_client, uniform_request)[0]

    rates = {}
    for label, args in (("one at a time", ("--max-batch-size", "1")),
                        ("batching (max 8)", ("--max-batch-size", "8", "--batch-wait-ms", "20"))):
        service = Service("txt2img", "--queue-size", str(clients * 2), *args)
        try:
            run(service)  # warm-up round
            rates[label] = statistics.median(run(service) for _ in range(2))
        finally:
            service.stop()
    speedup = rates["batching (max 8)"] / rates["one at a time"]
    rows = [(f"throughput: {label}", f"{rate:.2f} images/s", "", "") for label, rate in rates.items()]
    rows.append(("throughput: batching speedup", "", f"{speedup:.2f}x",
                 ("meets" if speedup >= 1.5 else "misses") + " >= 1.50"))
    return rows


def mixed_request(index: int, n: int, size: int = 256):
    """Real traffic: steps 8-30, guidance 5-9, three schedulers, each client its own prompt and seeds."""
    from services.client import make_request

    return make_request("txt2img", f"prompt {index}-{n}", steps=(8, 14, 20, 30)[(index + n) % 4],
                        guidance_scale=(5.0, 7.0, 9.0)[index % 3], width=size, height=size,
                        scheduler=("euler_a", "dpmpp_2m", "ddim")[(index + 2 * n) % 3], seed=index * 1000 + n)


def uniform_request(index: int, n: int, size: int = 256):
    from services.client import make_request

    return make_request("txt2img", f"prompt {index}-{n}", steps=20, width=size, height=size, seed=index * 1000 + n)


ENGINES = {  # label -> service flags
    "one at a time": ("--engine", "pipeline", "--max-batch-size", "1"),
    "request-level batching": ("--engine", "pipeline", "--max-batch-size", "8", "--batch-wait-ms", "20"),
    "step engine": ("--engine", "step", "--max-batch-size", "8", "--batch-wait-ms", "20"),
}


def bench_engine(clients: int, per_client: int, rounds: int = 2) -> list[tuple]:
    """Mixed and uniform traffic from concurrent clients: the step engine vs request-level batching vs
    one request at a time (throughput, and p50/p95 latency). The three services run side by side and take
    turns, round after round, so a machine that slows down or speeds up during the run (shared CPUs do)
    weighs on all three alike."""
    services = {}
    results: dict[tuple, tuple[float, list[float]]] = {}
    try:
        for label, flags in ENGINES.items():
            services[label] = Service("txt2img", "--queue-size", str(clients * 2), *flags)
        for workload, request_of in (("mixed", mixed_request), ("uniform", uniform_request)):
            for service in services.values():
                concurrent_rate(service, clients, 1, request_of)  # warm-up
            for _round in range(rounds):
                for label, service in services.items():
                    started = time.perf_counter()
                    _rate, latencies = concurrent_rate(service, clients, per_client, request_of)
                    seconds, pooled = results.get((workload, label), (0.0, []))
                    results[workload, label] = (seconds + time.perf_counter() - started, pooled + latencies)
    finally:
        for service in services.values():
            service.stop()
    results = {key: (len(latencies) / seconds, latencies) for key, (seconds, latencies) in results.items()}
    rows = []
    for (workload, label), (rate, latencies) in results.items():
        p95 = statistics.quantiles(latencies, n=20)[-1]
        rows.append((f"engine, {workload}: {label}", f"{rate:.2f} images/s",
                     f"p50 {statistics.median(latencies):.2f} s, p95 {p95:.2f} s", ""))

    def ratio(workload, a, b):
        return results[workload, a][0] / results[workload, b][0]

    def p95(workload, label):
        return statistics.quantiles(results[workload, label][1], n=20)[-1]

    checks = [("mixed: step engine vs one at a time", ratio("mixed", "step engine", "one at a time"), 1.4, ">="),
              ("mixed: step engine vs request-level batching",
               ratio("mixed", "step engine", "request-level batching"), 1.25, ">="),
              ("mixed: p95 latency, step engine vs request-level batching",
               p95("mixed", "step engine") / p95("mixed", "request-level batching"), 0.8, "<="),
              ("uniform: step engine vs request-level batching",
               ratio("uniform", "step engine", "request-level batching"), 0.95, ">=")]
    for name, value, target, sense in checks:
        meets = value >= target if sense == ">=" else value <= target
        rows.append((f"engine, {name}", "", f"{value:.2f}x", f"{'meets' if meets else 'misses'} {sense} {target:.2f}"))
    one, many = unet_row_seconds((2, 2 * clients))
    rows.append((f"engine, the UNet alone: a row's cost in a call of 2 rows (one guided image) vs {2 * clients}",
                 f"{one * 1000:.1f} vs {many * 1000:.1f} ms", f"{one / many:.2f}x",
                 "the most any batching can gain here"))
    return rows


def unet_row_seconds(row_counts: tuple[int, ...], size: int = 256) -> list[float]:
    """The tiny UNet's cost per row in one call of each of these row counts at this image size (fastest of
    ten), in-process."""
    import torch

    from services.core.models.presets import build_tiny_pipeline

    unet = build_tiny_pipeline(False).unet
    costs = []
    for rows in row_counts:
        latents = torch.randn(rows, unet.config.in_channels, size // 8, size // 8)
        embeds = torch.randn(rows, 77, unet.config.cross_attention_dim)
        timesteps = torch.full((rows,), 500)
        best = float("inf")
        with torch.inference_mode():
            for attempt in range(13):
                started = time.perf_counter()
                unet(latents, timesteps, encoder_hidden_states=embeds)
                if attempt >= 3:  # the first calls warm up
                    best = min(best, time.perf_counter() - started)
        costs.append(best / rows)
    return costs


def bench_cold_start(repeats: int) -> list[tuple]:
    times = []
    for _ in range(repeats):
        service = Service("txt2img")
        times.append(service.serving_after)
        service.stop()
    return [("cold start: process start to SERVING (tiny)", f"{statistics.median(times):.2f} s",
             f"min {min(times):.2f} s, max {max(times):.2f} s", "")]


def bench_cancel(repeats: int) -> list[tuple]:
    """Steps run after the client cancels a stream (counted by the service's own metrics)."""
    from services.client import Progress, make_request

    service = Service("txt2img")
    after = []
    try:
        for i in range(repeats):
            call = service.client.stream(make_request("txt2img", "a fox", steps=100, width=512, height=512, seed=i))
            progress = 0
            for event in call:
                if isinstance(event, Progress):
                    progress += 1
                    if progress == 3:
                        break
            before = service.steps_total()
            call.cancel()
            time.sleep(2.0)  # far longer than a step: whatever still runs would be counted
            after.append(service.steps_total() - before)
    finally:
        service.stop()
    worst = max(after)
    return [("cancel: steps run after the client cancels", f"median {statistics.median(after):.0f}",
             f"max {worst:.0f} over {repeats}", ("meets" if worst <= 1 else "misses") + " <= 1")]


def bench_cancel_rows(clients: int = 4) -> list[tuple]:
    """Step engine: UNet rows per call while `clients` requests run, then after one of them cancels."""
    from services.client import Progress, make_request

    service = Service("txt2img", "--engine", "step", "--max-batch-size", "8")
    try:
        calls = [service.client.stream(make_request("txt2img", f"fox {i}", steps=150, width=128, height=128, seed=i))
                 for i in range(clients)]
        for call in calls:
            assert any(isinstance(event, Progress) for event in call)  # all running

        def rows_per_call(calls_wanted: int) -> float:
            rows, count = service.metric("imagegen_step_rows_sum"), service.metric("imagegen_step_rows_count")
            while service.metric("imagegen_step_rows_count") < count + calls_wanted:
                time.sleep(0.005)
            done = service.metric("imagegen_step_rows_count") - count
            return (service.metric("imagegen_step_rows_sum") - rows) / done

        before = rows_per_call(5)
        calls[0].cancel()
        rows_per_call(1)  # the call that may have been running as the cancel arrived
        after = rows_per_call(5)
        for call in calls[1:]:
            call.cancel()
    finally:
        service.stop()
    expected = before * (clients - 1) / clients
    return [(f"cancel: step engine rows per UNet call, {clients} requests then one cancels",
             f"{before:.1f} -> {after:.1f}", "from the next step", ("meets" if after <= expected else "misses")
             + f" <= {expected:.1f}")]


def bench_previews(clients: int, per_client: int) -> list[tuple]:
    """The step engine streaming mixed traffic with previews every 2 steps vs none."""
    service = Service("txt2img", "--engine", "step", "--max-batch-size", "8", "--queue-size", str(clients * 2))
    rates = {}
    try:
        for every in (0, 2, 0, 2):  # interleaved, so a drift of the machine hits both
            def request_of(i, n, every=every):
                request = mixed_request(i, n)
                request.params.preview_every = every
                return request

            rate, _latencies = concurrent_rate(service, clients, per_client, request_of, stream=True)
            rates.setdefault(every, []).append(rate)
    finally:
        service.stop()
    ratio = max(rates[2]) / max(rates[0])
    return [(f"previews: step engine, mixed, {clients} clients streaming, every 2 steps vs none",
             f"{max(rates[2]):.2f} vs {max(rates[0]):.2f} images/s", f"{ratio:.2f}x",
             ("meets" if ratio >= 0.95 else "misses") + " >= 0.95")]


def concurrent_rate(service: Service, clients: int, per_client: int, request_of,
                    stream: bool = False) -> tuple[float, list[float]]:
    """Images per second with `clients` threads each sending `per_client` requests; and the latencies.
    stream: through GenerateStream (every event read), else Generate."""
    from services.client import Result

    errors, latencies = [], []

    def client_loop(index: int):
        for n in range(per_client):
            started = time.perf_counter()
            try:
                if stream:
                    reply = [e for e in service.client.stream(request_of(index, n)) if isinstance(e, Result)][0]
                else:
                    reply = service.client.generate(request_of(index, n))
                latencies.append(time.perf_counter() - started)
                assert len(reply.images) >= 1
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

    start = time.perf_counter()
    threads = [threading.Thread(target=client_loop, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise RuntimeError(f"{len(errors)} requests failed: {errors[0]}")
    return clients * per_client / elapsed, latencies


def bench_gpu() -> list[tuple]:
    """sd15 (real SD 1.5 sizes, random weights) in float16: in-process, and served to 1-16 clients."""
    import torch

    if not torch.cuda.is_available():
        return [("sd15 on GPU", "skipped: no CUDA device", "", "")]
    from services.core.models.presets import build_sd15_pipeline

    name = torch.cuda.get_device_name(0)
    pipe = build_sd15_pipeline(False, "cuda:0", torch.float16)
    pipe.set_progress_bar_config(disable=True)

    def run(batch: int) -> float:
        generator = [torch.Generator("cpu").manual_seed(i) for i in range(batch)]
        torch.cuda.synchronize()
        start = time.perf_counter()
        pipe(["a red fox"] * batch, num_inference_steps=20, width=512, height=512, generator=generator)
        torch.cuda.synchronize()
        return time.perf_counter() - start

    run(1)
    one = statistics.median(run(1) for _ in range(3))
    run(8)
    eight = statistics.median(run(8) for _ in range(3))
    pipe.to("cpu")  # the GPU's memory is the services' now
    torch.cuda.empty_cache()
    rows = [(f"sd15 fp16 512x512 20 steps, batch 1 ({name})", f"{20 / one:.2f} it/s", f"{one:.2f} s/image", ""),
            (f"sd15 fp16 512x512 20 steps, batch 8 ({name})", f"{8 / eight:.2f} images/s",
             f"{(8 / eight) / (1 / one):.2f}x batch 1", "")]

    for engine in ("pipeline", "step"):
        service = Service("txt2img", "--device", "cuda:0", "--max-batch-size", "8", "--queue-size", "64",
                          "--engine", engine, model="sd15")
        try:
            request = uniform_request(0, 0, 512)
            service.client.generate(request)
            served = statistics.median(timed(lambda: service.client.generate(request)) for _ in range(3))
            rows.append((f"sd15 served: gRPC Generate, 1 request, engine {engine} ({name})", f"{served:.2f} s",
                         f"{served / one:.3f}x in-process", ""))
            for label, request_of in (("uniform", uniform_request), ("mixed", mixed_request)):
                for clients in (1, 4, 8, 16):
                    calls, rows_in = service.metric("imagegen_step_rows_count"), service.metric("imagegen_step_rows_sum")
                    rate, latencies = concurrent_rate(service, clients, 2, lambda i, n: request_of(i, n, 512))
                    p95 = statistics.quantiles(latencies, n=20)[-1] if len(latencies) >= 2 else latencies[0]
                    calls = service.metric("imagegen_step_rows_count") - calls
                    per_call = f", {(service.metric('imagegen_step_rows_sum') - rows_in) / calls:.1f} rows/call" \
                        if calls else ""
                    rows.append((f"sd15 served, {label} 512x512, {clients} clients, engine {engine} ({name})",
                                 f"{rate:.2f} images/s",
                                 f"p50 {statistics.median(latencies):.2f} s, p95 {p95:.2f} s{per_call}", ""))
        finally:
            service.stop()
    return rows


def noise_png(size: int) -> bytes:
    """Random pixels: PNG cannot compress them, so the upload is as big as the size allows (50 MB at 4096)."""
    import io

    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG", compress_level=1)
    return out.getvalue()


def bench_probe(uploads: int = 40, size: int = 4096) -> list[tuple]:
    """Health on the probe port (its own process) and on --port while `uploads` inputs of size x size
    arrive at once, timed by a process of its own."""
    from services.client import ImageGenClient, make_request

    probe_port = free_port()
    service = Service("img2img", "--health-port", str(probe_port), "--warmup", "false")
    big = make_request("img2img", "a red fox", steps=2, width=64, height=64, seed=7, image=noise_png(size))
    prober = subprocess.Popen(
        [sys.executable, "-m", "bench.health_prober", f"127.0.0.1:{probe_port}", service.address],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    outcomes = []

    def upload():
        with ImageGenClient("img2img", service.address, retries=0, timeout=600) as client:
            try:
                client.generate(big)
                outcomes.append("OK")
            except Exception as exc:  # noqa: BLE001 - "busy" (or any other) still counts as arrived
                outcomes.append(type(exc).__name__)

    try:
        assert prober.stdout.readline().strip() == "ready"
        time.sleep(1.0)  # a few quiet answers first
        callers = [threading.Thread(target=upload) for _ in range(uploads)]
        for caller in callers:
            caller.start()
        for caller in callers:
            caller.join()
        out, _ = prober.communicate("", timeout=120)
    finally:
        if prober.poll() is None:
            prober.kill()
        service.stop()
    answers = json.loads(out.splitlines()[-1])
    rows = []
    for label, address in (("probe port", f"127.0.0.1:{probe_port}"), ("--port", service.address)):
        took = [seconds for seconds, _status in answers[address]]
        wrong = sum(status != "SERVING" for _seconds, status in answers[address])
        worst = max(took)
        detail = f"median {statistics.median(took) * 1000:.0f} ms over {len(took)}"
        detail += f", {wrong} not SERVING" if wrong else ""
        target = ("meets" if worst < 1.0 and not wrong else "misses") + " < 1 s, all SERVING"
        rows.append((f"health on the {label} during {uploads} uploads of {size}x{size}", f"worst {worst:.2f} s",
                     detail, target if label == "probe port" else ""))
    rows.append(("uploads answered", f"{len(outcomes)} of {uploads}",
                 ", ".join(f"{outcomes.count(kind)} {kind}" for kind in sorted(set(outcomes))), ""))
    return rows


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def save_report(report: str, stamp, tag: str) -> None:
    """Print a results report and keep it as bench/results/<stamp>-<tag>.md."""
    print(report)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{stamp:%Y%m%d-%H%M%S}-{tag}.md"
    out.write_text(report)
    print(f"written to {out.relative_to(ROOT)}")


def markdown_table(rows: list[tuple]) -> str:
    """The results' table: measure, value, ratio or detail, target; columns padded to their widest cell."""
    header = ("measure", "value", "ratio / detail", "target")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(4)]

    def line(cells):
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"

    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return (f"{platform.node()}: {cpu}, {os.cpu_count()} cores, GPU {gpu}; Python {platform.python_version()}, "
            f"torch {torch.__version__}, {torch.get_num_threads()} torch threads")


def main(argv=None) -> int:
    from bench.controlnet import bench_controlnet  # they import this module's Service
    from bench.hires import bench_hires
    from bench.loop_overhead import bench_loop
    from bench.models import bench_models

    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--per-client", type=int, default=3)
    parser.add_argument("--sections",
                        default="overhead,throughput,engine,loop,models,controlnet,hires,previews,cold start,cancel,probe,gpu",
                        help="comma-separated sections to run (default: all), e.g. --sections gpu")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

    sections = [
        ("overhead", lambda: bench_overhead(args.repeats)),
        ("throughput", lambda: bench_throughput(args.clients, args.per_client)),
        ("engine", lambda: bench_engine(args.clients, args.per_client)),
        ("loop", lambda: bench_loop(args.repeats)),
        ("models", lambda: bench_models(args.clients, args.per_client, args.repeats)),
        ("controlnet", lambda: bench_controlnet(args.clients, args.per_client, args.repeats)),
        ("hires", lambda: bench_hires(args.repeats)),
        ("previews", lambda: bench_previews(args.clients, 2)),
        ("cold start", lambda: bench_cold_start(3)),
        ("cancel", lambda: bench_cancel(args.repeats) + bench_cancel_rows()),
        ("probe", bench_probe),
        ("gpu", bench_gpu),
    ]
    wanted = {name.strip() for name in args.sections.split(",")}
    unknown = wanted - {name for name, _run in sections}
    if unknown:
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")
    sections = [(name, run) for name, run in sections if name in wanted]
    rows = []
    for name, run in sections:
        print(f"bench: {name}...", file=sys.stderr, flush=True)
        try:
            found = run()
        except Exception as exc:  # noqa: BLE001 - one broken section must not lose the others' results
            found = [(f"{name}: failed", f"{type(exc).__name__}: {exc}"[:80], "", "")]
        for row in found:
            print("bench:", " | ".join(map(str, row)), file=sys.stderr, flush=True)
        rows += found

    stamp = datetime.now(timezone.utc)
    table = markdown_table(rows)
    notes = {
        "overhead": f"overhead: tiny model, 512x512, 20 steps, seed 7, median of {args.repeats}",
        "throughput": f"throughput: tiny model, {args.clients} clients x {args.per_client} requests, 256x256, 20 steps",
        "engine": f"engine: tiny model, {args.clients} clients x {args.per_client} requests, twice, the three services "
                  "taking turns, 256x256; mixed = steps "
                  "8-30, guidance 5-9, three schedulers; uniform = 20 steps, the model's scheduler",
        "loop": f"loop: in-process, tiny model, txt2img 64x64, DPM++ 2M, guidance 7.5, one request of n images; "
                f"median over 10 steps and {args.repeats} alternating runs, the UNet call timed and subtracted",
        "probe": "probe: img2img, 40 concurrent 4096x4096 uploads of noise (~50 MB each), health timed "
                 "by a process of its own on both ports",
        "models": f"models: two tiny checkpoints of different seeds in one --models-dir; switch = "
                  f"ModelPool.get, median of {args.repeats}; crowds: {args.clients} clients x "
                  f"{args.per_client} requests, twice, 256x256, 20 steps, the two services taking turns",
        "controlnet": f"controlnet: tiny model and the sample tiny ControlNet, 256x256, 20 steps; a step: median over "
                      f"{args.repeats} requests alone, alternating; crowds: {args.clients} clients x {args.per_client} requests, "
                      "twice, taking turns (best of two)",
        "hires": f"hires: tiny model, txt2img, 20 steps, plain 512x512 against 256x256 with a 2x latent second pass "
                 f"(strength 0.7, 20 hires steps), median of {args.repeats}, alternating",
        "gpu": "gpu: the sd15 preset (SD 1.5 sizes, random weights) in float16, 512x512; served: 2 requests per "
               "client, uniform = same steps/guidance/scheduler, mixed = steps 8-30, guidance 5-9, three schedulers",
    }
    described = "; ".join(text for name, text in notes.items() if name in wanted)
    report = (f"# imagegen benchmark, {stamp:%Y-%m-%d %H:%M} UTC\n\n{machine()}\n\n"
              f"{described}.\n\n{table}\n")
    save_report(report, stamp, platform.node() or 'host')
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
