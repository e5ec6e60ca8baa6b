"""Previews are encoded off the loop (engine/loop.py Request.report): a request's Progress events still
come in step order, each preview a JPEG of the pixels the loop made, all before its answer."""

from __future__ import annotations

import io
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image

from services.core.engine.loop import Request
from services.core.work.queue import Job, Progress
from tests.conftest import SERVER_MODES, request_for, service_config


def test_progress_events_stay_in_step_order_while_previews_are_encoded_off_the_loop():
    mode = SERVER_MODES["txt2img"]
    job = Job(mode.check(request_for("txt2img", steps=8), service_config("txt2img")))
    request = Request(job, [], (), 0.0)
    gate = threading.Event()
    with ThreadPoolExecutor(2) as pool:
        pool.submit(gate.wait)  # a busy worker: the previews wait their turn, the loop does not
        pixels = np.full((8, 16, 3), 200, dtype=np.uint8)
        for step in range(1, 9):
            request.report(step, 8, pixels if step % 3 == 0 else None, pool)
        early = []
        while not job.events.empty():
            early.append(job.events.get().step)
        assert early == [1, 2]  # those before the first preview went at once; the rest wait for it
        gate.set()
        request.flush()
    events = [job.events.get() for _ in range(6)]
    assert all(isinstance(e, Progress) for e in events) and job.events.empty()
    assert [e.step for e in events] == [3, 4, 5, 6, 7, 8]
    assert [e.step for e in events if e.preview] == [3, 6]
    image = Image.open(io.BytesIO(events[0].preview))
    assert image.format == "JPEG" and image.size == (128, 64)  # 16x8 latent pixels, enlarged 8x
    assert np.abs(np.asarray(image, dtype=np.int16) - 200).max() <= 3
