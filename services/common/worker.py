"""The one thread that owns a mode's pipeline: diffusers pipelines are not thread-safe."""

from __future__ import annotations

import gc
import logging
import threading
import time
from dataclasses import dataclass

from . import schedulers
from .errors import Cancelled, OutOfMemory, Unavailable
from .queue import Job, JobQueue, Progress

log = logging.getLogger(__name__)


@dataclass
class RawResult:
    """What the worker hands back: PIL images, and where the time went."""

    images: list
    scheduler_label: str
    queue_ms: float
    inference_ms: float


class PipelineWorker(threading.Thread):
    def __init__(self, mode, pipe, job_queue: JobQueue):
        super().__init__(name=f"{mode.name}-worker", daemon=True)
        self.mode = mode
        self.pipe = pipe
        self.queue = job_queue
        self._base_scheduler = pipe.scheduler
        self.default_scheduler = schedulers.name_of(pipe.scheduler)
        self._stopping = threading.Event()
        self.current: Job | None = None
        self.steps_done = 0  # denoising steps run, all jobs together
        # Tests set this to a callable(step) to inject faults that cannot be caused for real (GPU OOM).
        self.fault_hook = None

    def stop(self) -> None:
        self._stopping.set()

    def run(self) -> None:
        while not self._stopping.is_set():
            job = self.queue.take(timeout=0.2)
            if job is None:
                continue
            try:
                self.current = job
                self.process(job)
            finally:
                self.current = None
                self.queue.task_done()

    def process(self, job: Job) -> None:
        import torch

        if job.cancelled:
            job.fail(Cancelled("cancelled by the client while queued"))
            return
        job.started = time.monotonic()
        spec = job.spec
        name = spec.scheduler or self.default_scheduler
        try:
            self.pipe.scheduler = self._scheduler(spec.scheduler)
            # CPU generators: the same seed gives the same starting noise on any device.
            generators = [torch.Generator("cpu").manual_seed(seed) for seed in spec.seeds]

            def on_step(pipe, index, _timestep, callback_kwargs):
                self.steps_done += 1
                job.raise_if_cancelled()
                if self.fault_hook is not None:
                    self.fault_hook(index)
                job.emit(Progress(step=index + 1, total_steps=pipe.num_timesteps))
                return callback_kwargs

            with torch.inference_mode():
                images = self.mode.run(self.pipe, spec, generators, on_step)
        except torch.OutOfMemoryError:
            self._release_memory()
            job.fail(OutOfMemory("the device ran out of memory; try fewer or smaller images"))
        except (Cancelled, Unavailable) as exc:
            job.fail(exc)
        except Exception as exc:  # noqa: BLE001 - the job reports it; the worker keeps serving
            log.exception("%s generation failed", self.mode.name)
            job.fail(exc)
        else:
            done = time.monotonic()
            job.finish(
                RawResult(
                    images=images,
                    scheduler_label=schedulers.label_of(name),
                    queue_ms=(job.started - job.created) * 1000,
                    inference_ms=(done - job.started) * 1000,
                )
            )
        finally:
            self.pipe.scheduler = self._base_scheduler

    def _scheduler(self, name: str):
        if not name:
            # A fresh copy each time: multistep schedulers keep state between calls.
            return type(self._base_scheduler).from_config(self._base_scheduler.config)
        return schedulers.build(name, self._base_scheduler.config)

    @staticmethod
    def _release_memory() -> None:
        import torch

        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
