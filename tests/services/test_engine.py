"""The step engine served over gRPC: mixed requests share UNet calls, join and leave at step boundaries."""

from __future__ import annotations

import io
import threading

import numpy as np
import pytest
from PIL import Image

from services.client import Cancelled, Progress, Result
from tests.conftest import RunningService, request_for, wait_for


@pytest.fixture(scope="module")
def engines():
    running = {mode: RunningService(mode, "--engine", "step", "--max-batch-size", "8") for mode in
               ("txt2img", "img2img", "inpaint")}
    yield running
    for service in running.values():
        service.stop()


def pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.int16)


MIXED = [dict(steps=4, guidance_scale=7.5, scheduler="euler_a", seed=1),
         dict(steps=7, guidance_scale=1.0, scheduler="dpmpp_2m", seed=2),
         dict(steps=5, guidance_scale=3.0, scheduler="", seed=3, num_images=2),
         dict(steps=6, guidance_scale=9.0, scheduler="heun", seed=4)]


def test_get_info_says_which_engine_serves(engines):
    assert engines["txt2img"].client.info().engine == "step"


@pytest.mark.parametrize("mode", ["txt2img", "img2img", "inpaint"])
def test_a_mixed_crowd_gets_the_images_each_gets_alone(engines, mode):
    service = engines[mode]
    alone = [service.client.generate(request_for(mode, **fields)) for fields in MIXED]
    together = [None] * len(MIXED)
    before = service.metric("imagegen_step_rows_count")

    def call(i):
        together[i] = service.client.generate(request_for(mode, **MIXED[i]))

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(MIXED))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for one, crowd in zip(alone, together):
        assert [i.seed for i in one.images] == [i.seed for i in crowd.images]
        for a, b in zip(one.images, crowd.images):
            assert a.infotext == b.infotext
            assert np.abs(pixels(a.data) - pixels(b.data)).max() <= 3
    calls = service.metric("imagegen_step_rows_count") - before
    assert calls < sum(f["steps"] + 1 for f in MIXED)  # they shared UNet calls (PNDM/heun add steps)


def test_a_newcomer_joins_a_running_loop_and_leaves_first(engines):
    service = engines["txt2img"]
    long = service.client.stream(request_for("txt2img", steps=120, width=128, height=128))
    assert wait_for(lambda: bool(service.worker.current))
    short = service.client.generate(request_for("txt2img", steps=3, width=128, height=128))
    assert len(short.images) == 1
    assert service.worker.current  # the long one is still running: the short one did not wait for it
    long.cancel()
    with pytest.raises(Cancelled):
        list(long)


def test_a_cancelled_request_leaves_at_the_next_step_and_the_others_go_on(engines):
    service = engines["txt2img"]
    first = service.client.stream(request_for("txt2img", steps=60, width=128, height=128, seed=1))
    second = service.client.stream(request_for("txt2img", steps=60, width=128, height=128, seed=2))
    for call in (first, second):
        assert any(isinstance(event, Progress) for event in call)  # both running
    assert len(service.worker.current) == 2
    first.cancel()
    assert wait_for(lambda: len(service.worker.current) == 1, timeout=10)
    events = list(second)
    assert isinstance(events[-1], Result) and len(events[-1].images) == 1
