"""The bounded request queue in front of a mode's engine, and the jobs in it."""

from __future__ import annotations

import enum
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass

from ..errors import Cancelled, DeadlinePassed, QueueFull, ShuttingDown


class Status(enum.Enum):
    """Where a request is: waiting, in an engine, or ended one of three ways."""

    QUEUED = "queued"
    RUNNING = "running"
    FINISHED = "finished"
    CANCELLED = "cancelled"
    FAILED = "failed"


ENDED = frozenset({Status.FINISHED, Status.CANCELLED, Status.FAILED})


@dataclass(frozen=True)
class Queued:
    position: int  # requests waiting ahead of this one; 0 = next (one may be running)


@dataclass(frozen=True)
class Progress:
    step: int
    total_steps: int
    preview: bytes | None = None  # a small JPEG of the current estimate (imaging/previews.py), when due


def progress_step(calls_done: int, calls: int, steps: int) -> int:
    """The steps done, in the steps a request asked for, after `calls_done` of its `calls` UNet calls:
    PLMS calls the UNet once more than its steps, Heun and DPM2 about twice a step."""
    return calls_done * steps // calls if calls else steps


@dataclass
class RawResult:
    """What an engine hands back to a job: PIL images, and where the time went."""

    images: list
    sampler: dict  # infotext's Sampler (and Schedule type) pairs
    queue_ms: float
    inference_ms: float
    embedding_hashes: tuple[tuple[str, str], ...] = ()  # (name, hash) of the embeddings used: `TI hashes`


class Job:
    """One request's trip through the queue and an engine, with its explicit `status`.

    The engine starts the job (RUNNING), reports Progress events and then finishes or fails it; a
    stream reads the events as they come, a unary call just waits for the end. `cancel_requested` is
    the one signal another thread sends in (the client went away): the engine acts on it at its next
    step.
    """

    _END = object()

    def __init__(self, spec, deadline: float | None = None):
        self.spec = spec
        self.created = time.monotonic()
        self.deadline = deadline  # time.monotonic() by which the caller stops waiting, if any
        self.images = len(spec.seeds)
        self.batch_key = spec.batch_key()
        self.started: float | None = None
        self.status = Status.QUEUED
        self.events: queue.SimpleQueue = queue.SimpleQueue()
        self.result = None
        self.error: BaseException | None = None
        self._cancel = threading.Event()
        self._done = threading.Event()
        self._end_lock = threading.Lock()
        self._queue: JobQueue | None = None

    # --- the caller's side
    def cancel(self) -> None:
        """Stop costing compute: leave the queue now, or stop at the next step if running."""
        if self._done.is_set():
            return
        self._cancel.set()
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

    # --- the engine's side
    @property
    def cancel_requested(self) -> bool:
        return self._cancel.is_set()

    def start(self, now: float) -> None:
        """An engine took it: it runs from now."""
        with self._end_lock:  # a shutdown may end it from another thread meanwhile
            self.started = now
            if self.status is Status.QUEUED:
                self.status = Status.RUNNING

    def emit(self, event) -> None:
        self.events.put(event)

    def finish(self, result) -> None:
        self._end(result, None)

    def fail(self, error: BaseException) -> None:
        self._end(None, error)

    def _end(self, result, error) -> None:
        with self._end_lock:
            if self._done.is_set():
                return  # the first ending wins (a shutdown may fail a job the engine then finishes)
            self.result, self.error = result, error
            self.status = (Status.FINISHED if error is None
                           else Status.CANCELLED if isinstance(error, Cancelled) else Status.FAILED)
            self._done.set()
        self.events.put(self._END)

    @property
    def done(self) -> bool:
        return self._done.is_set()


def drop_unwanted(jobs: list[Job]) -> list[Job]:
    """Jobs cancelled while queued, or whose deadline passed, are failed before any compute; the rest."""
    now, keep = time.monotonic(), []
    for job in jobs:
        if job.cancel_requested:
            job.fail(Cancelled("cancelled by the client while queued"))
        elif job.deadline is not None and now >= job.deadline:
            job.fail(DeadlinePassed("the deadline passed while the request was queued"))
        else:
            keep.append(job)
    return keep


class JobQueue:
    """FIFO of waiting jobs, bounded; one engine takes from it. Keeps positions up to date."""

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
        """The next job and those waiting that can share its pipeline call, marking the engine busy.

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

    def take_chosen(self, choose, timeout: float | None = None) -> Job | None:
        """The waiting job that choose(waiting jobs, in queue order) names by its index, marking the engine
        busy; None when it names none, or nothing came within timeout (0: do not wait). The step engine
        admits this way (its scheduler decides who may join, and who may pass whom)."""
        with self._cond:
            if timeout == 0:
                ready = bool(self._waiting)
            else:
                ready = self._cond.wait_for(lambda: self._waiting or self._closed, timeout)
            if not ready or not self._waiting:
                return None
            index = choose(list(self._waiting))
            if index is None:
                return None
            job = self._waiting[index]
            del self._waiting[index]
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
            self._waiting.clear()  # handed to the caller: the engine must not run them any more
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
