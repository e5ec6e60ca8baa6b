"""The pipeline engine: whole requests through the mode's diffusers pipeline call, batched when alike.

Jobs that can share a pipeline call (same size, steps, scheduler, guidance, strength, prompt chunks,
LoRA set: GenerationSpec.batch_key) run as one batch; each keeps its own prompts and seeds, so its
images are those it would get alone. The fallback for models the step engine cannot feed; it serves
every request feature the checks let through.
"""

from __future__ import annotations

import logging
import time

from ..errors import Cancelled, InternalError, OutOfMemory, ServiceError
from ..imaging import previews
from ..models.loading import ModelLoadError, ModelOutOfMemory
from .device import release_device_memory
from .engines import Engine, fitting
from .queue import Job, Progress, RawResult, drop_unwanted, progress_step

log = logging.getLogger(__name__)


class PipelineEngine(Engine):
    kind = "pipeline"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._current: list[Job] = []

    @property
    def current(self) -> list[Job]:
        return list(self._current)

    def refusal(self, spec) -> tuple[str, str] | None:
        if spec.hires is not None:  # a diffusers pipeline call is one pass
            return "hires", "the pipeline engine (--engine pipeline) runs no second pass: use the step engine"
        # ControlNet runs in the step engine only (its per-row conditioning); refused before any work.
        if spec.control:
            return ("params.control", "this service serves whole pipeline calls (--engine pipeline, or a model "
                                      "the step engine cannot feed), which run no ControlNet units")
        return None

    # --- estimates (other threads)
    def _running_left(self) -> float | None:
        """Predicted seconds until the running batch ends (0 when idle; None before any data)."""
        running = self.current
        if not running:
            return 0.0
        predicted = self.estimator.predict([job.spec for job in running])
        if predicted is None:
            return None
        return max(0.0, predicted - (time.monotonic() - self.current_started))

    def _until_free(self) -> float | None:
        """Predicted seconds until what is running and waiting now is done."""
        total = self._running_left()
        waiting = self.queue.waiting()
        if total is None or not waiting:
            return total
        predicted = self.estimator.predict_queue([job.spec for job in waiting])
        return None if predicted is None else total + predicted

    def predict(self, spec) -> tuple[float | None, float | None]:
        return self._until_free(), self.estimator.predict([spec])

    def free_in(self) -> float | None:
        return self._running_left()

    # --- the thread
    def run(self) -> None:
        limits = self.limits
        while not self._stopping.is_set():
            batch = self.queue.take(timeout=0.2, max_images=limits.max_batch_images, wait_s=limits.batch_wait_s)
            if not batch:
                continue
            try:
                self.process(batch)
            finally:
                self._current = []
                self.queue.task_done()

    def process(self, batch: list[Job]) -> None:
        import torch

        batch = drop_unwanted(batch)
        if not batch:
            return
        started = time.monotonic()
        self._current, self.current_started = batch, started
        for job in batch:
            job.start(started)
            if self.metrics is not None:
                self.metrics.queue_wait.observe(started - job.created)
        specs = [job.spec for job in batch]
        images = sum(job.images for job in batch)
        pinned, model = (), None
        try:
            # The batch's one model (batch_key): a switch or a load when it is not on the device.
            model = self.model_for(specs[0], why=f"{len(batch)} request(s) naming it")
            batch = fitting(model, batch)
            if not batch:
                return
            specs, images = [job.spec for job in batch], sum(job.images for job in batch)
            # Seeded samplers (DPM++ SDE) draw each image's noise from its seed, in the call's image order.
            model.pipe.scheduler = model.scheduler(specs[0], [seed for spec in specs for seed in spec.seeds])
            # The batch's one LoRA set (batch_key), before the call: it encodes the prompts too.
            pinned = model.adapters.pin(specs[0].loras)
            model.adapters.activate(pinned)
            # CPU generators: the same seed gives the same starting noise on any device.
            generators = [torch.Generator("cpu").manual_seed(seed) for spec in specs for seed in spec.seeds]
            outputs, step_ends = self._call(model, batch, specs, generators)
        except torch.OutOfMemoryError:
            release_device_memory()
            for job in batch:
                job.fail(OutOfMemory("the device ran out of memory; try fewer or smaller images"))
        except ModelLoadError as exc:  # the batch's model could not be brought over; other batches go on
            out_of_memory = isinstance(exc, ModelOutOfMemory)
            failure = OutOfMemory(str(exc)) if out_of_memory else InternalError.logged(exc, log)
            for job in batch:
                job.fail(failure)
        except ServiceError as exc:  # cancelled, shutting down, a LoRA that does not fit this model
            for job in batch:
                job.fail(exc)
        except Exception as exc:  # noqa: BLE001 - the jobs report it; the engine keeps serving
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
                    sampler=model.sampler_infotext(job.spec),
                    queue_ms=(job.started - job.created) * 1000,
                    inference_ms=(done - job.started) * 1000,
                    embedding_hashes=model.embedding_hashes(job.spec),
                ))
        finally:
            if model is not None:
                model.adapters.unpin(pinned)
                model.restore_scheduler()

    def _call(self, model, batch: list[Job], specs: list, generators: list) -> tuple[list, list[float]]:
        """The pipeline call: its images, and when each step ended (for the estimator)."""
        import torch

        step_ends: list[float] = []
        reported = dict.fromkeys(batch, 0)  # the last step each job's Progress told

        def on_step(pipe, index, _timestep, callback_kwargs):
            step_ends.append(time.monotonic())
            if self.metrics is not None:
                self.metrics.steps.inc()
            live = []
            for job in batch:
                if job.cancel_requested and not job.done:
                    # Its result is dropped now; the others in the batch go on.
                    job.fail(Cancelled("cancelled by the client"))
                if not job.done:
                    live.append(job)
            if not live:
                raise Cancelled("every request in the batch was cancelled")
            latents, offset = callback_kwargs.get("latents"), 0
            for job in batch:  # the batch's latents are its jobs' images, in order
                # In the steps asked for: PLMS calls the UNet once more, Heun twice a step.
                total = job.spec.steps_run
                step = progress_step(index + 1, pipe.num_timesteps, total)
                if not job.done and step > reported[job]:
                    reported[job] = step
                    preview = None
                    if latents is not None and previews.due(job.spec, step, total):
                        preview = previews.preview_jpeg(latents[offset: offset + job.images], model.family)
                    job.emit(Progress(step=step, total_steps=total, preview=preview))
                offset += job.images
            return callback_kwargs

        with torch.inference_mode():
            return self.mode.run(model.pipe, specs, generators, on_step), step_ends
