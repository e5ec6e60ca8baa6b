"""The step engine served over gRPC: mixed requests share UNet calls, join and leave at step boundaries."""

from __future__ import annotations

import io
import threading

import numpy as np
import pytest
from PIL import Image

import torch

from services.client import Cancelled, OutOfMemory, Progress, Result
from services.core.models.presets import TINY, build_pipeline
from tests.conftest import FailingPipeline, RunningService, request_for, wait_for
from tests.services.crowds import all_at_once


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
    before = service.metric("imagegen_step_rows_count")
    together = all_at_once([lambda f=f: service.client.generate(request_for(mode, **f)) for f in MIXED])
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
    assert wait_for(lambda: bool(service.engine.current))
    short = service.client.generate(request_for("txt2img", steps=3, width=128, height=128))
    assert len(short.images) == 1
    assert service.engine.current  # the long one is still running: the short one did not wait for it
    long.cancel()
    with pytest.raises(Cancelled):
        list(long)


def test_a_cancelled_request_leaves_at_the_next_step_and_the_others_go_on(engines):
    service = engines["txt2img"]
    first = service.client.stream(request_for("txt2img", steps=60, width=128, height=128, seed=1))
    second = service.client.stream(request_for("txt2img", steps=60, width=128, height=128, seed=2))
    for call in (first, second):
        assert any(isinstance(event, Progress) for event in call)  # both running
    assert len(service.engine.current) == 2
    first.cancel()
    assert wait_for(lambda: len(service.engine.current) == 1, timeout=10)
    events = list(second)
    assert isinstance(events[-1], Result) and len(events[-1].images) == 1


@pytest.mark.parametrize("mode", ["txt2img", "img2img", "inpaint"])
def test_sdxl_is_served_by_the_step_engine(mode):
    service = RunningService(mode, "--engine", "step", "--model", "tiny-xl")
    try:
        assert service.client.info().engine == "step"
        result = service.client.generate(request_for(mode, seed=5, num_images=2, width=64, height=64))
        assert [image.seed for image in result.images] == [5, 6]
        assert Image.open(io.BytesIO(result.images[0].data)).size == (64, 64)
        assert service.metric("imagegen_step_rows_count") > 0  # its UNet calls were the engine's
    finally:
        service.stop()


def test_a_model_the_loop_does_not_support_is_served_by_pipeline_calls(tmp_path):
    # A UNet with a guidance-scale embedding (LCM-style): the loop does not feed it, so the pipeline serves.
    build_pipeline({**TINY, "unet": {**TINY["unet"], "time_cond_proj_dim": 32}}, inpaint=False).save_pretrained(
        tmp_path / "lcm")
    service = RunningService("txt2img", "--engine", "step", "--model", str(tmp_path / "lcm"))
    try:
        assert service.client.info().engine == "pipeline"
        assert len(service.client.generate(request_for("txt2img")).images) == 1
    finally:
        service.stop()


def most_rows_per_call(service, streams) -> tuple[int, int, list]:
    """Runs the streams to their results; returns the most UNet rows one call took meanwhile (the smallest
    histogram bucket holding every call), how many calls there were, and the results."""
    bounds = (1, 2, 4, 6, 8, 12, 16)
    before = [service.metric("imagegen_step_rows_bucket", le=str(float(b))) for b in bounds]
    total = service.metric("imagegen_step_rows_count")
    results = [list(stream)[-1] for stream in streams]
    for result in results:
        assert isinstance(result, Result) and len(result.images) == 1
    total = service.metric("imagegen_step_rows_count") - total
    grown = [service.metric("imagegen_step_rows_bucket", le=str(float(b))) - was for b, was in zip(bounds, before)]
    return next(b for b, n in zip(bounds, grown) if n == total), int(total), results


def test_after_running_out_of_memory_fewer_rows_share_a_call():
    # Two guided 64x64 rows fit one call; after an OOM the budget is halved for a while: one each.
    service = RunningService("txt2img", "--engine", "step", "--max-batch-size", "2", "--warmup", "false")
    try:
        def pair_max_rows() -> int:
            """The most rows one UNet call took while a pair of requests ran together."""
            return most_rows_per_call(
                service, [service.client.stream(request_for("txt2img", steps=15, seed=s)) for s in (1, 2)])[0]

        assert pair_max_rows() == 4  # both requests' rows (two each) shared calls
        service.runtime.model.pipe = FailingPipeline(service.runtime.model.pipe, torch.OutOfMemoryError("CUDA out of memory"))
        with pytest.raises(OutOfMemory):
            service.client.generate(request_for("txt2img", steps=4))
        assert pair_max_rows() == 2  # the same pair now takes turns, one request per call
        assert len(service.client.generate(request_for("txt2img")).images) == 1
    finally:
        service.stop()


def test_where_bigger_calls_do_not_pay_a_long_request_is_not_held_to_the_whole_crowd():
    # A device where a row costs the same in any call (as on a CPU): the estimator has seen such calls at
    # this size (64x64: 8x8 latents), faster than any real one, so they are the ones it keeps.
    service = RunningService("txt2img", "--engine", "step", "--max-batch-size", "8", "--warmup", "false")
    try:
        for rows in (1, 2, 4, 8, 16):
            service.engine.estimator.observe_step(64, rows, 1e-5 * rows)
        # One 40-step request and three 8-step ones, two UNet rows each: 128 rows of work, 40 steps for the
        # longest, so calls of 4 rows (two requests) have every request done by the long one's last step.
        requests = [request_for("txt2img", steps=steps, seed=seed) for seed, steps in enumerate((40, 8, 8, 8))]
        streams = [service.client.stream(request) for request in requests]
        most, calls, results = most_rows_per_call(service, streams)
        assert most <= 4  # never more than two requests in a call, though four ran together
        # And the long one rode in nearly every call: the short ones' 24 steps fit beside its 40 (a short one
        # may arrive first and step alone once or twice before the long one is admitted).
        assert calls <= 45
        # Riding in some calls and not others leaves each image as it is alone.
        for request, result in zip(requests, results):
            alone = service.client.generate(request)
            assert np.abs(pixels(alone.images[0].data) - pixels(result.images[0].data)).max() <= 3
    finally:
        service.stop()


@pytest.mark.parametrize("engine", ["step", "pipeline"])
def test_previews_come_every_n_steps_as_small_jpegs_and_generate_ignores_them(engine):
    service = RunningService("img2img", "--engine", engine)
    try:
        request = request_for("img2img", steps=8, strength=1.0, num_images=2, width=128, height=64, preview_every=3)
        events = list(service.client.stream(request))
        progress = [e for e in events if isinstance(e, Progress)]
        assert [e.step for e in progress if e.preview] == [3, 6]  # not the last step: the result follows
        preview = Image.open(io.BytesIO(progress[2].preview))
        assert preview.format == "JPEG"
        # The two images side by side (each 128x64), the long side at most 256 pixels.
        assert preview.size == (256, 64)
        # Previews show the latents of this request: a different seed gives a different preview.
        other = list(service.client.stream(request_for("img2img", steps=8, strength=1.0, num_images=2, width=128,
                                                      height=64, preview_every=3, seed=99)))
        other_preview = [e.preview for e in other if isinstance(e, Progress) and e.preview][0]
        assert np.abs(pixels(other_preview) - pixels(progress[2].preview)).max() > 10
        # The result is the same as without previews.
        plain = service.client.generate(request_for("img2img", steps=8, strength=1.0, num_images=2, width=128,
                                                    height=64))
        assert [i.data for i in plain.images] == [i.data for i in events[-1].images]
    finally:
        service.stop()


@pytest.mark.parametrize("engine", ["step", "pipeline"])
@pytest.mark.parametrize("scheduler, steps", [("pndm", 25), ("heun", 4), ("", 3)])
def test_progress_counts_the_steps_asked_for_whatever_the_scheduler_calls(engine, scheduler, steps):
    # PLMS (pndm, the tiny model's own) calls the UNet once more than its steps, Heun twice a step.
    service = RunningService("txt2img", "--engine", engine, "--warmup", "false")
    try:
        events = list(service.client.stream(request_for("txt2img", steps=steps, scheduler=scheduler,
                                                        width=64, height=64)))
        progress = [(e.step, e.total_steps) for e in events if isinstance(e, Progress)]
        assert progress == [(step, steps) for step in range(1, steps + 1)]
        assert isinstance(events[-1], Result)
    finally:
        service.stop()


@pytest.mark.parametrize("engine", ["step", "pipeline"])
def test_after_an_admission_that_fails_the_engine_is_idle_and_drains_at_once(tmp_path, engine):
    from safetensors.torch import save_file

    from services.client import InvalidInput

    save_file({"lora_unet_nowhere.lora_down.weight": torch.zeros(4, 8)}, str(tmp_path / "broken.safetensors"))
    service = RunningService("txt2img", "--engine", engine, "--lora-dir", str(tmp_path), "--warmup", "false")
    try:
        with pytest.raises(InvalidInput):
            service.client.generate(request_for("txt2img", loras={"broken": 1.0}))
        assert service.runtime.queue.wait_idle(2.0)  # not still "busy" with the request that failed
        assert service.runtime.drain(grace_s=30)  # so a SIGTERM now stops at once, not after the grace
    finally:
        service.stop()


def test_a_small_request_beside_a_big_one_is_not_held_to_one_step_per_big_call():
    # Shapes share the device by the time their calls take: a 64x64 request's 20 steps cost a fraction of
    # one 512x512 step, so it is done while the big one has run only a few (by turns: 20 of them).
    service = RunningService("txt2img", "--engine", "step", "--warmup", "false")
    try:
        big = service.client.stream(request_for("txt2img", steps=60, width=512, height=512, seed=1))
        progress = []

        def follow():
            try:
                for event in big:
                    if isinstance(event, Progress):
                        progress.append(event.step)
            except Cancelled:
                pass

        watcher = threading.Thread(target=follow)
        watcher.start()
        assert wait_for(lambda: len(progress) >= 2, timeout=60)  # the big one's calls are timed
        # The big one's steps from the small one's first step to its last (by turns: 19).
        marks = []
        for event in service.client.stream(request_for("txt2img", steps=20, width=64, height=64, seed=2)):
            if isinstance(event, Progress) and event.step in (1, 20):
                marks.append(progress[-1])
            if isinstance(event, Result):
                assert len(event.images) == 1
        assert marks[1] - marks[0] <= 5, marks
        big.cancel()
        watcher.join(timeout=30)
    finally:
        service.stop()


def test_a_queued_request_that_fits_joins_past_a_bigger_one_that_does_not():
    # One guided image of the default size (64x64) per call: a running 128x128 request fills its shape, a
    # second one waits for room; a 64x64 request (another shape, which has room) need not wait behind it.
    service = RunningService("txt2img", "--engine", "step", "--max-batch-size", "1", "--warmup", "false")
    try:
        running = service.client.stream(request_for("txt2img", steps=150, width=128, height=128, seed=1))
        assert wait_for(lambda: bool(service.engine.current), timeout=30)
        queued = service.client.stream(request_for("txt2img", steps=150, width=128, height=128, seed=2))
        assert wait_for(lambda: len(service.runtime.queue.waiting()) == 1, timeout=30)
        small = service.client.generate(request_for("txt2img", steps=3, width=64, height=64, seed=3))
        assert len(small.images) == 1
        assert len(service.runtime.queue.waiting()) == 1 and len(service.engine.current) == 1  # still there
        for call in (running, queued):
            call.cancel()
            with pytest.raises(Cancelled):
                list(call)
    finally:
        service.stop()


def test_rows_stepped_alone_make_the_cohort_s_images_exactly():
    # --cohorts false steps each row by its own scheduler: the same bytes as the cohort a request's images form.
    request = request_for("txt2img", steps=5, num_images=3, scheduler="dpmpp_2m", seed=11)
    images = []
    for cohorts in ("true", "false"):
        service = RunningService("txt2img", "--engine", "step", "--cohorts", cohorts, "--warmup", "false")
        try:
            assert service.engine.runner.cohorts is (cohorts == "true")
            images.append([image.data for image in service.client.generate(request).images])
        finally:
            service.stop()
    assert images[0] == images[1] and len(images[0]) == 3
