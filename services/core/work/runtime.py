"""A mode's life: load the model, start its engine, warm up, report SERVING, take jobs, drain and stop."""

from __future__ import annotations

import gc
import json
import logging
import threading
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from grpc_health.v1 import health_pb2

from imagegen.v1.contract import MAX_CLIP_SKIP

from ..checks import check_clip_skip
from ..control_checks import check_family
from ..config import ServiceConfig
from ..errors import DeadlineUnmeetable, InvalidArgument, ModelLoading, QueueFull, ShuttingDown
from ..mode import Mode
from ..models.catalog import Catalog, Entry
from ..models.controlnets import ControlNetCache, hash_in_background
from ..models.embeddings import read_folder
from ..models.upscalers import Upscalers
from ..prompts import check_prompt_chunks, max_chunks, text_encoders
from .estimate import WorkEstimator
from .metrics import ServiceMetrics
from .queue import Job, JobQueue
from .upscaling import UpscaleLane

log = logging.getLogger(__name__)
# Requests whose input images are decoded and fitted at once: the rest wait their turn, so decoding a
# crowd of large uploads never takes every core from the engine and the health checks.
CHECKS_AT_ONCE = 2
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class ModeRuntime:
    def __init__(self, mode: Mode, config: ServiceConfig, health):
        self.mode = mode
        self.config = config
        self.health = health
        self.queue = JobQueue(config.limits.max_queue)
        # Generation calls in the service at once (being checked, queued or running). Each holds a
        # handler thread; bounding them leaves threads free for health checks under any load.
        self.max_calls = config.limits.max_queue + config.limits.max_batch_images
        self._calls = threading.BoundedSemaphore(self.max_calls)
        self._checking = threading.BoundedSemaphore(CHECKS_AT_ONCE)
        self.metrics = ServiceMetrics(mode.name, self.queue)
        self.estimator = WorkEstimator()
        self.state = "loading"  # loading -> serving -> draining -> stopped
        # The checkpoints requests may name (GetInfo's models): --models-dir's and --model, the default.
        self.catalog = Catalog.build(config.model, config.models_dir, mode.contract.takes_mask)
        self.pool = None  # models.pool.ModelPool once loaded: hands the engines each request's model
        self.model = None  # models.loaded.Loaded once loaded: what the engine, infotext and GetInfo read
        # name -> models.embeddings.Embedding: --embeddings-dir, read once (small files; GetInfo lists them
        # while loading); every model loaded, the pool's too, gets those that fit it.
        self.embeddings = read_folder(config.embeddings_dir)
        # --controlnet-dir's ControlNets, loaded by the engine thread as requests name them (bounded).
        self.controlnets = ControlNetCache(config.controlnet_dir)
        self.engine = None  # work.engines.Engine once loaded: what serves
        # --upscaler-dir's models and A1111's resizers, on the model's device once loaded (Upscale's, where
        # the contract has it, and any other use's, such as a second pass); Upscale's own lane
        # (work/upscaling.py), as bounded as the queue.
        self.upscalers = Upscalers(config.upscaler_dir)
        self.upscale_lane = UpscaleLane(config.limits.max_queue)
        self._set_health(NOT_SERVING)

    def _set_health(self, status) -> None:
        for name in ("", self.mode.full_service_name):
            self.health.set(name, status)

    def load(self) -> None:
        """Load the model and warm it up, then report SERVING. Raises models.ModelLoadError."""
        from ..models.loading import load_model
        from ..models.pool import GB, ModelPool

        started = time.monotonic()
        entry = self.catalog.default

        def load_source(source: str):
            return load_model(self.mode, replace(self.config, model=source),
                              on_lora_load=self.metrics.lora_loads.inc, embeddings=self.embeddings,
                              metrics=self.metrics)

        self.model = load_source(entry.source)
        self.pool = ModelPool(self.catalog, load_source, self.model.device, self.config.max_loaded,
                              int(self.config.ram_cache_gb * GB), self.metrics, self.estimator)
        self.pool.add(self.model)
        log.info("model %s loaded from disk in %.1fs, as the default (%d model(s) listed)", entry.name,
                 time.monotonic() - started, len(self.catalog.entries))
        entry.learn(self.model)
        self.upscalers.device = self.model.device
        self.upscalers.read_in_background()
        # The hashes go into infotext and GetInfo; computed off the request path, while warming up.
        self.catalog.hash_in_background(self.config.cache_dir, self.mode.contract.takes_mask)
        hash_in_background(self.config.controlnet_dir)
        self.engine = self._engine(self.model)
        self.engine.start()
        if self.config.warmup:
            warm = Job(self.mode.check(self.mode.warmup_request(self.config), self.config, self.upscalers))
            self.queue.submit(warm)
            warm.wait()
        if self.state != "loading":
            return  # asked to stop while loading
        self.state = "serving"
        self._set_health(SERVING)
        log.info("%s SERVING after %.1fs (%s, %s, on %s, %s engine)", self.mode.name, time.monotonic() - started,
                 self.model.name, self.model.kind.describe(), self.model.device, self.engine.kind)

    def _engine(self, model):
        """The engine --engine asks for; the pipeline engine where the step engine cannot feed the model."""
        kind = self.config.engine
        if kind == "step":
            from ..engine.support import unsupported

            reason = unsupported(model.pipe)
            if reason:
                log.warning("the step engine cannot serve this model (%s): serving whole pipeline calls", reason)
                kind = "pipeline"
        if kind == "step":
            from ..engine.loop import StepEngine as engine_class
        else:
            from .pipeline import PipelineEngine as engine_class
        return engine_class(self.mode, model, self.queue, self.config, metrics=self.metrics,
                            estimator=self.estimator, pool=self.pool, controlnets=self.controlnets,
                            upscalers=self.upscalers)

    def check_accepting(self) -> None:
        if self.state == "loading":
            raise ModelLoading("the model is still loading; retry shortly")
        if self.state != "serving":
            raise ShuttingDown("the service is shutting down; retry on another replica")

    @contextmanager
    def call_slot(self):
        """Hold one of the service's generation call places for a call's life; refused at once
        (QueueFull, with a retry hint) when every place is taken."""
        if not self._calls.acquire(blocking=False):
            raise QueueFull(f"the service is busy ({self.max_calls} requests in progress); try again shortly",
                            retry_after_s=self.retry_hint())
        try:
            yield
        finally:
            self._calls.release()

    def check(self, request, entry: Entry | None = None):
        """The model named (`entry`, one of the catalogue's, when the caller chose it already), then the
        mode's checks (decoding input images), a few requests at a time; then what depends on the chosen
        model (`facts`): clip skip within its text encoders' layers, and the prompts' chunk counts
        (tokenizing only; bounded, and deciding what may share a pipeline call)."""
        entry = entry or self.catalog.choose(request.params.model)  # before any work: a name, not a path
        with self._checking:
            spec = replace(self.mode.check(request, self.config, self.upscalers), model=entry.name)
            check_family(spec.control, entry.family)
            if self.model is not None:
                most, tokenizer = self.facts(entry)
                check_clip_skip(spec.clip_skip, most)
                limit = max_chunks(self.config.limits.max_prompt_chars)
                # The chosen model's tokenizer (facts): a held model's carries its embeddings.
                spec = replace(spec, prompt_chunks=check_prompt_chunks(tokenizer, spec, limit))
            refused = self.engine.refusal(spec) if self.engine is not None else None
            if refused is not None:
                raise InvalidArgument(*refused)
            return spec

    def facts(self, entry: Entry) -> tuple[int, object]:
        """(clip skip bound, tokenizer) of the chosen model: the model's own when it is in memory, else
        what its entry knows (its configs, read at scan; a past load), else its folder's tokenizer (read
        once, no weights). What stays unknown until it loads (a single-file checkpoint's layers) is
        checked by the contract's bound here and by the model's own once loaded (engines.fitting)."""
        held = self.model if entry.is_default else self.pool.held(entry.name) if self.pool else None
        if held is not None:
            return held.max_clip_skip, text_encoders(held.pipe)[0][0]
        if entry.tokenizer is None:
            entry.tokenizer = self._folder_tokenizer(entry)
        # The default's tokenizer stands in where none can be read: SD's CLIP tokenizers share a vocabulary.
        return entry.max_clip_skip or MAX_CLIP_SKIP, entry.tokenizer or text_encoders(self.model.pipe)[0][0]

    def _folder_tokenizer(self, entry: Entry):
        """The tokenizer of a diffusers folder (a single file's: --model-config's), or None."""
        source = Path(entry.source)
        folder = source if source.is_dir() else self.config.model_config
        try:
            if folder is None:
                return None
            index = json.loads((Path(folder) / "model_index.json").read_text())
            import transformers

            return getattr(transformers, index["tokenizer"][1]).from_pretrained(Path(folder) / "tokenizer")
        except Exception as exc:  # noqa: BLE001 - a stand-in is used; the model's own once it loads
            log.info("model %s: no tokenizer read before loading (%s: %s)", entry.name, type(exc).__name__,
                     exc)
            return None

    def rescan(self, why: str) -> None:
        """Read --models-dir again (GetInfo's rescan_models, SIGHUP): see Catalog.rescan. Never blocks
        generation (headers only; hashes in the background) and never loads or reloads a model."""
        if self.catalog.models_dir is None:
            log.info("models rescan (%s): no --models-dir, nothing to rescan", why)
            return
        started = time.monotonic()
        forget = self.pool.forget if self.pool is not None else None
        done = self.catalog.rescan(on_drop=forget)
        if done.added or done.changed:
            self.catalog.hash_in_background(self.config.cache_dir, self.mode.contract.takes_mask,
                                            done.added + done.changed)
        if done.removed or done.changed:
            gc.collect()  # the weights of models dropped from memory
        log.info("models folder %s rescanned (%s) in %.2fs: %s; %d model(s) listed", self.catalog.models_dir,
                 why, time.monotonic() - started, done.describe(), len(self.catalog.entries))

    def submit(self, spec, time_remaining: float | None = None) -> Job:
        """Queue a spec. A deadline that the predicted wait and run cannot meet is refused now."""
        self.check_accepting()
        deadline = None
        if time_remaining is not None:
            deadline = time.monotonic() + time_remaining
            ahead, own = self.engine.predict(spec)
            if own is not None and self.pool is not None and spec.model:
                own += self.pool.switch_s(spec.model)  # its model brought to the device first
            if own is not None and ahead is not None and ahead + own > time_remaining:
                raise DeadlineUnmeetable(
                    f"the deadline ({time_remaining:.1f}s) cannot be met: about {ahead:.1f}s of queued work "
                    f"and {own:.1f}s for this request; allow more time or ask for less"
                )
        job = Job(spec, deadline)
        try:
            self.queue.submit(job)
        except QueueFull as full:
            full.retry_after_s = self.retry_hint()
            raise
        return job

    def retry_hint(self) -> float:
        """When a queue place is likely to be free: the engine's first running request done (0.1-30 s)."""
        left = self.engine.free_in() if self.engine is not None else None
        return 1.0 if left is None else min(30.0, max(0.1, left))

    def drain(self, grace_s: float) -> bool:
        """Stop taking work (health NOT_SERVING) and let queued and running work finish."""
        self.state = "draining"
        self.health.enter_graceful_shutdown()
        finished = self.queue.wait_idle(grace_s)
        for job in self.queue.close():
            job.fail(ShuttingDown("the service shut down before this request ran"))
        for current in self.engine.current if self.engine is not None else []:
            current.cancel()
            current.fail(ShuttingDown("the service shut down during this request"))
        return finished

    def stop(self) -> None:
        self.state = "stopped"
        if self.engine is not None:
            self.engine.stop()
            # Join: an engine thread still inside torch at interpreter exit aborts the process.
            self.engine.join(timeout=10)
