"""The step engine's thread: the one owner of a mode's pipeline, running one shared denoising loop.

Queued requests join at step boundaries while the row budget of their shape allows; every step is
one UNet call over the rows of one shape (shapes take turns, so none starves); a request whose rows
are done is decoded and answered at once; a cancelled or expired one leaves at the next step.

Which rows of a shape ride in a call: all of them, unless the device is a CPU where bigger calls no
longer pay (a row costs about the same in any call). Then a call takes just enough rows that every
request could be done by the time the longest one is, and picks the requests with the least slack
first (arrival minus the time their remaining steps need), so a 30-step request is not held to one
step per call of the whole crowd while 8-step ones come and go: the worst latencies fall at about
the same throughput. On a GPU every row rides: measured on an H200, taking fewer rows cost a fifth of
mixed-traffic throughput and did not lower p95.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque

from ..errors import Cancelled, DeadlinePassed, InternalError, OutOfMemory, ServiceError
from ..imaging import previews
from ..models import schedulers
from ..models.family import of_pipeline
from ..models.loras import LoraAdapters
from ..work.queue import Job, JobQueue, Progress
from ..work.worker import RawResult, drop_unwanted, release_device_memory, wait_for_device
from .denoise import decode, unet_step
from .rows import Row, encode_prompt

log = logging.getLogger(__name__)
# After running out of device memory, a shape's row budget is halved for this long.
OOM_BACKOFF_S = 60.0


class Active:
    """A request in the loop: its rows, and what the estimator and metrics want to know of it."""

    def __init__(self, job: Job, rows: list[Row], admitted: float):
        self.job, self.rows, self.admitted = job, rows, admitted
        self.step_seconds: list[float] = []

    @property
    def done(self) -> bool:
        return all(row.done for row in self.rows)

    @property
    def left(self) -> int:
        """Steps still to run."""
        first = self.rows[0]
        return len(first.timesteps) - first.index

    @property
    def unet_rows(self) -> int:
        return sum(row.unet_rows for row in self.rows)


class StepEngine(threading.Thread):
    def __init__(self, mode, pipe, job_queue: JobQueue, max_rows: int, row_pixels: int, metrics=None,
                 estimator=None, adapters: LoraAdapters | None = None, gather_s: float = 0.0):
        super().__init__(name=f"{mode.name}-engine", daemon=True)
        self.mode, self.pipe, self.queue = mode, pipe, job_queue
        self.adapters = adapters or LoraAdapters(pipe, None)
        # One UNet call takes at most max_rows guided rows of row_pixels (an unguided row costs half),
        # counted in latent pixels.
        self.scale = getattr(pipe, "vae_scale_factor", 8)
        self.budget = max_rows * 2 * row_pixels // self.scale**2
        self.metrics, self.estimator = metrics, estimator
        # An idle loop admits what arrives this soon after its first request too, so a crowd that comes
        # together starts (and, with equal steps, finishes) together instead of a step or two apart.
        self.gather_s = gather_s
        self._base_scheduler = pipe.scheduler
        self.family = of_pipeline(pipe).family  # which latent-to-RGB factors previews use
        self.default_scheduler = schedulers.name_of(pipe.scheduler)
        self._stopping = threading.Event()
        self._active: dict[Job, Active] = {}
        self._turns: deque = deque()  # shape keys, in the order they take turns
        self._squeezed: dict[tuple, float] = {}  # shape key -> until when its budget is halved (after OOM)
        self._call_s: dict[tuple, float] = {}  # shape key -> recent seconds per UNet call (moving average)
        self.current_started = 0.0

    # --- what the runtime reads
    @property
    def current(self) -> list[Job]:
        """The requests in the loop (read by other threads: a copy, taken in one step)."""
        return list(self._active.copy())

    def stop(self) -> None:
        self._stopping.set()

    # --- what estimates read (other threads: snapshots)
    def load_of(self, spec) -> tuple[int, int, int]:
        """(latent pixels, rows in a call, steps) a request brings to the loop."""
        pixels = (spec.height // self.scale) * (spec.width // self.scale)
        return pixels, len(spec.seeds) * (2 if spec.guidance_scale > 1 else 1), spec.steps_run

    def crowd(self) -> list[tuple[int, int, int]]:
        """(latent pixels, rows in a call, steps left) of each request in the loop."""
        loads = []
        for active in list(self._active.copy().values()):
            rows = [row for row in active.rows if not row.done]
            if rows:
                first = rows[0]
                loads.append((first.pixels, sum(row.unet_rows for row in rows), len(first.timesteps) - first.index))
        return loads

    def fits(self, spec) -> bool:
        """Whether a request would join at the next step (its shape's row budget has room)."""
        pixels, rows, _steps = self.load_of(spec)
        key = (spec.height // self.scale, spec.width // self.scale)
        used = self._used(key)
        return used == 0 or used + pixels * rows <= self._budget(key)

    # --- the loop
    def run(self) -> None:
        while not self._stopping.is_set():
            self._admit(wait=not self._active)
            if not self._active:
                continue
            self._drop_leavers()
            if self._active:
                key = self._next_shape()
                # No local keeps the rows: failed or finished ones must be freed even while the engine idles.
                self._step([row for active in self._pick(key) for row in active.rows if not row.done])
                self._finish_done()
            self.queue.set_busy(bool(self._active))

    def _budget(self, key: tuple) -> int:
        return self.budget // 2 if self._squeezed.get(key, 0) > time.monotonic() else self.budget

    def _used(self, key: tuple) -> int:
        return sum(row.pixels * row.unet_rows for a in list(self._active.copy().values()) for row in a.rows
                   if row.latent_shape == key and not row.done)

    def _admit(self, wait: bool) -> None:
        """Admit waiting requests, in queue order, while the head's rows fit their shape's budget
        (a shape with no rows always takes one request, however large)."""
        gather_until = 0.0
        while True:
            timeout = 0.2 if wait else max(0.0, gather_until - time.monotonic())
            job = self.queue.take_if(self._fits, timeout=timeout)
            if job is None:
                return
            if wait:
                gather_until = time.monotonic() + self.gather_s
            wait = False
            if drop_unwanted([job]):
                self._start(job)

    def _fits(self, job: Job) -> bool:
        return self.fits(job.spec)

    def _start(self, job: Job) -> None:
        import torch

        started = time.monotonic()
        job.started = started
        if self.metrics is not None:
            self.metrics.queue_wait.observe(started - job.created)
        spec = job.spec
        try:
            # Its LoRAs (loaded now if they are not), for its prompt encoding: they may change the text encoder.
            self.adapters.activate(spec.loras, refresh=True)
            with torch.inference_mode():
                embeds = encode_prompt(self.pipe, spec)
                rows = []
                for index, seed in enumerate(spec.seeds):
                    row = self.mode.admit(self.pipe, spec, embeds, seed, schedulers.fresh(spec.scheduler,
                                                                                          self._base_scheduler))
                    row.owner, row.image_index = job, index
                    rows.append(row)
        except torch.OutOfMemoryError:
            release_device_memory()
            job.fail(OutOfMemory("the device ran out of memory; try fewer or smaller images"))
            return
        except ServiceError as exc:  # a LoRA that does not fit this model
            job.fail(exc)
            return
        except Exception as exc:  # noqa: BLE001 - this request fails; the engine keeps serving
            job.fail(InternalError.logged(exc, log))
            return
        finally:
            self.pipe.scheduler = self._base_scheduler
        if not self._active:
            self.current_started = started
        self._active[job] = Active(job, rows, started)
        if rows[0].shape_key not in self._turns:
            self._turns.append(rows[0].shape_key)

    def _next_shape(self) -> tuple:
        """Shapes take turns, one step each."""
        live = {row.shape_key for a in self._active.values() for row in a.rows if not row.done}
        self._turns = deque(key for key in self._turns if key in live)
        self._call_s = {key: s for key, s in self._call_s.items() if key in live}
        while self._turns:
            key = self._turns[0]
            self._turns.rotate(-1)
            if key in live:
                return key
        return next(iter(live))

    def _drop_leavers(self) -> None:
        """A cancelled or expired request leaves now and stops costing compute."""
        now = time.monotonic()
        for job in list(self._active):
            if job.cancelled and not job.done:
                job.fail(Cancelled("cancelled by the client"))
            elif job.deadline is not None and now >= job.deadline and not job.done:
                job.fail(DeadlinePassed("the deadline passed while the request ran"))
            if job.done:
                del self._active[job]

    def _pick(self, key: tuple) -> list[Active]:
        """The requests of one shape that step in this call (see the module's docstring)."""
        group = [a for a in self._active.values() if not a.done and a.rows[0].shape_key == key]
        rows = sum(a.unet_rows for a in group)
        longest = max((a.left for a in group), default=0)
        # Rows per call with which every request could be done by the longest one's last step.
        need = math.ceil(sum(a.left * a.unet_rows for a in group) / longest) if longest else rows
        if need >= rows or self.estimator is None or self.pipe.unet.device.type != "cpu":
            return group
        if self.estimator.batching_pays(group[0].rows[0].pixels, need, rows) is not False:
            return group
        unit = self._call_s.get(key, 0.0)  # before the first call: arrival order
        picked, taken = [], 0
        for active in sorted(group, key=lambda a: a.job.created - a.left * unit):
            if taken >= need:
                break
            picked.append(active)
            taken += active.unet_rows
        return picked

    def _step(self, rows: list[Row]) -> None:
        import torch

        if not rows:
            return
        started = time.monotonic()
        try:
            self.adapters.activate(rows[0].loras)  # the rows' LoRA set (one per shape key); none: plain model
            with torch.inference_mode():
                unet_step(self.pipe.unet, rows)
            # The call's real time, for the estimator and for whether bigger calls pay (_pick).
            wait_for_device(self.pipe.unet.device)
        except torch.OutOfMemoryError:
            release_device_memory()
            self._squeezed[rows[0].latent_shape] = time.monotonic() + OOM_BACKOFF_S
            self._fail({row.owner for row in rows}, OutOfMemory("the device ran out of memory; try fewer or smaller "
                                                                "images"))
            return
        except ServiceError as exc:  # a LoRA reloaded after eviction no longer there, or not fitting
            self._fail({row.owner for row in rows}, exc)
            return
        except Exception as exc:  # noqa: BLE001 - these requests fail; the engine keeps serving
            self._fail({row.owner for row in rows}, InternalError.logged(exc, log))
            return
        seconds = time.monotonic() - started
        key = rows[0].shape_key
        self._call_s[key] = seconds if key not in self._call_s else 0.8 * self._call_s[key] + 0.2 * seconds
        if self.metrics is not None:
            self.metrics.steps.inc()
            self.metrics.step_rows.observe(sum(row.unet_rows for row in rows))
            self.metrics.step_seconds.observe(seconds)
        if self.estimator is not None:
            self.estimator.observe_step(rows[0].pixels, sum(row.unet_rows for row in rows), seconds)
        for job in {row.owner for row in rows}:
            active = self._active[job]
            active.step_seconds.append(seconds)
            first = active.rows[0]
            step, total = first.index, len(first.timesteps)
            preview = None
            if previews.due(job.spec, step, total):
                preview = previews.preview_jpeg(torch.cat([row.latents for row in active.rows]), self.family)
            job.emit(Progress(step=step, total_steps=total, preview=preview))

    def _fail(self, jobs, error) -> None:
        for job in jobs:
            job.fail(error)
            self._active.pop(job, None)

    def _finish_done(self) -> None:
        import torch

        finished = [active for active in self._active.values() if active.done]
        if not finished:
            return
        try:
            with torch.inference_mode():
                images = decode(self.pipe, [row for active in finished for row in active.rows])
        except torch.OutOfMemoryError:
            release_device_memory()
            self._fail([a.job for a in finished], OutOfMemory("the device ran out of memory while decoding"))
            return
        except Exception as exc:  # noqa: BLE001 - these requests fail; the engine keeps serving
            self._fail([a.job for a in finished], InternalError.logged(exc, log))
            return
        done = time.monotonic()
        offset = 0
        for active in finished:
            job, spec = active.job, active.job.spec
            mine = [self.mode.finish(spec, image) for image in images[offset: offset + len(active.rows)]]
            offset += len(active.rows)
            del self._active[job]
            if self.estimator is not None:
                self.estimator.observe([spec], done - active.admitted, active.step_seconds)
            if self.metrics is not None:
                self.metrics.observe_batch(1, len(mine), done - active.admitted, len(active.step_seconds))
            job.finish(RawResult(
                images=mine,
                scheduler_label=schedulers.label_of(spec.scheduler or self.default_scheduler),
                queue_ms=(job.started - job.created) * 1000,
                inference_ms=(done - job.started) * 1000,
            ))
        if self._active:
            self.current_started = min(a.admitted for a in self._active.values())
