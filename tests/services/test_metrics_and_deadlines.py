"""Prometheus metrics over HTTP, and deadlines that cannot be met refused before any compute."""

from __future__ import annotations

import threading
import time
import urllib.request

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from services.client import DeadlineExceeded
from tests.conftest import RunningService, png, request_for, wait_for


def scrape(port: int) -> dict:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)



@pytest.fixture(scope="module")
def service():
    running = RunningService("txt2img", "--max-batch-size", "4")
    port = running.runtime.metrics.start_http("127.0.0.1", 0)
    running.metrics_port = port
    yield running
    running.runtime.metrics.stop_http()
    running.stop()


def test_metrics_count_requests_by_code_and_time_them(service):
    service.client.generate(request_for("txt2img"))
    list(service.client.stream(request_for("txt2img")))
    with pytest.raises(grpc.RpcError):
        service.client.generate(request_for("txt2img", width=12))
    samples = scrape(service.metrics_port)
    assert value(samples, "imagegen_requests_total", mode="txt2img", method="Generate", code="OK") >= 1
    assert value(samples, "imagegen_requests_total", mode="txt2img", method="GenerateStream", code="OK") >= 1
    assert value(samples, "imagegen_requests_total", mode="txt2img", method="Generate",
                 code="INVALID_ARGUMENT") >= 1
    assert value(samples, "imagegen_request_duration_seconds_count", mode="txt2img", method="Generate") >= 2
    assert value(samples, "imagegen_queue_wait_seconds_count", mode="txt2img") >= 2
    assert value(samples, "imagegen_batch_size_count", mode="txt2img") >= 2
    assert value(samples, "imagegen_denoising_steps_total", mode="txt2img") >= 8
    assert value(samples, "imagegen_denoising_steps_per_second", mode="txt2img") > 0
    assert value(samples, "imagegen_images_generated_total", mode="txt2img") >= 2
    assert ("imagegen_queue_depth", (("mode", "txt2img"),)) in samples


def test_queue_depth_gauge_follows_the_queue(service):
    running = service.client.stream(request_for("txt2img", steps=60, width=256, height=256))
    next(running)
    assert wait_for(lambda: bool(service.engine.current))
    waiting = [service.client.stream(request_for("txt2img", steps=s)) for s in (3, 4)]  # not batchable
    for call in waiting:
        next(call)
    assert value(scrape(service.metrics_port), "imagegen_queue_depth", mode="txt2img") == 2
    assert value(scrape(service.metrics_port), "imagegen_requests_in_progress", mode="txt2img") == 3
    running.cancel()
    for call in waiting:
        list(call)
    assert wait_for(lambda: value(scrape(service.metrics_port), "imagegen_queue_depth", mode="txt2img") == 0)


def test_a_deadline_that_cannot_be_met_is_refused_before_compute(service):
    service.client.generate(request_for("txt2img"))  # the estimator has seen work
    before = service.steps_run
    with pytest.raises(grpc.RpcError) as err:
        service.client.generate(request_for("txt2img", steps=150, width=512, height=512, num_images=8), timeout=0.5)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "cannot be met" in err.value.details()  # refused by the service, not timed out by the client
    assert service.steps_run == before


def test_a_deadline_that_can_be_met_is_not_refused(service):
    # Warm the estimator on this very size, then ask with plenty of time.
    service.client.generate(request_for("txt2img", steps=10, width=128, height=128))
    reply = service.client.generate(request_for("txt2img", steps=10, width=128, height=128), timeout=30)
    assert len(reply.images) == 1


def not_refused(call) -> bool:
    """True unless the service refused the call up front as one whose deadline it cannot meet."""
    try:
        call()
    except DeadlineExceeded as err:
        return not err.refused  # the deadline passed while it ran: admitted, so not refused
    return True


def test_after_a_burst_of_large_requests_a_small_one_with_time_to_spare_is_admitted():
    service = RunningService("img2img", "--warmup", "false")  # its own estimator, fresh
    try:
        for _ in range(3):
            service.client.generate(request_for("img2img", image=png((256, 256)), steps=20, num_images=2))
        reply = service.client.generate(request_for("img2img", steps=10, strength=0.8), timeout=30)
        assert len(reply.images) == 1
    finally:
        service.stop()


def test_after_many_one_step_requests_a_longer_one_is_not_refused():
    service = RunningService("txt2img", "--warmup", "false")
    try:
        for seed in range(16):
            service.client.generate(request_for("txt2img", steps=1, width=256, height=256, seed=seed))
        longer = request_for("txt2img", steps=20, width=256, height=256)
        started = time.monotonic()
        service.client.generate(longer)
        took = time.monotonic() - started
        assert not_refused(lambda: service.client.generate(longer, timeout=1.5 * took + 0.2))
    finally:
        service.stop()


def test_a_storm_of_small_requests_with_deadlines_is_admitted(services):
    service, refused = services["txt2img"], []

    def client_loop(index: int):
        for n in range(4):
            call = lambda: service.client.generate(request_for("txt2img", seed=index * 10 + n), timeout=5)  # noqa: E731
            if not not_refused(call):
                refused.append(index)

    threads = [threading.Thread(target=client_loop, args=(i,)) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not refused, f"{len(refused)} of 48 small requests refused"
