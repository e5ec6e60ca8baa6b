"""The one interface a mode's runtime drives, whichever engine serves: the step engine (engine/loop.py,
requests join and leave one shared denoising loop) or the pipeline engine (work/pipeline.py, whole
requests through diffusers' pipeline, batched when alike; the fallback for models the loop cannot feed).

An engine is the one thread that owns its model's pipeline (diffusers pipelines are not thread-safe).
It takes jobs from the queue, starts them (RUNNING), reports progress and finishes or fails each; other
threads only read its snapshots (`current`, `predict`, `free_in`).
"""

from __future__ import annotations

import threading
from abc import ABCMeta, abstractmethod

from ..checks import check_clip_skip
from ..control_checks import check_family
from ..errors import InvalidArgument
from ..models.loaded import Loaded
from .queue import Job, JobQueue


def fitting(model: Loaded, jobs: list[Job]) -> list[Job]:
    """The jobs `model` can serve; the others fail now, naming the field. A request for a model not yet
    loaded was checked by what was known of it then (a single-file checkpoint's text encoder layers are
    known once it loads), so its clip skip, and its units' family, are checked again here."""
    kept = []
    for job in jobs:
        try:
            check_clip_skip(job.spec.clip_skip, model.max_clip_skip)
            check_family(job.spec.control, model.family)
        except InvalidArgument as refused:
            job.fail(refused)
        else:
            kept.append(job)
    return kept


class Engine(threading.Thread, metaclass=ABCMeta):
    kind = ""  # GetInfo's engine: "step" or "pipeline"

    def __init__(self, mode, model: Loaded, job_queue: JobQueue, config, metrics=None, estimator=None, pool=None,
                 controlnets=None, upscalers=None):
        super().__init__(name=f"{mode.name}-{self.kind}-engine", daemon=True)
        self.mode, self.model, self.queue, self.config = mode, model, job_queue, config
        self.pool = pool  # models.pool.ModelPool: each request's model by name (None: `model` only)
        self.controlnets = controlnets  # models.controlnets.ControlNetCache: the units' ControlNets (or None)
        self.upscalers = upscalers  # models.upscalers.Upscalers: a hires fix's model upscalers (or None)
        self.limits = config.limits
        self.metrics, self.estimator = metrics, estimator
        self._stopping = threading.Event()
        self.current_started = 0.0  # when the oldest running request started

    def model_for(self, spec, why: str = "a request") -> Loaded:
        """The model a spec names ("" = the default), on the device. Engine thread only."""
        if self.pool is None or not spec.model:
            return self.model if self.pool is None else self.pool.get(self.pool.catalog.default.name, why)
        return self.pool.get(spec.model, why)

    def stop(self) -> None:
        self._stopping.set()

    @property
    @abstractmethod
    def current(self) -> list[Job]:
        """The requests running now (a copy: other threads read it)."""

    def refusal(self, spec) -> tuple[str, str] | None:
        """(field, why) when this engine cannot serve a request feature the checks let through."""
        return None

    @abstractmethod
    def predict(self, spec) -> tuple[float | None, float | None]:
        """Lower bounds for (the wait before spec runs, its run); None where nothing is known yet."""

    @abstractmethod
    def free_in(self) -> float | None:
        """Predicted seconds until a running request is done and frees its place (0 when idle)."""
