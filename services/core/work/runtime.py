"""A mode's life: load the pipeline, warm up, report SERVING, take jobs, drain and stop."""

from __future__ import annotations

import logging
import threading
import time
from contextlib import contextmanager
from dataclasses import replace

from grpc_health.v1 import health_pb2

from ..config import ServiceConfig
from ..errors import DeadlineUnmeetable, ModelLoading, QueueFull, ShuttingDown
from ..mode import Mode
from ..prompts import sequence_chunks
from .estimate import WorkEstimator
from .metrics import ServiceMetrics
from .queue import Job, JobQueue

log = logging.getLogger(__name__)
# Requests whose input images are decoded and fitted at once: the rest wait their turn, so decoding a
# crowd of large uploads never takes every core from the worker and the health checks.
CHECKS_AT_ONCE = 2
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class ModeRuntime:
    def __init__(self, mode: Mode, config: ServiceConfig, health):
        self.mode = mode
        self.config = config
        self.health = health
        self.queue = JobQueue(config.limits.max_queue)
        # Generation calls in the service at once (being checked, queued or running). Each holds a
        # handler thread; bounding them leaves threads free for health checks under any load.
        self.max_calls = config.limits.max_queue + config.limits.max_batch_images
        self._calls = threading.BoundedSemaphore(self.max_calls)
        self._checking = threading.BoundedSemaphore(CHECKS_AT_ONCE)
        self.metrics = ServiceMetrics(mode.name, self.queue)
        self.estimator = WorkEstimator()
        self.state = "loading"  # loading -> serving -> draining -> stopped
        self.worker = None
        self.pipe = None  # once loaded: its tokenizer counts the prompts' chunks in check
        self.engine = config.engine  # what serves once loaded: the step engine, or pipeline calls
        self.device = ""
        self.dtype = ""
        self.model_kind = None  # models.family.ModelKind once loaded: what GetInfo reports
        self._set_health(NOT_SERVING)

    def _set_health(self, status) -> None:
        for name in ("", self.mode.full_service_name):
            self.health.set(name, status)

    def load(self) -> None:
        """Load the model and warm it up, then report SERVING. Raises models.ModelLoadError."""
        from ..models.family import of_pipeline
        from ..models.loading import load_pipeline
        from ..models.loras import LoraAdapters
        from .worker import PipelineWorker

        started = time.monotonic()
        pipe, device, dtype = load_pipeline(self.mode, self.config)
        self.pipe = pipe
        self.device, self.dtype = device, str(dtype).removeprefix("torch.")
        self.model_kind = of_pipeline(pipe)
        adapters = LoraAdapters(pipe, self.config.lora_dir)  # the one cache both engines activate LoRAs by
        self.engine = self.config.engine
        if self.engine == "step":
            from ..engine.support import unsupported

            reason = unsupported(pipe)
            if reason:
                log.warning("the step engine cannot serve this model (%s): serving whole pipeline calls", reason)
                self.engine = "pipeline"
        if self.engine == "step":
            from ..engine.loop import StepEngine

            self.worker = StepEngine(self.mode, pipe, self.queue, max_rows=self.config.limits.max_batch_images,
                                     row_pixels=self.config.defaults.size**2, metrics=self.metrics,
                                     estimator=self.estimator, adapters=adapters,
                                     gather_s=self.config.limits.batch_wait_s)
        else:
            self.worker = PipelineWorker(
                self.mode, pipe, self.queue,
                max_batch_images=self.config.limits.max_batch_images,
                batch_wait_s=self.config.limits.batch_wait_s,
                metrics=self.metrics,
                estimator=self.estimator,
                adapters=adapters,
            )
        self.worker.start()
        if self.config.warmup:
            warm = Job(self.mode.check(self.mode.warmup_request(self.config), self.config))
            self.queue.submit(warm)
            warm.wait()
        if self.state != "loading":
            return  # asked to stop while loading
        self.state = "serving"
        self._set_health(SERVING)
        log.info("%s SERVING after %.1fs (%s, %s, on %s)", self.mode.name, time.monotonic() - started,
                 self.config.model, self.model_kind.describe(), self.device)

    def check_accepting(self) -> None:
        if self.state == "loading":
            raise ModelLoading("the model is still loading; retry shortly")
        if self.state != "serving":
            raise ShuttingDown("the service is shutting down; retry on another replica")

    @contextmanager
    def call_slot(self):
        """Hold one of the service's generation call places for a call's life; refused at once
        (QueueFull, with a retry hint) when every place is taken."""
        if not self._calls.acquire(blocking=False):
            raise QueueFull(f"the service is busy ({self.max_calls} requests in progress); try again shortly",
                            retry_after_s=self.retry_hint())
        try:
            yield
        finally:
            self._calls.release()

    def check(self, request):
        """The mode's checks (decoding input images), a few requests at a time; then the prompts' chunk
        count (tokenizing only), which decides what may share a pipeline call."""
        with self._checking:
            spec = self.mode.check(request, self.config)
            if self.pipe is not None:
                spec = replace(spec, prompt_chunks=sequence_chunks(self.pipe, spec))
            return spec

    def _running_left(self) -> float | None:
        """Predicted seconds until the running batch ends (0 when idle; None before any data)."""
        worker = self.worker
        running = list(worker.current) if worker else []
        if not running:
            return 0.0
        predicted = self.estimator.predict([job.spec for job in running])
        if predicted is None:
            return None
        return max(0.0, predicted - (time.monotonic() - worker.current_started))

    def seconds_until_free(self) -> float | None:
        """Predicted seconds until the worker has done what is running and waiting now."""
        total = self._running_left()
        if total is None:
            return None
        waiting = self.queue.waiting()
        if waiting:
            predicted = self.estimator.predict_queue([job.spec for job in waiting])
            if predicted is None:
                return None
            total += predicted
        return total

    def submit(self, spec, time_remaining: float | None = None) -> Job:
        """Queue a spec. A deadline that the predicted wait and run cannot meet is refused now."""
        self.check_accepting()
        deadline = None
        if time_remaining is not None:
            deadline = time.monotonic() + time_remaining
            ahead, own = self._predict(spec)
            if own is not None and ahead is not None and ahead + own > time_remaining:
                raise DeadlineUnmeetable(
                    f"the deadline ({time_remaining:.1f}s) cannot be met: about {ahead:.1f}s of queued work "
                    f"and {own:.1f}s for this request; allow more time or ask for less"
                )
        job = Job(spec, deadline)
        try:
            self.queue.submit(job)
        except QueueFull as full:
            full.retry_after_s = self.retry_hint()
            raise
        return job

    def _predict(self, spec) -> tuple[float | None, float | None]:
        """Lower bounds for (the wait before spec runs, its run); None where nothing is known yet."""
        own = self.estimator.predict([spec])
        engine = self.worker
        if self.engine != "step" or engine is None:
            return self.seconds_until_free(), own
        # The step engine: it joins at the next step if its shape has room and nobody waits ahead of it,
        # else not before the first request in the loop is done; then it runs beside the loop's crowd.
        crowd = engine.crowd()
        ahead = 0.0 if engine.fits(spec) and not self.queue.waiting() else self.estimator.first_to_leave(crowd)
        in_crowd = self.estimator.in_crowd(engine.load_of(spec), crowd)
        if in_crowd is not None:
            own = max(own or 0.0, in_crowd)
        return ahead, own

    def retry_hint(self) -> float:
        """When a queue place is likely to be free: the running batch's predicted end, or the step
        engine's first request done (0.1-30 s)."""
        if self.engine == "step" and self.worker is not None:
            crowd = self.worker.crowd()
            left = self.estimator.first_to_leave(crowd) if crowd else 0.0
        else:
            left = self._running_left()
        return 1.0 if left is None else min(30.0, max(0.1, left))

    def drain(self, grace_s: float) -> bool:
        """Stop taking work (health NOT_SERVING) and let queued and running work finish."""
        self.state = "draining"
        self.health.enter_graceful_shutdown()
        finished = self.queue.wait_idle(grace_s)
        for job in self.queue.close():
            job.fail(ShuttingDown("the service shut down before this request ran"))
        for current in list(self.worker.current) if self.worker is not None else []:
            current.cancel()
            current.fail(ShuttingDown("the service shut down during this request"))
        return finished

    def stop(self) -> None:
        self.state = "stopped"
        if self.worker is not None:
            self.worker.stop()
            # Join: a worker thread still inside torch at interpreter exit aborts the process.
            self.worker.join(timeout=10)
