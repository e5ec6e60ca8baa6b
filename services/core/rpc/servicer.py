"""The gRPC face of a mode: protobuf in, GenerationSpec to the queue, protobuf out.

One class serves all three modes: their services have the same methods, differing only in the
request message, which the mode's `check` turns into a GenerationSpec.
"""

from __future__ import annotations

import dataclasses
import time

from imagegen.v1 import imagegen_pb2 as pb
from imagegen.v1.contract import MAX_CLIP_SKIP, OUTPUT_FORMATS

from ..imaging import images
from ..models import loras, schedulers
from ..models.catalog import Entry
from ..spec import GenerationSpec
from ..work.queue import Progress, Queued
from ..work.runtime import ModeRuntime

VERSION = "0.1.0"


def build_response(spec: GenerationSpec, raw, model: Entry, arrived: float) -> pb.GenerateResponse:
    """The response to `spec`, made by the checkpoint `model` (its name and hash go into infotext)."""
    encode_start = time.monotonic()
    out = []
    for img, seed in zip(raw.images, spec.seeds):
        text = spec.infotext(seed, raw.sampler, model.name, model.hash)
        out.append(
            pb.GeneratedImage(
                data=images.encode_image(img, spec.output_format, text, spec.quality),
                mime_type=spec.output_format.mime,
                width=img.width,
                height=img.height,
                seed=seed,
                infotext=text,
            )
        )
    now = time.monotonic()
    timings = pb.Timings(
        queue_ms=raw.queue_ms,
        inference_ms=raw.inference_ms,
        encode_ms=(now - encode_start) * 1000,
        total_ms=(now - arrived) * 1000,
    )
    return pb.GenerateResponse(images=out, timings=timings)


def sampler_infos() -> list[pb.SamplerInfo]:
    """GetInfo's samplers: each that runs here, with its A1111 name and schedule types."""
    return [pb.SamplerInfo(name=name, label=spec.label, schedule_types=schedulers.schedule_types(name),
                           automatic=spec.automatic)
            for name, spec in schedulers.SCHEDULERS.items() if schedulers.available(name)]


def to_event(event) -> pb.GenerateEvent:
    if isinstance(event, Queued):
        return pb.GenerateEvent(queued=pb.QueuedEvent(position=event.position))
    if isinstance(event, Progress):
        progress = pb.ProgressEvent(step=event.step, total_steps=event.total_steps)
        if event.preview is not None:
            progress.preview.CopyFrom(pb.Image(data=event.preview, mime_type="image/jpeg"))
        return pb.GenerateEvent(progress=progress)
    raise TypeError(f"unknown event {event!r}")


class ModeServicer:
    def __init__(self, runtime: ModeRuntime):
        self.runtime = runtime
        self.mode = runtime.mode
        self.config = runtime.config

    def _start(self, request, context, streaming: bool):
        arrived = time.monotonic()
        self.runtime.check_accepting()  # before parsing: no decoding work while loading or draining
        spec = self.runtime.check(request)
        if not streaming and spec.preview_every:
            spec = dataclasses.replace(spec, preview_every=0)  # a unary call has nowhere to send previews
        job = self.runtime.submit(spec, context.time_remaining())
        if not context.add_callback(job.cancel):
            job.cancel()  # the call already ended
        return arrived, spec, job

    def _entry(self, spec: GenerationSpec) -> Entry:
        catalog = self.runtime.catalog
        return catalog.by_name(spec.model) or catalog.default

    def Generate(self, request, context):
        with self.runtime.call_slot():
            arrived, spec, job = self._start(request, context, streaming=False)
            raw = job.wait()
            return build_response(spec, raw, self._entry(spec), arrived)

    def GenerateStream(self, request, context):
        with self.runtime.call_slot():
            arrived, spec, job = self._start(request, context, streaming=True)
            for event in job.iter_events():
                yield to_event(event)
            yield pb.GenerateEvent(result=build_response(spec, job.result, self._entry(spec), arrived))

    def GetInfo(self, request, context):
        cfg, limits, defaults = self.config, self.config.limits, self.config.defaults
        model, engine = self.runtime.model, self.runtime.engine  # None while loading
        contract = self.mode.contract
        return pb.ServiceInfo(
            mode=self.mode.name,
            model=cfg.model,
            device=model.device if model else "",
            dtype=model.dtype if model else "",
            schedulers=schedulers.names(),
            defaults=pb.Defaults(
                num_inference_steps=defaults.num_inference_steps,
                guidance_scale=defaults.guidance_scale,
                width=defaults.size,
                height=defaults.size,
                scheduler=model.default_scheduler if model else "",
                strength=contract.default_strength,
                mask_blur=contract.default_mask_blur,
                only_masked_padding=contract.default_only_masked_padding,
                quality=defaults.quality,
            ),
            # config.Limits has every pb.Limits field by its name (it is derived from them).
            limits=pb.Limits(**{name: getattr(limits, name) for name in pb.Limits.DESCRIPTOR.fields_by_name}),
            output_formats=[fmt.enum for fmt in OUTPUT_FORMATS.values()],
            version=VERSION,
            engine=engine.kind if engine else cfg.engine,
            model_family=model.family if model else "",
            inpaint_model=model.kind.inpaint if model else False,
            loras=loras.names(cfg.lora_dir),
            max_clip_skip=model.max_clip_skip if model else MAX_CLIP_SKIP,
            samplers=sampler_infos(),
            models=[self._model_info(entry) for entry in self.runtime.catalog.entries.values()],
        )

    def _model_info(self, entry: Entry) -> pb.ModelInfo:
        loaded = self.runtime.pool is not None and self.runtime.pool.is_loaded(entry.name)
        return pb.ModelInfo(name=entry.name, family=entry.family, inpaint=entry.inpaint, hash=entry.hash,
                            loaded=loaded, is_default=entry.is_default, unusable=entry.unusable)
