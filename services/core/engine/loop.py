"""The step engine: the thread that joins the scheduler's decisions (scheduler.py, policy) to the
runner's execution (runner.py) and the requests' lives (admit, progress, previews, answers).

Queued requests join at step boundaries while the row budget of their shape allows; every iteration
is one UNet call over rows of one shape; a request whose rows are done is decoded and answered at
once; a cancelled or expired one leaves before the next call.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor

from ..errors import Cancelled, DeadlinePassed
from ..imaging import previews
from ..work.engines import Engine
from ..work.queue import Job, Progress, RawResult, drop_unwanted
from .runner import CallFailed, Runner
from .scheduler import StepScheduler

log = logging.getLogger(__name__)
# Threads encoding preview JPEGs, so the loop does not wait for them.
PREVIEW_THREADS = 2


class Request:
    """A request in the loop: its job, its rows, and what the estimator and metrics want of it."""

    def __init__(self, job: Job, rows: list, pinned: tuple, admitted: float):
        self.job, self.rows, self.pinned, self.admitted = job, rows, pinned, admitted
        self.step_seconds: list[float] = []
        self.reported = 0  # the last step a Progress event told
        self._emitting: Future | None = None  # its last Progress event while its preview is encoded

    def report(self, step: int, total: int, pixels, pool: ThreadPoolExecutor) -> None:
        """A Progress event, in order: at once, unless a preview (its own or an earlier event's) is being
        encoded on the pool; then once it and the events before it are out."""
        previous = self._emitting
        if pixels is None and (previous is None or previous.done()):
            self.job.emit(Progress(step=step, total_steps=total, preview=None))
            return

        def emit():
            preview = None
            if pixels is not None:
                try:
                    preview = previews.encode(pixels)
                except Exception:  # noqa: BLE001 - a preview lost is no reason to fail the request
                    log.exception("a preview could not be encoded")
            if previous is not None:
                previous.result()  # submitted earlier to a first-in-first-out pool: no deadlock
            self.job.emit(Progress(step=step, total_steps=total, preview=preview))

        self._emitting = pool.submit(emit)

    def flush(self) -> None:
        """Wait until its Progress events are out (before its answer)."""
        if self._emitting is not None:
            self._emitting.result()

    # --- what the scheduler reads
    @property
    def arrived(self) -> float:
        return self.job.created

    @property
    def deadline(self) -> float | None:
        return self.job.deadline

    @property
    def cancel_requested(self) -> bool:
        return self.job.cancel_requested

    @property
    def done(self) -> bool:
        return all(row.done for row in self.rows)


class StepEngine(Engine):
    kind = "step"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        limits, model = self.limits, self.model
        # One UNet call takes at most max_batch_images guided rows of the default size (an unguided row
        # costs half), counted in latent pixels.
        budget = limits.max_batch_images * 2 * self.config.defaults.size**2 // model.vae_scale**2
        estimator = self.estimator
        self.scheduler = StepScheduler(budget, choose_rows=model.pipe.unet.device.type == "cpu",
                                       batching_pays=estimator.batching_pays if estimator is not None else None,
                                       model_of=lambda key: key[0],  # rows.Row.shape_key: the model first
                                       # Compiled: calls fit the graphs' row counts (engine/graphs.py).
                                       buckets=self.config.compile_buckets if self.config.compile else None)
        self.runner = Runner(self.mode, model, self.pool, self.controlnets, self.upscalers,
                             cohorts=self.config.cohorts)
        self._active: dict[Job, Request] = {}
        self._previews = ThreadPoolExecutor(PREVIEW_THREADS, thread_name_prefix="previews")

    @property
    def current(self) -> list[Job]:
        return list(self._active.copy())

    # --- what estimates read (other threads: snapshots)
    def _requests(self) -> list[Request]:
        return list(self._active.copy().values())

    def load_of(self, spec) -> tuple[int, int, int]:
        """(latent pixels, rows in a call, steps) a request brings to the loop."""
        scale = self.model.vae_scale
        pixels = (spec.height // scale) * (spec.width // scale)
        return pixels, len(spec.seeds) * (2 if spec.guided else 1), spec.steps_run

    def crowd(self) -> list[tuple[int, int, int]]:
        """(latent pixels, rows in a call, steps left) of each request in the loop."""
        loads = []
        for request in self._requests():
            rows = [row for row in request.rows if not row.done]
            if rows:
                loads.append((rows[0].pixels, sum(row.unet_rows for row in rows), rows[0].calls_left))
        return loads

    def _shape_and_cost(self, spec) -> tuple[tuple, int]:
        """(latent shape, latent pixels x UNet rows) a request brings: what the row budget counts."""
        pixels, rows, _steps = self.load_of(spec)
        scale = self.model.vae_scale
        return (spec.height // scale, spec.width // scale), pixels * rows

    def fits(self, spec) -> bool:
        """Whether a request would join at the next step (its shape's row budget has room)."""
        return self.scheduler.fits(*self._shape_and_cost(spec), self._requests())

    def _choose(self, waiting: list[Job]) -> int | None:
        """Which waiting job joins now (the scheduler's pick_waiting)."""
        loads = [(*self._shape_and_cost(job.spec), job.created, self.runner.room_for(job.spec)) for job in waiting]
        return self.scheduler.pick_waiting(loads, self._requests(), time.monotonic())

    def predict(self, spec) -> tuple[float | None, float | None]:
        # It joins at the next step if its shape has room (it may pass queued requests of other shapes),
        # else not before the first request in the loop is done; then it runs beside the loop's crowd.
        crowd = self.crowd()
        ahead = 0.0 if self.fits(spec) else self.estimator.first_to_leave(crowd)
        own = self.estimator.predict([spec])
        in_crowd = self.estimator.in_crowd(self.load_of(spec), crowd)
        if in_crowd is not None:
            own = max(own or 0.0, in_crowd)
        return ahead, own

    def free_in(self) -> float | None:
        crowd = self.crowd()
        return self.estimator.first_to_leave(crowd) if crowd else 0.0

    # --- the loop
    def run(self) -> None:
        while not self._stopping.is_set():
            self._admit(wait=not self._active)
            if self._active:
                self._drop_leavers()
                # No local keeps the call: its rows must be freed when they fail or finish, even while idle.
                self._step(self.scheduler.next_call(self._active.values()))
                self._resize_due()
                self._finish_done()
            # Also after an admission that failed: an idle engine is not busy (drain waits for it).
            self.queue.set_busy(bool(self._active))

    def _admit(self, wait: bool) -> None:
        """Admit waiting requests, in queue order, those whose rows fit their shape's budget (see the
        scheduler's pick_waiting for who may pass whom). An idle loop also admits what arrives within --batch-wait-ms of its first request, so a crowd that comes
        together starts (and, with equal steps, finishes) together instead of a step or two apart."""
        gather_until = 0.0
        while True:
            timeout = 0.2 if wait else max(0.0, gather_until - time.monotonic())
            job = self.queue.take_chosen(self._choose, timeout=timeout)
            if job is None:
                return
            if wait:
                gather_until = time.monotonic() + self.limits.batch_wait_s
            wait = False
            if drop_unwanted([job]):
                self._start(job)

    def _start(self, job: Job) -> None:
        started = time.monotonic()
        job.start(started)
        if self.metrics is not None:
            self.metrics.queue_wait.observe(started - job.created)
        try:
            rows, pinned = self.runner.admit(job)
        except CallFailed as failed:
            job.fail(failed.error)
            return
        if not self._active:
            self.current_started = started
        self._active[job] = Request(job, rows, pinned, started)

    def _remove(self, job: Job) -> None:
        """A request leaves the loop (answered, failed or cancelled): its LoRAs are free again."""
        request = self._active.pop(job, None)
        if request is not None:
            self.runner.release(request.rows[0].model if request.rows else "", request.pinned)

    def _drop_leavers(self) -> None:
        """A cancelled or expired request leaves now and stops costing compute."""
        for request, why in self.scheduler.leaving(self._active.values(), time.monotonic()):
            if why == "cancelled":
                request.job.fail(Cancelled("cancelled by the client"))
            else:
                request.job.fail(DeadlinePassed("the deadline passed while the request ran"))
        for job in [job for job in self._active if job.done]:  # also those a shutdown ended
            self._remove(job)

    def _step(self, call) -> None:
        if call is None:
            return
        try:
            seconds = self.runner.step(call.rows)
        except CallFailed as failed:
            if failed.out_of_memory:
                self.scheduler.squeeze(call.rows[0].latent_shape)
            self._fail([request.job for request in call.requests], failed.error)
            return
        self.scheduler.observed(call.key, seconds)
        unet_rows = sum(row.unet_rows for row in call.rows)
        if self.metrics is not None:
            self.metrics.steps.inc()
            self.metrics.step_rows.observe(unet_rows)
            self.metrics.step_seconds.observe(seconds)
        if self.estimator is not None:
            self.estimator.observe_step(call.rows[0].pixels, unet_rows, seconds)
        for request in call.requests:
            request.step_seconds.append(seconds)
            step, total = request.rows[0].progress()
            if step > request.reported:  # a scheduler's extra calls (PLMS, Heun) are not extra steps
                request.reported = step
                # The preview's pixels need the latents now; its JPEG is made off the loop.
                pixels = self.runner.preview(request.rows) if previews.due(request.job.spec, step, total) else None
                request.report(step, total, pixels, self._previews)

    def _resize_due(self) -> None:
        """Rows whose first pass just ended are enlarged for their second (they join that size's calls)."""
        due = [request for request in self._active.values() if any(row.resizing for row in request.rows)]
        if not due:
            return
        try:
            self.runner.resize([row for request in due for row in request.rows if row.resizing])
        except CallFailed as failed:
            self._fail([request.job for request in due], failed.error)

    def _fail(self, jobs, error) -> None:
        for job in jobs:
            job.fail(error)
            self._remove(job)

    def _finish_done(self) -> None:
        finished = [request for request in self._active.values() if request.done]
        if not finished:
            return
        try:
            images = self.runner.decode([row for request in finished for row in request.rows])
        except CallFailed as failed:
            self._fail([request.job for request in finished], failed.error)
            return
        done = time.monotonic()
        offset = 0
        for request in finished:
            job, spec = request.job, request.job.spec
            mine = [self.mode.finish(spec, image) for image in images[offset: offset + len(request.rows)]]
            offset += len(request.rows)
            self._remove(job)
            request.flush()  # its last Progress events before its answer
            if self.estimator is not None:
                self.estimator.observe([spec], done - request.admitted, request.step_seconds)
            if self.metrics is not None:
                self.metrics.observe_batch(1, len(mine), done - request.admitted, len(request.step_seconds))
            job.finish(RawResult(
                images=mine,
                sampler=self.model.sampler_infotext(spec),
                queue_ms=(job.started - job.created) * 1000,
                inference_ms=(done - job.started) * 1000,
                embedding_hashes=self.runner.embedding_hashes(spec, request.rows[0].model
                                                              if request.rows else ""),
            ))
        if self._active:
            self.current_started = min(request.admitted for request in self._active.values())
