"""Request-level batching (the pipeline engine): same images as alone, per-member events, cancellation
inside a batch. The step engine's own sharing is tested in test_engine.py."""

from __future__ import annotations

import io
import threading

import grpc
import numpy as np
import pytest
from PIL import Image

from services.client import Progress, Queued, Result
from tests.conftest import RunningService, box_mask, png, request_for


def pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.int16)



@pytest.fixture(scope="module", params=["txt2img", "img2img", "inpaint"])
def batching(request):
    # A long batch wait so concurrent requests reliably meet in one pipeline call.
    service = RunningService(request.param, "--engine", "pipeline", "--max-batch-size", "8", "--batch-wait-ms", "1500")
    yield service
    service.stop()


def member_requests(mode: str):
    """Three requests that share a batch key but differ in prompt, negative prompt, seeds, inputs."""
    extra = [{}, {}, {}]
    if mode != "txt2img":
        extra = [{"image": png(seed=i)} for i in range(3)]
    if mode == "inpaint":
        masks = [box_mask(), box_mask(box=(0, 0, 32, 64)), box_mask(box=(8, 40, 60, 60))]
        extra = [{**e, "mask": m, "mask_blur": blur} for e, m, blur in zip(extra, masks, (0, 4, 8))]
    return [
        request_for(mode, prompt="a red fox", seed=1, steps=6, **extra[0]),
        request_for(mode, prompt="a blue whale", negative_prompt="blurry", seed=50, num_images=2, steps=6, **extra[1]),
        request_for(mode, prompt="", seed=999, steps=6, **extra[2]),
    ]


def run_together(client, requests):
    """Start all streams at once; return each one's events."""
    results = [None] * len(requests)

    def run(i):
        results[i] = list(client.stream(requests[i]))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(requests))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return results


def test_batched_requests_get_the_images_they_get_alone(batching):
    mode, client = batching.mode, batching.client
    requests = member_requests(mode)
    batches_before = batching.metric("imagegen_batch_requests_sum")
    together = run_together(client, requests)
    # They shared one pipeline call: 3 requests in one batch observation.
    assert batching.metric("imagegen_batch_requests_sum") - batches_before == 3
    for request, events in zip(requests, together):
        result = events[-1].response
        alone = client.generate(request)  # runs alone: nothing else is queued
        assert [i.seed for i in result.images] == [i.seed for i in alone.images]
        for batched, single in zip(result.images, alone.images):
            assert batched.infotext == single.infotext
            diff = np.abs(pixels(batched.data) - pixels(single.data))
            assert diff.max() <= 3, f"{mode}: batched image differs from alone by {diff.max()}"


def test_each_member_gets_queue_and_progress_events(batching):
    together = run_together(batching.client, member_requests(batching.mode))
    for events in together:
        assert isinstance(events[0], Queued)
        progress = [e for e in events if isinstance(e, Progress)]
        assert [p.step for p in progress] == list(range(1, progress[0].total_steps + 1))
        assert isinstance(events[-1], Result)


def test_cancelling_one_member_keeps_the_others(batching):
    mode, client = batching.mode, batching.client
    requests = [request_for(mode, seed=s, steps=40, width=128, height=128,
                            **({"image": png((128, 128))} if mode != "txt2img" else {}),
                            **({"mask": box_mask((128, 128), (0, 0, 64, 64))} if mode == "inpaint" else {}))
                for s in (1, 2, 3)]
    calls = [client.stream(r) for r in requests]
    for call in calls:
        assert isinstance(next(call), Queued)
    first = next(calls[1])
    assert isinstance(first, Progress)  # the batch is running
    assert len(batching.engine.current) == 3
    calls[1].cancel()
    with pytest.raises(grpc.RpcError) as err:
        list(calls[1])
    assert err.value.code() == grpc.StatusCode.CANCELLED
    for call in (calls[0], calls[2]):
        events = list(call)
        assert isinstance(events[-1], Result) and len(events[-1].images) == 1


def test_cancelling_every_member_stops_the_batch(batching):
    mode, client = batching.mode, batching.client
    requests = [request_for(mode, seed=s, steps=150, width=128, height=128,
                            **({"image": png((128, 128))} if mode != "txt2img" else {}),
                            **({"mask": box_mask((128, 128), (0, 0, 64, 64))} if mode == "inpaint" else {}))
                for s in (1, 2)]
    calls = [client.stream(r) for r in requests]
    for call in calls:
        next(call)
    next(calls[0])
    before = batching.steps_run
    for call in calls:
        call.cancel()
    assert batching.runtime.queue.wait_idle(30)
    assert batching.steps_run - before < 10


def test_batch_size_one_turns_batching_off():
    service = RunningService("txt2img", "--engine", "pipeline", "--max-batch-size", "1", "--batch-wait-ms", "500")
    try:
        run_together(service.client, member_requests("txt2img"))
        assert service.metric("imagegen_batch_requests_sum") == service.metric("imagegen_batch_requests_count")
    finally:
        service.stop()
