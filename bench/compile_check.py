"""The GPU check of --compile (bench/gpu_check.sh runs it on the card), in one run:

- in-process diffusers (the model's own pipeline), batch 1 and 8: it/s;
- the step engine served uncompiled and compiled (--compile): one request's time, then 1/4/8/16 clients
  of uniform and of mixed traffic: images/s (and p95 latency);
- the compiled service's graph count, warm-up (its time to SERVING, beside the uncompiled one's),
  recompiles while serving and calls run uncompiled;
and writes bench/results/<date>-<card>.md with the issue's targets marked meets / misses.

The model: $BENCH_MODEL (a local diffusers folder of SD 1.5), else the sd15 preset (SD 1.5's sizes,
random weights, no download), in float16, 512x512, 20 steps. `--dry` runs the same script on the CPU with
the tiny model at 64x64 (two buckets, 1 and 4 clients) in a few minutes: it checks the script, not speed.

The compiled service starts first and compiles while the in-process and uncompiled numbers are taken
(compiling is CPU work; it shares the card only for its warm-up calls), so the whole check fits in six
minutes; its time to SERVING is an upper bound of warm-up.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from bench.run import (Service, concurrent_rate, machine, markdown_table, mixed_request, save_report, timed,
                       uniform_request)

STEPS = 20  # uniform_request's


def card() -> str:
    import torch

    if not torch.cuda.is_available():
        return "cpu"
    return torch.cuda.get_device_name(0).split()[-1].lower()


def in_process(model: str, device: str, dtype, size: int, steps: int, dry: bool) -> tuple[float, float]:
    """Seconds of one image and of a batch of 8 (median of 3, after one warm-up each), in this process."""
    import torch

    if model == "sd15":
        from services.core.models.presets import build_sd15_pipeline

        pipe = build_sd15_pipeline(False, device, dtype)
    else:
        from diffusers import StableDiffusionPipeline

        pipe = StableDiffusionPipeline.from_pretrained(model, torch_dtype=dtype, safety_checker=None).to(device)
    pipe.set_progress_bar_config(disable=True)

    def run(batch: int) -> float:
        generator = [torch.Generator("cpu").manual_seed(i) for i in range(batch)]
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        pipe(["a red fox"] * batch, num_inference_steps=steps, width=size, height=size, generator=generator)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - start

    times = []
    for batch in (1, 8):
        run(batch)
        times.append(statistics.median(run(batch) for _ in range(1 if dry else 3)))
    pipe.to("cpu")  # the card's memory is the services' now
    del pipe
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return times[0], times[1]


def served(service: Service, size: int, clients_list, label: str, rows: list, rates: dict) -> float:
    """One request's median time, then each crowd's images/s (into `rates` by (label, traffic, clients))."""
    request = uniform_request(0, 0, size)
    service.client.generate(request)
    one = statistics.median(timed(lambda: service.client.generate(request)) for _ in range(3))
    rows.append((f"{label}: one request", f"{one:.2f} s", f"{STEPS / one:.2f} it/s", ""))
    for traffic, request_of in (("uniform", uniform_request), ("mixed", mixed_request)):
        for clients in clients_list:
            rate, latencies = concurrent_rate(service, clients, 1, lambda i, n: request_of(i, n, size))
            p95 = statistics.quantiles(latencies, n=20)[-1] if len(latencies) >= 2 else latencies[0]
            rates[label, traffic, clients] = rate
            rows.append((f"{label}: {traffic}, {clients} clients", f"{rate:.2f} images/s",
                         f"p50 {statistics.median(latencies):.2f} s, p95 {p95:.2f} s", ""))
            print("compile check:", rows[-1], file=sys.stderr, flush=True)
    return one


def check(name: str, value: float, target: float, sense: str) -> tuple:
    meets = value >= target if sense == ">=" else value <= target
    return (name, "", f"{value:.2f}x", f"{'meets' if meets else 'misses'} {sense} {target:.2f}")


def main(argv=None) -> int:
    import torch

    parser = argparse.ArgumentParser(prog="python -m bench.compile_check", description=__doc__.split("\n")[0])
    parser.add_argument("--dry", action="store_true", help="the tiny model on the CPU: checks the script runs")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    cuda = torch.cuda.is_available() and not args.dry
    device = "cuda:0" if cuda else "cpu"
    model = os.environ.get("BENCH_MODEL") or ("sd15" if cuda else "tiny")
    size, clients_list = (512, (1, 4, 8, 16)) if cuda else (64, (1, 4))
    buckets = "2,4,8,16" if cuda else "2,4"  # --max-batch-size 8: 16 guided rows at most; every mixed row is guided
    common = ["--device", device, "--engine", "step", "--max-batch-size", "8", "--queue-size", "64",
              "--default-size", str(size), "--batch-wait-ms", "20"]
    cache = Path(os.environ.get("BENCH_COMPILE_CACHE") or Path.home() / ".cache" / "imagegen" / "compile-bench")
    rows: list[tuple] = []
    rates: dict = {}
    started = time.monotonic()
    print(f"compile check: {model} on {device}, starting the compiled service", file=sys.stderr, flush=True)
    compiled = Service("txt2img", *common, "--compile", "--compile-buckets", buckets, "--compile-cache-dir",
                       str(cache), model=model, wait=False)
    try:
        dtype = torch.float16 if cuda else torch.float32
        source = model if model != "tiny" else str(_tiny())
        one, eight = in_process(source, device, dtype, size, STEPS if cuda else 4, args.dry)
        steps = STEPS if cuda else 4
        rows += [("in-process diffusers, batch 1", f"{steps / one:.2f} it/s", f"{one:.2f} s/image", ""),
                 ("in-process diffusers, batch 8", f"{8 * steps / eight:.2f} image-steps/s",
                  f"{(8 / eight) / (1 / one):.2f}x batch 1", "")]
        eager = Service("txt2img", *common, model=model)
        try:
            eager_one = served(eager, size, clients_list, "step engine", rows, rates)
            eager_serving = eager.serving_after
        finally:
            eager.stop()
        compiled.wait_until_serving(within_s=900)  # compiling from an empty cache: minutes
        compiled_serving = compiled.serving_after
        graphs = {part: compiled.metric(f"imagegen_{part}_compiled_graphs_total") for part in ("unet", "vae")}
        compiled_one = served(compiled, size, clients_list, "step engine --compile", rows, rates)
        recompiles = sum(compiled.metric(f"imagegen_{part}_recompiles_total") for part in ("unet", "vae"))
        uncompiled_calls = {part: sum(compiled.metrics_matching(f"imagegen_{part}_eager_calls_total"))
                            for part in ("unet", "vae")}
    finally:
        compiled.stop()
    most = clients_list[-1]
    rows += [("compiled: graphs made (buckets " + buckets + " rows), UNet and VAE decode",
              f"{graphs['unet']:.0f} + {graphs['vae']:.0f}", "", ""),
             ("compiled: time to SERVING (warm-up, beside the measurements above)", f"{compiled_serving:.1f} s",
              f"uncompiled {eager_serving:.1f} s", ""),
             ("compiled: recompiles while serving (UNet and VAE decode)", f"{recompiles:.0f}", "", "expected 0"),
             ("compiled: UNet calls run uncompiled", f"{uncompiled_calls['unet']:.0f}", "", "expected 0"),
             ("compiled: VAE decodes run uncompiled", f"{uncompiled_calls['vae']:.0f}", "",
              "more images at once than the largest bucket"),
             check("one request, step engine vs in-process", eager_one / (one * STEPS / steps), 1.05, "<="),
             check("one request it/s, compiled vs in-process batch 1", (one * STEPS / steps) / compiled_one, 1.6, ">="),
             check(f"uniform {most} clients, compiled vs uncompiled engine",
                   rates["step engine --compile", "uniform", most] / rates["step engine", "uniform", most], 1.3, ">="),
             check(f"compiled, mixed vs uniform at {most} clients",
                   rates["step engine --compile", "mixed", most] / rates["step engine --compile", "uniform", most],
                   0.95, ">=")]
    if args.dry:
        rows.append(("dry run (tiny model on the CPU)", "", "", "the targets are for the GPU"))
    write(rows, model, size, buckets, time.monotonic() - started, args.dry)
    return 0


def _tiny() -> Path:
    from services.core.config import default_cache_dir
    from services.core.models.presets import ensure_tiny

    return ensure_tiny(default_cache_dir(os.environ), False)


def write(rows: list[tuple], model: str, size: int, buckets: str, seconds: float, dry: bool) -> None:
    stamp = datetime.now(timezone.utc)
    table = markdown_table(rows)
    report = (f"# imagegen --compile check, {stamp:%Y-%m-%d %H:%M} UTC\n\n{machine()}\n\n"
              f"{model}, {size}x{size}, {'4' if dry else STEPS} steps in-process; served: txt2img, step engine, "
              f"--max-batch-size 8, --compile-buckets {buckets}; one request per client; uniform = 20 steps, the "
              f"model's scheduler; mixed = steps 8-30, guidance 5-9, three schedulers. Took {seconds:.0f} s.\n\n"
              f"{table}\n")
    save_report(report, stamp, card() if not dry else 'cpu-dry')


if __name__ == "__main__":
    raise SystemExit(main())
