"""The bounded request queue in front of a mode's one pipeline worker, and the jobs in it."""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from dataclasses import dataclass

from ..errors import Cancelled, QueueFull, ShuttingDown


@dataclass(frozen=True)
class Queued:
    position: int  # requests waiting ahead of this one; 0 = next (one may be running)


@dataclass(frozen=True)
class Progress:
    step: int
    total_steps: int
    preview: bytes | None = None  # a small JPEG of the current estimate (imaging/previews.py), when due


class Job:
    """One request's trip through the queue and the worker.

    The worker reports Progress events and then finishes or fails the job; a stream reads the
    events as they come, a unary call just waits for the end.
    """

    _END = object()

    def __init__(self, spec, deadline: float | None = None):
        self.spec = spec
        self.created = time.monotonic()
        self.deadline = deadline  # time.monotonic() by which the caller stops waiting, if any
        self.images = len(spec.seeds)
        self.batch_key = spec.batch_key()
        self.started: float | None = None
        self.events: queue.SimpleQueue = queue.SimpleQueue()
        self.result = None
        self.error: BaseException | None = None
        self._cancelled = threading.Event()
        self._done = threading.Event()
        self._end_lock = threading.Lock()
        self._queue: JobQueue | None = None

    # --- the caller's side
    def cancel(self) -> None:
        """Stop costing compute: leave the queue now, or stop at the next step if running."""
        if self._done.is_set():
            return
        self._cancelled.set()
        if self._queue is not None and self._queue.remove(self):
            self.fail(Cancelled("cancelled by the client while queued"))

    def wait(self):
        self._done.wait()
        if self.error is not None:
            raise self.error
        return self.result

    def iter_events(self):
        """Queued and Progress events until the job ends; then returns (or raises its error)."""
        while True:
            event = self.events.get()
            if event is self._END:
                break
            yield event
        if self.error is not None:
            raise self.error

    # --- the worker's side
    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def emit(self, event) -> None:
        self.events.put(event)

    def finish(self, result) -> None:
        self._end(result, None)

    def fail(self, error: BaseException) -> None:
        self._end(None, error)

    def _end(self, result, error) -> None:
        with self._end_lock:
            if self._done.is_set():
                return  # the first ending wins (a shutdown may fail a job the worker then finishes)
            self.result, self.error = result, error
            self._done.set()
        self.events.put(self._END)

    @property
    def done(self) -> bool:
        return self._done.is_set()


class JobQueue:
    """FIFO of waiting jobs, bounded; one worker takes from it. Keeps positions up to date."""

    def __init__(self, maxsize: int):
        self.maxsize = maxsize
        self._waiting: deque[Job] = deque()
        self._busy = False
        self._closed = False
        self._cond = threading.Condition()

    def submit(self, job: Job) -> None:
        with self._cond:
            if self._closed:
                raise ShuttingDown("the service is shutting down")
            if len(self._waiting) >= self.maxsize:
                raise QueueFull(f"the queue is full ({self.maxsize} waiting); try again shortly", retry_after_s=1.0)
            job._queue = self
            self._waiting.append(job)
            job.emit(Queued(len(self._waiting) - 1))
            self._cond.notify()

    def take(self, timeout: float | None = None, max_images: int = 1, wait_s: float = 0.0) -> list[Job]:
        """The next job and those waiting that can share its pipeline call, marking the worker busy.

        Gathers jobs with the first one's batch_key, in queue order, up to max_images images in all,
        waiting up to wait_s for more to arrive. [] on timeout, or once closed and empty.
        """
        with self._cond:
            if not self._cond.wait_for(lambda: self._waiting or self._closed, timeout):
                return []
            if not self._waiting:
                return []
            first = self._waiting.popleft()
            self._busy = True
            batch, images = [first], first.images
            until = time.monotonic() + wait_s
            while images < max_images:
                for job in list(self._waiting):
                    if job.batch_key == first.batch_key and images + job.images <= max_images:
                        self._waiting.remove(job)
                        batch.append(job)
                        images += job.images
                left = until - time.monotonic()
                if images >= max_images or left <= 0 or self._closed:
                    break
                self._cond.wait(left)
            self._announce_positions()
            return batch

    def take_if(self, fits, timeout: float | None = None) -> Job | None:
        """The head of the queue if fits(head), marking the worker busy; None when it does not fit, or
        nothing came within timeout (0: do not wait). The step engine admits in queue order this way."""
        with self._cond:
            if timeout == 0:
                ready = bool(self._waiting)
            else:
                ready = self._cond.wait_for(lambda: self._waiting or self._closed, timeout)
            if not ready or not self._waiting or not fits(self._waiting[0]):
                return None
            job = self._waiting.popleft()
            self._busy = True
            self._announce_positions()
            return job

    def set_busy(self, busy: bool) -> None:
        """The step engine says whether it has work in hand (wait_idle waits for both)."""
        with self._cond:
            self._busy = busy
            self._cond.notify_all()

    def task_done(self) -> None:
        with self._cond:
            self._busy = False
            self._cond.notify_all()

    def remove(self, job: Job) -> bool:
        with self._cond:
            try:
                self._waiting.remove(job)
            except ValueError:
                return False
            self._announce_positions()
            self._cond.notify_all()
            return True

    def close(self) -> list[Job]:
        """Refuse new jobs; return the ones still waiting (the caller decides their fate)."""
        with self._cond:
            self._closed = True
            left = list(self._waiting)
            self._waiting.clear()  # handed to the caller: the worker must not run them any more
            self._cond.notify_all()
            return left

    def waiting(self) -> list[Job]:
        with self._cond:
            return list(self._waiting)

    def wait_idle(self, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: not self._waiting and not self._busy, timeout)

    @property
    def depth(self) -> int:
        with self._cond:
            return len(self._waiting)

    def _announce_positions(self) -> None:
        for index, job in enumerate(self._waiting):
            job.emit(Queued(index))
