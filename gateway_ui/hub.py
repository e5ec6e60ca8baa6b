"""The generation hub: every generation the gateway forwards, whoever asked for it (a tab, the A1111 API).

One place that starts a generation on its mode's service, follows its events (keeping the last progress
and preview in memory, so `/progress` and the tabs read the same), cancels by owner or id, and saves
the results. The tabs and the HTTP facade are thin translations of their inputs into requests for it.

An owner names who may see and stop a job: a browser session ("tab:<session>"), an API user
("api:<user>", "api:" for anonymous callers). Nothing here knows Gradio or HTTP.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

from services.client import Progress, Queued, Result

from .backend import GenerationStream, ModeBackend
from .outputs import OutputStore
from .styles import StyleBook

# A job's states, in the order it goes through them.
QUEUED, RUNNING, FINISHED, INTERRUPTED, FAILED = "queued", "running", "finished", "interrupted", "failed"


@dataclass
class Job:
    """One generation call on one service, as the hub follows it."""

    id: str
    mode: str
    owner: str
    stream: GenerationStream
    created: float = field(default_factory=time.time)  # wall clock: what A1111's job_timestamp shows
    started_s: float = field(default_factory=time.monotonic)
    state: str = QUEUED
    position: int = 0  # requests ahead of it while queued
    step: int = 0  # steps done, of total_steps (0 until the first step)
    total_steps: int = 0
    preview: bytes | None = None  # the last live preview (JPEG), None before the first
    result: Result | None = None

    @property
    def fraction(self) -> float:
        """How far along, 0..1 (1 once finished)."""
        if self.state == FINISHED:
            return 1.0
        return self.step / self.total_steps if self.total_steps else 0.0

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.started_s

    @property
    def active(self) -> bool:
        return self.state in (QUEUED, RUNNING)


class Hub:
    """Generations in flight, by id, for the tabs and the API alike."""

    def __init__(self, backends: dict[str, ModeBackend], outputs: OutputStore | None = None,
                 preview_every: int = 0, styles: StyleBook | None = None):
        self.backends = backends
        self.styles = styles or StyleBook(None)  # the prompt styles the tabs and the API offer
        self.outputs = outputs  # None: nothing is kept on disk
        self.preview_every = preview_every  # live previews every this many steps (0: none)
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def start(self, mode: str, request, owner: str) -> Job:
        """Send `request` to `mode`'s service; follow the job's events with `follow`."""
        if self.preview_every and not request.params.preview_every:
            request.params.preview_every = self.preview_every
        job = Job(secrets.token_hex(8), mode, owner, self.backends[mode].stream(request))
        with self._lock:
            self._jobs[job.id] = job
        return job

    def follow(self, job: Job) -> Iterator:
        """The job's events (Queued, Progress, then its Result last), each recorded on the job first.
        Failures raise the backend's GenerationError (Interrupted when stopped on purpose). Leaving
        early cancels the service's work; the job leaves the hub when its stream ends."""
        try:
            for event in job.stream:
                if isinstance(event, Queued):
                    job.position = event.position
                elif isinstance(event, Progress):
                    job.state, job.step, job.total_steps = RUNNING, event.step, event.total_steps
                    if event.preview:
                        job.preview = event.preview
                elif isinstance(event, Result):
                    job.result, job.state = event, FINISHED
                yield event
        except Exception:
            job.state = INTERRUPTED if job.stream.interrupted else FAILED
            raise
        finally:
            if job.active:  # left early without a result (the caller went away)
                job.state = INTERRUPTED
                job.stream.cancel()
            with self._lock:
                self._jobs.pop(job.id, None)

    def run(self, mode: str, request, owner: str, on_event: Callable | None = None) -> Result:
        """Start and follow to the end: the Result (or the backend's GenerationError)."""
        job = self.start(mode, request, owner)
        for event in self.follow(job):
            if isinstance(event, Result):
                return event
            if on_event is not None:
                on_event(job, event)
        raise AssertionError("unreachable: a stream ends with its result or raises")

    def jobs(self, owner: str | None = None) -> list[Job]:
        """The jobs in flight (of `owner`; None: everyone's), oldest first."""
        with self._lock:
            jobs = list(self._jobs.values())
        return [job for job in jobs if owner is None or job.owner == owner]

    def cancel(self, owner: str, mode: str | None = None, job_ids=None) -> list[Job]:
        """Stop `owner`'s jobs (of `mode`, or those named by id; else all of them) at their next step."""
        chosen = [job for job in self.jobs(owner)
                  if mode in (None, job.mode) and (job_ids is None or job.id in job_ids)]
        for job in chosen:
            job.stream.cancel()
        return chosen

    def save(self, mode: str, images) -> None:
        """Keep the final images on disk (when the gateway keeps outputs); SaveError when it cannot."""
        if self.outputs is not None:
            self.outputs.save(mode, images)

    def close(self) -> None:
        """Every job cancelled, the channels closed."""
        for job in self.jobs():
            job.stream.cancel()
        for backend in self.backends.values():
            backend.close()
