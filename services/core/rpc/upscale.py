"""The Upscale RPC's face: an UpscaleRequest checked, run in the upscale lane, answered (work/upscaling.py)."""

from __future__ import annotations

import time

from imagegen.v1 import imagegen_pb2 as pb

from ..imaging import images
from ..models.upscalers import Upscalers
from ..work.upscaling import check_upscale, run_upscale


def upscaler_infos(upscalers: Upscalers) -> list[pb.UpscalerInfo]:
    """GetInfo's upscalers."""
    return [pb.UpscalerInfo(name=f.name, scale=f.scale, architecture=f.architecture, file=f.file,
                            unusable=f.unusable) for f in upscalers.infos()]


def upscale(runtime, request: pb.UpscaleRequest, context) -> pb.UpscaleResponse:
    """One Upscale call, its call place already held: checks first, then the lane; cancelled when the
    client goes away (the lane stops waiting, or the run stops before its next tile)."""
    arrived = time.monotonic()
    spec = check_upscale(request, runtime.config, runtime.upscalers)
    remaining = context.time_remaining() if context is not None else None
    call = runtime.upscale_lane.call(None if remaining is None else arrived + remaining)
    if context is not None and not context.add_callback(call.cancel):
        call.cancel()  # the call already ended
    started = []

    def work(current):
        started.append(time.monotonic())
        return run_upscale(spec, runtime.upscalers, current.check)

    out = runtime.upscale_lane.run(call, work)
    done = time.monotonic()
    runtime.metrics.images_upscaled.inc()
    runtime.metrics.upscale_seconds.observe(done - started[0])
    data = images.encode_image(out, spec.output_format, spec.info, spec.quality, chunk="postprocessing")
    now = time.monotonic()
    image = pb.GeneratedImage(data=data, mime_type=spec.output_format.mime, width=out.width, height=out.height,
                              infotext=spec.info)
    timings = pb.Timings(queue_ms=(started[0] - arrived) * 1000, inference_ms=(done - started[0]) * 1000,
                         encode_ms=(now - done) * 1000, total_ms=(now - arrived) * 1000)
    return pb.UpscaleResponse(image=image, timings=timings)
