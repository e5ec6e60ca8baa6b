"""Health, reflection, queueing, cancellation, deadlines and transport limits on real channels."""

from __future__ import annotations

import time

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
from grpc_status import rpc_status

from imagegen.v1.contract import MODES
from services.client import ImageGenClient, Progress, Queued, QueueFull, Result
from tests.conftest import RunningService, png, request_for, wait_for


def health_status(channel, service: str) -> str:
    reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)



@pytest.mark.parametrize("mode", ["txt2img", "img2img", "inpaint"])
def test_health_goes_not_serving_to_serving(mode):
    service = RunningService(mode, load=False)
    try:
        channel = service.client.channel
        assert health_status(channel, "") == "NOT_SERVING"
        assert health_status(channel, MODES[mode].full_service_name) == "NOT_SERVING"
        with pytest.raises(grpc.RpcError) as err:
            service.client.generate(request_for(mode))
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "loading" in err.value.details()
        service.runtime.load()  # loads and runs the warm-up generation
        assert service.steps_run > 0
        assert health_status(channel, "") == "SERVING"
        assert health_status(channel, MODES[mode].full_service_name) == "SERVING"
        assert len(service.client.generate(request_for(mode)).images) == 1
    finally:
        service.stop()


def test_reflection_lists_the_service_and_health(service):
    db = ProtoReflectionDescriptorDatabase(service.client.channel)
    names = set(db.get_services())
    assert MODES[service.mode].full_service_name in names
    assert "grpc.health.v1.Health" in names
    descriptor = db.FindFileContainingSymbol(MODES[service.mode].full_service_name)
    assert descriptor.package == "imagegen.v1"


def test_cancelled_stream_stops_the_work_early(services):
    service = services["txt2img"]
    before = service.steps_run
    call = service.client.stream(request_for("txt2img", steps=150, width=256, height=256))
    for event in call:
        if isinstance(event, Progress):
            call.cancel()
            break
    assert service.runtime.queue.wait_idle(30)
    ran = service.steps_run - before
    assert ran < 10, f"{ran} steps ran after cancelling a 150-step request"


def test_passed_deadline_stops_the_work(services):
    service = services["txt2img"]
    before = service.steps_run
    with pytest.raises(grpc.RpcError) as err:
        service.client.generate(request_for("txt2img", steps=150, width=256, height=256), timeout=0.5)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert service.runtime.queue.wait_idle(30)
    assert service.steps_run - before < 100


def test_cancelled_queued_request_leaves_the_queue_and_others_finish(services):
    service = services["txt2img"]
    running = service.client.stream(request_for("txt2img", steps=40, width=128, height=128))
    assert isinstance(next(running), Queued)
    assert wait_for(lambda: bool(service.engine.current))
    queued = service.client.stream(request_for("txt2img", steps=40))
    first = next(queued)
    assert first.position == 0  # next to run, behind the running one
    assert service.runtime.queue.depth == 1
    queued.cancel()
    assert wait_for(lambda: service.runtime.queue.depth == 0)
    events = list(running)
    assert isinstance(events[-1], Result)


def test_queue_positions_count_down(services):
    service = services["txt2img"]
    running = service.client.stream(request_for("txt2img", steps=15, width=128, height=128))
    next(running)
    assert wait_for(lambda: bool(service.engine.current))
    second = service.client.stream(request_for("txt2img", steps=5))
    assert next(second).position == 0
    third = service.client.stream(request_for("txt2img", steps=6))  # not batchable with the second
    events = list(third)
    positions = [e.position for e in events if isinstance(e, Queued)]
    assert positions == [1, 0]
    assert isinstance(events[-1], Result)
    assert isinstance(list(running)[-1], Result) and isinstance(list(second)[-1], Result)


def test_full_queue_is_resource_exhausted_at_once_with_a_retry_hint():
    service = RunningService("txt2img", "--queue-size", "1")
    no_retry = ImageGenClient("txt2img", service.address, retries=0)
    try:
        running = service.client.stream(request_for("txt2img", steps=100, width=128, height=128))
        next(running)
        assert wait_for(lambda: bool(service.engine.current))
        waiting = service.client.stream(request_for("txt2img"))
        next(waiting)
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as err:
            no_retry.generate(request_for("txt2img"))
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "queue is full" in err.value.details()
        assert time.monotonic() - started < 5
        assert isinstance(err.value, QueueFull)
        hint = err.value.retry_after_s
        assert hint is not None and 0.1 <= hint <= 30
        retry_info = error_details_pb2.RetryInfo()
        assert any(d.Unpack(retry_info) for d in rpc_status.from_call(err.value).details)
        assert retry_info.retry_delay.ToMilliseconds() == int(hint * 1000)
        running.cancel()
        assert isinstance(list(waiting)[-1], Result)
    finally:
        no_retry.close()
        service.stop()


def test_client_retries_a_full_queue_with_backoff_and_gets_its_images():
    service = RunningService("txt2img", "--queue-size", "1", "--max-batch-size", "1")
    try:
        running = service.client.stream(request_for("txt2img", steps=30, width=128, height=128))
        next(running)
        assert wait_for(lambda: bool(service.engine.current))
        waiting = service.client.stream(request_for("txt2img", steps=30, width=128, height=128))
        next(waiting)
        patient = ImageGenClient("txt2img", service.address, retries=8, backoff_s=0.2, timeout=120)
        reply = patient.generate(request_for("txt2img"))
        assert len(reply.images) == 1
        refused = service.metric("imagegen_requests_total", method="Generate", code="RESOURCE_EXHAUSTED")
        assert refused >= 1  # it was refused at least once, then retried
        patient.close()
    finally:
        service.stop()


def test_oversized_message_is_refused_by_the_transport_and_service_keeps_serving():
    service = RunningService("img2img", "--max-message-mb", "1", "--warmup", "false")
    try:
        big = png((1024, 1024))  # about 3 MiB of noise
        with pytest.raises(grpc.RpcError) as err:
            service.client.generate(request_for("img2img", image=big))
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert len(service.client.generate(request_for("img2img")).images) == 1
    finally:
        service.stop()


def test_default_transport_limit_takes_a_2048_png_in_and_out():
    from services.core.config import Limits

    # Worst case: two incompressible 2048x2048 RGBA PNGs (an inpaint request) plus the envelope.
    worst_png = 2048 * 2048 * 4 + 2048 * 64
    assert Limits().max_message_bytes > 2 * worst_png
