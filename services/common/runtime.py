"""A mode's life: load the pipeline, warm up, report SERVING, take jobs, drain and stop."""

from __future__ import annotations

import logging
import time

from grpc_health.v1 import health_pb2

from .config import ServiceConfig
from .errors import Unavailable
from .queue import Job, JobQueue

log = logging.getLogger(__name__)
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class ModeRuntime:
    def __init__(self, mode, config: ServiceConfig, health):
        self.mode = mode
        self.config = config
        self.health = health
        self.queue = JobQueue(config.limits.max_queue)
        self.state = "loading"  # loading -> serving -> draining -> stopped
        self.worker = None
        self.device = ""
        self.dtype = ""
        self._set_health(NOT_SERVING)

    def _set_health(self, status) -> None:
        for name in ("", self.mode.full_service_name):
            self.health.set(name, status)

    def load(self) -> None:
        """Load the model and warm it up, then report SERVING. Raises models.ModelLoadError."""
        from .models import load_pipeline
        from .worker import PipelineWorker

        started = time.monotonic()
        pipe, device, dtype = load_pipeline(self.config)
        self.device, self.dtype = device, str(dtype).removeprefix("torch.")
        self.worker = PipelineWorker(self.mode, pipe, self.queue)
        self.worker.start()
        if self.config.warmup:
            warm = Job(self.mode.parse(self.mode.warmup_request(self.config), self.config))
            self.queue.submit(warm)
            warm.wait()
        if self.state != "loading":
            return  # asked to stop while loading
        self.state = "serving"
        self._set_health(SERVING)
        log.info("%s SERVING after %.1fs (%s on %s)", self.mode.name, time.monotonic() - started,
                 self.config.model, self.device)

    def check_accepting(self) -> None:
        if self.state != "serving":
            raise Unavailable(
                "the model is still loading; retry shortly" if self.state == "loading"
                else "the service is shutting down; retry on another replica"
            )

    def submit(self, spec) -> Job:
        self.check_accepting()
        job = Job(spec)
        self.queue.submit(job)
        return job

    def drain(self, grace_s: float) -> bool:
        """Stop taking work (health NOT_SERVING) and let queued and running work finish."""
        self.state = "draining"
        self.health.enter_graceful_shutdown()
        finished = self.queue.wait_idle(grace_s)
        for job in self.queue.close():
            job.fail(Unavailable("the service shut down before this request ran"))
        if self.worker is not None and self.worker.current is not None:
            current = self.worker.current
            current.cancel()
            current.fail(Unavailable("the service shut down during this request"))
        return finished

    def stop(self) -> None:
        self.state = "stopped"
        if self.worker is not None:
            self.worker.stop()
            # Join: a worker thread still inside torch at interpreter exit aborts the process.
            self.worker.join(timeout=10)
