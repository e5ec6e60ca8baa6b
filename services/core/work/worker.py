"""The one thread that owns a mode's pipeline: diffusers pipelines are not thread-safe.

Jobs that can share a pipeline call (same size, steps, scheduler, guidance, strength) run as one
batch; each keeps its own prompts and seeds, so its images are those it would get alone.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from dataclasses import dataclass

from ..errors import Cancelled, DeadlinePassed, InternalError, OutOfMemory, ServiceError
from ..imaging import previews
from ..models import schedulers
from ..models.family import of_pipeline
from ..models.loras import LoraAdapters
from .queue import Job, JobQueue, Progress

log = logging.getLogger(__name__)


@dataclass
class RawResult:
    """What the worker hands back to a job: PIL images, and where the time went."""

    images: list
    scheduler_label: str
    queue_ms: float
    inference_ms: float


def drop_unwanted(jobs: list[Job]) -> list[Job]:
    """Jobs cancelled while queued, or whose deadline passed, are failed before any compute; the rest."""
    now, keep = time.monotonic(), []
    for job in jobs:
        if job.cancelled:
            job.fail(Cancelled("cancelled by the client while queued"))
        elif job.deadline is not None and now >= job.deadline:
            job.fail(DeadlinePassed("the deadline passed while the request was queued"))
        else:
            keep.append(job)
    return keep


def release_device_memory() -> None:
    """After running out of device memory: free what the failed call held."""
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def wait_for_device(device) -> None:
    """Wait until the device has run what was queued on it: CUDA (and MPS) run behind the Python that
    queues their work, so a call's time is its own only after this."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


class PipelineWorker(threading.Thread):
    def __init__(self, mode, pipe, job_queue: JobQueue, max_batch_images: int = 1, batch_wait_s: float = 0.0,
                 metrics=None, estimator=None, adapters: LoraAdapters | None = None):
        super().__init__(name=f"{mode.name}-worker", daemon=True)
        self.mode = mode
        self.pipe = pipe
        self.adapters = adapters or LoraAdapters(pipe, None)
        self.queue = job_queue
        self.max_batch_images = max_batch_images
        self.batch_wait_s = batch_wait_s
        self.metrics = metrics
        self.estimator = estimator
        self._base_scheduler = pipe.scheduler
        self.family = of_pipeline(pipe).family  # which latent-to-RGB factors previews use
        self.default_scheduler = schedulers.name_of(pipe.scheduler)
        self._stopping = threading.Event()
        self.current: list[Job] = []
        self.current_started = 0.0

    def stop(self) -> None:
        self._stopping.set()

    def run(self) -> None:
        while not self._stopping.is_set():
            batch = self.queue.take(timeout=0.2, max_images=self.max_batch_images, wait_s=self.batch_wait_s)
            if not batch:
                continue
            try:
                self.process(batch)
            finally:
                self.current = []
                self.queue.task_done()

    def process(self, batch: list[Job]) -> None:
        import torch

        batch = drop_unwanted(batch)
        if not batch:
            return
        started = time.monotonic()
        self.current, self.current_started = batch, started
        for job in batch:
            job.started = started
            if self.metrics is not None:
                self.metrics.queue_wait.observe(started - job.created)
        specs = [job.spec for job in batch]
        name = specs[0].scheduler or self.default_scheduler
        images = sum(job.images for job in batch)
        try:
            self.pipe.scheduler = schedulers.fresh(specs[0].scheduler, self._base_scheduler)
            # The batch's one LoRA set (batch_key), before the call: it encodes the prompts too.
            self.adapters.activate(specs[0].loras, refresh=True)
            # CPU generators: the same seed gives the same starting noise on any device.
            generators = [torch.Generator("cpu").manual_seed(seed) for spec in specs for seed in spec.seeds]
            outputs, step_ends = self._call(batch, specs, generators)
        except torch.OutOfMemoryError:
            release_device_memory()
            for job in batch:
                job.fail(OutOfMemory("the device ran out of memory; try fewer or smaller images"))
        except ServiceError as exc:  # cancelled, shutting down, a LoRA that does not fit this model
            for job in batch:
                job.fail(exc)
        except Exception as exc:  # noqa: BLE001 - the jobs report it; the worker keeps serving
            failure = InternalError.logged(exc, log)
            for job in batch:
                job.fail(failure)
        else:
            done = time.monotonic()
            if self.estimator is not None:
                durations = [end - begin for begin, end in zip([started, *step_ends], step_ends)]
                self.estimator.observe(specs, done - started, durations)
            if self.metrics is not None:
                self.metrics.observe_batch(len(batch), images, done - started, specs[0].steps)
            offset = 0
            for job in batch:
                mine = outputs[offset: offset + job.images]
                offset += job.images
                job.finish(RawResult(
                    images=mine,
                    scheduler_label=schedulers.label_of(name),
                    queue_ms=(job.started - job.created) * 1000,
                    inference_ms=(done - job.started) * 1000,
                ))
        finally:
            self.pipe.scheduler = self._base_scheduler

    def _call(self, batch: list[Job], specs: list, generators: list) -> tuple[list, list[float]]:
        """The pipeline call: its images, and when each step ended (for the estimator)."""
        import torch

        step_ends: list[float] = []

        def on_step(pipe, index, _timestep, callback_kwargs):
            step_ends.append(time.monotonic())
            if self.metrics is not None:
                self.metrics.steps.inc()
            live = []
            for job in batch:
                if job.cancelled and not job.done:
                    # Its result is dropped now; the others in the batch go on.
                    job.fail(Cancelled("cancelled by the client"))
                if not job.done:
                    live.append(job)
            if not live:
                raise Cancelled("every request in the batch was cancelled")
            latents, offset = callback_kwargs.get("latents"), 0
            for job in batch:  # the batch's latents are its jobs' images, in order
                step, total = index + 1, pipe.num_timesteps
                if not job.done:
                    preview = None
                    if latents is not None and previews.due(job.spec, step, total):
                        preview = previews.preview_jpeg(latents[offset: offset + job.images], self.family)
                    job.emit(Progress(step=step, total_steps=total, preview=preview))
                offset += job.images
            return callback_kwargs

        with torch.inference_mode():
            return self.mode.run(self.pipe, specs, generators, on_step), step_ends
