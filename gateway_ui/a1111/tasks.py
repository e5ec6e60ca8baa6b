"""The API's calls in flight, per caller, and what /progress, /interrupt and /skip read of them.

A call (one POST /txt2img or /img2img) is a Task: its batches (n_iter) run at once as hub jobs of the
caller's owner. /progress sums the caller's tasks as A1111 sums its one job queue; /interrupt stops all
of the caller's jobs, /skip the oldest one (A1111 skips the batch it is on and goes on with the next;
here the batches run together, so the first of them stops and the others finish). Nobody else's jobs
are read or touched.
"""

from __future__ import annotations

import base64
import secrets
import threading
import time
from dataclasses import dataclass, field

from ..hub import Hub, Job


@dataclass
class Task:
    id: str
    owner: str
    mode: str
    total: int  # batches
    created: float = field(default_factory=time.time)
    started_s: float = field(default_factory=time.monotonic)
    jobs: list[Job] = field(default_factory=list)
    finished: int = 0  # batches ended (done, stopped or failed)


@dataclass
class Flags:
    """A caller's last stop, as A1111's state shows it until its next call."""

    interrupted: bool = False
    skipped: bool = False


class Tasks:
    def __init__(self, hub: Hub):
        self.hub = hub
        self._tasks: dict[str, Task] = {}
        self._flags: dict[str, Flags] = {}
        self._lock = threading.Lock()

    def open(self, owner: str, mode: str, total: int) -> Task:
        task = Task(f"task({secrets.token_hex(8)})", owner, mode, total)
        with self._lock:
            self._tasks[task.id] = task
            self._flags.pop(owner, None)
        return task

    def batch_ended(self, task: Task) -> None:
        with self._lock:
            task.finished += 1

    def close(self, task: Task) -> None:
        with self._lock:
            self._tasks.pop(task.id, None)

    def of(self, owner: str) -> list[Task]:
        with self._lock:
            return sorted((t for t in self._tasks.values() if t.owner == owner), key=lambda t: t.started_s)

    def interrupt(self, owner: str) -> int:
        """Stop every job of the caller's at its next step; how many."""
        with self._lock:
            self._flags.setdefault(owner, Flags()).interrupted = True
        return len(self.hub.cancel(owner))

    def skip(self, owner: str) -> int:
        """Stop the caller's oldest job in flight (the others go on); how many (0 or 1)."""
        jobs = self.hub.jobs(owner)
        if not jobs:
            return 0
        with self._lock:
            self._flags.setdefault(owner, Flags()).skipped = True
        return len(self.hub.cancel(owner, job_ids={jobs[0].id}))

    def progress(self, owner: str, skip_current_image: bool = False) -> dict:
        """A1111's /progress answer for the caller's tasks: 0 and 0 and job_count 0 when idle."""
        tasks = self.of(owner)
        with self._lock:
            flags = self._flags.get(owner, Flags())
        state = {"skipped": flags.skipped, "interrupted": flags.interrupted, "stopping_generation": False,
                 "job": "", "job_count": 0, "job_timestamp": "0", "job_no": 0, "sampling_step": 0,
                 "sampling_steps": 0}
        if not tasks:
            return {"progress": 0.0, "eta_relative": 0.0, "state": state, "current_image": None, "textinfo": None}
        count = sum(task.total for task in tasks)
        finished = sum(task.finished for task in tasks)
        live = [job for task in tasks for job in task.jobs if job.active]
        running = [job for job in live if job.total_steps]
        now = running[0] if running else (live[0] if live else None)
        # A1111's arithmetic: 0.01 + the batches done and the current one's steps, over the batches.
        done = finished + sum(job.fraction for job in live)
        progress = min(1.0, 0.01 + done / count)
        elapsed = time.monotonic() - tasks[0].started_s
        state.update(job=tasks[0].id, job_count=count, job_no=finished,
                     job_timestamp=time.strftime("%Y%m%d%H%M%S", time.localtime(tasks[0].created)),
                     sampling_step=now.step if now else 0, sampling_steps=now.total_steps if now else 0)
        previews = [job for job in running if job.preview]
        image = None
        if previews and not skip_current_image:
            image = base64.b64encode(max(previews, key=lambda job: job.fraction).preview).decode()
        return {"progress": progress, "eta_relative": elapsed / progress - elapsed, "state": state,
                "current_image": image, "textinfo": _textinfo(now)}


def _textinfo(job: Job | None) -> str | None:
    if job is None:
        return None
    if job.total_steps:
        return f"{job.mode}: step {job.step}/{job.total_steps}"
    return f"{job.mode}: queued, {job.position} ahead"
