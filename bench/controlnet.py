"""`make bench`'s controlnet section: what a ControlNet unit adds to a step, and what a crowd where half the
requests carry one costs against the same crowd without.

The ControlNet is the sample tiny one (presets.SAMPLE_CONTROLNETS), on the tiny model, at 256x256: its cost
against the UNet's is about a real ControlNet's against SD 1.5's UNet (its encoder half and a small image
embedding). A step's cost is the service's own imagegen_step_seconds (sum over count) while one request
runs alone, requests with and without a unit alternating (the median of each).
"""

from __future__ import annotations

import os
import statistics

from bench.run import Service, concurrent_rate, uniform_request

CONTROLNET = "tiny-controlnet"


def with_unit(request):
    from imagegen.v1 import imagegen_pb2 as pb
    from services.core.imaging import images

    size = request.params.width or 256
    request.params.control.add(model=CONTROLNET, image=pb.Image(data=images.solid_png((size, size))))
    return request


def half_with_units(index: int, n: int):
    request = uniform_request(index, n)
    return with_unit(request) if index % 2 else request


def step_seconds(service: Service, request) -> float:
    """The mean seconds of a step-engine call while this one request runs alone."""
    calls, seconds = service.metric("imagegen_step_seconds_count"), service.metric("imagegen_step_seconds_sum")
    service.client.generate(request)
    return ((service.metric("imagegen_step_seconds_sum") - seconds)
            / (service.metric("imagegen_step_seconds_count") - calls))


def bench_controlnet(clients: int, per_client: int, repeats: int) -> list[tuple]:
    from services.core.config import default_cache_dir
    from services.core.models.presets import ensure_sample_controlnets

    folder = ensure_sample_controlnets(default_cache_dir(os.environ))
    service = Service("txt2img", "--engine", "step", "--controlnet-dir", str(folder), "--queue-size",
                      str(clients * 2), "--max-batch-size", "8", "--batch-wait-ms", "20")
    try:
        service.client.generate(with_unit(uniform_request(0, 0)))  # warm-up, the ControlNet loaded
        plain, steered = [], []
        for n in range(repeats):  # alternating, medians: a shared machine's pauses weigh on both alike
            plain.append(step_seconds(service, uniform_request(0, n)))
            steered.append(step_seconds(service, with_unit(uniform_request(0, n))))
        plain, steered = statistics.median(plain), statistics.median(steered)
        rates = {"none": [], "half": []}
        for _round in range(2):  # taking turns, so a machine that changes speed weighs on both alike
            rates["none"].append(concurrent_rate(service, clients, per_client, uniform_request)[0])
            rates["half"].append(concurrent_rate(service, clients, per_client, half_with_units)[0])
    finally:
        service.stop()
    none, half = max(rates["none"]), max(rates["half"])
    return [
        ("controlnet: a step with one unit vs none (one request, 256x256, guided)",
         f"{steered * 1000:.1f} vs {plain * 1000:.1f} ms", f"{steered / plain:.2f}x", "a unit's own cost"),
        (f"controlnet: crowd of {clients} clients, half with a unit vs none",
         f"{half:.2f} vs {none:.2f} images/s", f"{half / none:.2f}x",
         "rows without a unit pay nothing: about the half's share"),
    ]
