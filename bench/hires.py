"""`make bench`'s hires section: what a hires-fix request costs against a plain one of the same final size.

Tiny model, txt2img, 20 steps: plain 512x512 against 256x256 with a 2x latent second pass (strength 0.7,
20 hires steps, so 20 steps at 256 and 20 at 512), each alone, alternating (the median of each).
"""

from __future__ import annotations

import statistics
import time

from bench.run import Service


def _request(hires: bool, seed: int):
    from imagegen.v1 import imagegen_pb2 as pb
    from services.client import make_request

    size = 256 if hires else 512
    request = make_request("txt2img", "a lighthouse at dusk", steps=20, width=size, height=size, seed=seed)
    if hires:
        request.hires.CopyFrom(pb.HiresFix(scale=2, upscaler="Latent", denoising_strength=0.7))
    return request


def _seconds(service: Service, request) -> float:
    started = time.perf_counter()
    service.client.generate(request)
    return time.perf_counter() - started


def bench_hires(repeats: int) -> list[tuple]:
    service = Service("txt2img", "--engine", "step")
    try:
        _seconds(service, _request(True, 0))  # warm-up at both sizes
        plain, hires = [], []
        for n in range(repeats):
            plain.append(_seconds(service, _request(False, n)))
            hires.append(_seconds(service, _request(True, n)))
    finally:
        service.stop()
    plain, hires = statistics.median(plain), statistics.median(hires)
    return [("hires: 256 -> 2x latent second pass vs plain 512x512 (one request, 20 + 20 steps)",
             f"{hires:.2f} vs {plain:.2f} s", f"{hires / plain:.2f}x",
             "about 1.25x: a quarter-size first pass, then the same 20 steps at 512")]
