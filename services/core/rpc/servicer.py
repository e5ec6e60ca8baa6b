"""The gRPC face of a mode: protobuf in, GenerationSpec to the queue, protobuf out.

One class serves all three modes: their services have the same methods, differing only in the
request message, which the mode's `check` turns into a GenerationSpec.
"""

from __future__ import annotations

import dataclasses
import time
from contextlib import contextmanager

from imagegen.v1 import imagegen_pb2 as pb
from imagegen.v1.contract import MAX_CLIP_SKIP, OUTPUT_FORMATS

from ..checks import check_image, check_map_size
from ..imaging import images, preprocessors
from ..models import controlnets, loras, schedulers
from ..models.catalog import Entry
from ..spec import GenerationSpec
from ..work.queue import Progress, Queued
from ..work.runtime import ModeRuntime
from . import upscale

VERSION = "0.1.0"


def build_response(spec: GenerationSpec, raw, model: Entry, arrived: float) -> pb.GenerateResponse:
    """The response to `spec`, made by the checkpoint `model` (its name and hash go into infotext)."""
    encode_start = time.monotonic()
    out = []
    for img, seed in zip(raw.images, spec.seeds):
        text = spec.infotext(seed, raw.sampler, model.name, model.hash, raw.embedding_hashes)
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


def _by_name(item) -> str:
    return item[0].lower()


def embedding_info(embedding, loaded: bool) -> pb.EmbeddingInfo:
    """GetInfo's entry for one embedding (`loaded`: into the default model)."""
    return pb.EmbeddingInfo(name=embedding.name, vectors=embedding.vectors, shape=embedding.shape,
                            family=embedding.family, loaded=loaded, hash=embedding.hash, step=embedding.step,
                            sd_checkpoint=embedding.sd_checkpoint or "",
                            sd_checkpoint_name=embedding.sd_checkpoint_name or "")


class ModeServicer:
    def __init__(self, runtime: ModeRuntime):
        self.runtime = runtime
        self.mode = runtime.mode
        self.config = runtime.config
        # Read once, here (before serving): it looks into diffusers' classes, and diffusers' lazy module
        # loses attributes when a GetInfo thread and the loading thread import from it at once.
        self.samplers = sampler_infos()

    def _start(self, request, context, streaming: bool, entry: Entry):
        arrived = time.monotonic()
        spec = self.runtime.check(request, entry)
        if not streaming and spec.preview_every:
            spec = dataclasses.replace(spec, preview_every=0)  # a unary call has nowhere to send previews
        job = self.runtime.submit(spec, context.time_remaining())
        if not context.add_callback(job.cancel):
            job.cancel()  # the call already ended
        return arrived, spec, job

    @contextmanager
    def _call(self, request):
        """A call's place and its model's entry, held until it is answered (a rescan keeps the entry)."""
        with self.runtime.call_slot():
            self.runtime.check_accepting()  # before parsing: no decoding work while loading or draining
            with self.runtime.catalog.using(request.params.model) as entry:  # before any work
                yield entry

    def Generate(self, request, context):
        with self._call(request) as entry:
            arrived, spec, job = self._start(request, context, False, entry)
            raw = job.wait()
            return build_response(spec, raw, entry, arrived)

    def GenerateStream(self, request, context):
        with self._call(request) as entry:
            arrived, spec, job = self._start(request, context, True, entry)
            for event in job.iter_events():
                yield to_event(event)
            yield pb.GenerateEvent(result=build_response(spec, job.result, entry, arrived))

    def GetInfo(self, request, context):
        if request.rescan_models:
            self.runtime.rescan("GetInfo rescan_models")
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
            samplers=self.samplers,
            models=[self._model_info(entry) for entry in self.runtime.catalog.entries.values()],
            embeddings=[embedding_info(embedding, model is not None and name in model.embeddings)
                        for name, embedding in sorted(self.runtime.embeddings.items(), key=_by_name)],
            preprocessors=preprocessors.infos(),
            upscalers=upscale.upscaler_infos(self.runtime.upscalers),
            controlnets=[pb.ControlNetInfo(name=name, family=entry.family, hash=controlnets.known_hash(entry),
                                           loaded=self.runtime.controlnets.is_loaded(name))
                         for name, entry in controlnets.available(cfg.controlnet_dir).items()],
        )

    def Preprocess(self, request, context):
        with self.runtime.call_slot():
            self.runtime.check_accepting()
            unit = request.unit
            preprocessors.check(unit, "unit")
            img = check_image(unit.image, "unit.image.data", self.config.limits)
            seed = request.seed if request.HasField("seed") else 0
            if request.width or request.height:
                width, height = check_map_size(request, img, self.config.limits)
                found = preprocessors.control_image(unit, img, width, height, seed)
            else:
                found = preprocessors.detect(unit, img, seed)
            data = images.encode_image(found, OUTPUT_FORMATS["png"], "", 0)
            return pb.PreprocessResponse(image=pb.Image(data=data, mime_type="image/png"))

    def Upscale(self, request, context):
        """Only services whose contract has Upscale register it (add_Img2ImgServicer_to_server)."""
        with self.runtime.call_slot():
            self.runtime.check_accepting()
            return upscale.upscale(self.runtime, request, context)

    def _model_info(self, entry: Entry) -> pb.ModelInfo:
        loaded = self.runtime.pool is not None and self.runtime.pool.is_loaded(entry.name)
        return pb.ModelInfo(name=entry.name, family=entry.family, inpaint=entry.inpaint, hash=entry.hash,
                            loaded=loaded, is_default=entry.is_default, unusable=entry.unusable)
