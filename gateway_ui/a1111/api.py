"""The routes: /txt2img and /img2img through the hub, /progress, /interrupt, /skip, /options, /sd-models;
the catalogue (catalog.py) adds the rest to the same router, under the same access and error shapes."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time

import anyio
from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from imagegen.v1.infotext import (
    CFG_SCALE,
    CLIP_SKIP,
    DENOISING_STRENGTH,
    MODEL,
    MODEL_HASH,
    SAMPLER,
    SEED,
    SIZE,
    STEPS,
    split_infotext,
)
from services.client import Result

from ..backend import GenerationError, Interrupted
from ..hub import Hub
from ..outputs import SaveError
from ..styles import UnknownStyle, styled_hires
from ..xyz.run import draw
from . import catalog, controlnet, extras
from .access import owner_dependency
from .errors import field_error, from_generation
from .mapping import Plan, plan
from .models import Img2ImgRequest, Txt2ImgRequest, _Request
from .options import CHECKPOINT, Options, model_for, sd_models
from .routing import MB, route_class
from .tasks import Task, Tasks
from .xyz import script_of

log = logging.getLogger("gateway")

PREFIX = "/sdapi/v1"
VERSION = "imagegen"  # info's "version" (A1111 writes its git tag)
# Threads that follow generations (each waits on its stream), apart from the pool the other routes use,
# so many long generations never hold up /progress or /interrupt.
FOLLOWERS = 64
DISCONNECT_POLL_S = 0.5
# Infotext keys info reports in fields of their own; the rest go to extra_generation_params.
_OWN_KEYS = {STEPS, SAMPLER, CFG_SCALE, SEED, SIZE, MODEL, MODEL_HASH, DENOISING_STRENGTH, CLIP_SKIP}


class Generator:
    """Runs an A1111 call: its batches at once through the hub (the services batch them), then the answer."""

    def __init__(self, hub: Hub, tasks: Tasks, options: Options):
        self.hub, self.tasks, self.options = hub, tasks, options
        self.limiter = anyio.CapacityLimiter(FOLLOWERS)

    async def run(self, req: _Request, owner: str, request: Request) -> dict:
        chosen = self.options.explicit(owner)
        script = script_of(req)  # the x/y/z plot: its cells are the call's requests
        work = plan(self._styled(script.base(req) if script else req), chosen)
        model = await run_in_threadpool(self._model, req, chosen, work.mode)
        units, places = await run_in_threadpool(self._control, req, work.mode)
        for one in work.requests:
            one.params.model = model
            one.params.control.extend(units)
        if script:
            work.requests = await run_in_threadpool(script.requests, work.requests[0], self.hub, work.mode,
                                                    req.scheduler or "")
        task = self.tasks.open(owner, work.mode, len(work.requests))
        try:
            task.jobs = [self.hub.start(work.mode, r, owner) for r in work.requests]
            outcomes = await self._follow_all(task, request)
        finally:
            self.tasks.close(task)
        unexpected = next((o for o in outcomes if isinstance(o, BaseException)
                           and not isinstance(o, GenerationError)), None)
        if unexpected is not None:  # a fault of the gateway: the route logs it with an id
            raise unexpected
        failure = next((o for o in outcomes if isinstance(o, GenerationError) and not isinstance(o, Interrupted)),
                       None)
        if failure is not None:
            raise from_generation(failure, controlnet.field_namer(places))
        results = [o for o in outcomes if isinstance(o, Result)]  # stopped batches leave nothing
        plotted = await run_in_threadpool(draw, script.plot, outcomes) if script else None
        saved = plotted.saved if plotted else [image for result in results for image in result.images]
        if req.save_images and saved:
            await run_in_threadpool(self._save, work.mode, saved)
        reply = answer(req, work, results, task)
        return script.answer(reply, plotted, req.send_images) if script else reply

    def _styled(self, req: _Request) -> _Request:
        """The request with its styles applied to its prompts (a 422 naming `styles` for an unknown one)."""
        if not req.styles:
            return req
        try:
            prompt, negative = self.hub.styles.apply(req.styles, req.prompt, req.negative_prompt)
        except UnknownStyle as err:
            raise field_error("styles", str(err)) from None
        update = {"prompt": prompt, "negative_prompt": negative}
        if isinstance(req, Txt2ImgRequest):  # the hires fix's own prompts too, as A1111 styles them
            update["hr_prompt"], update["hr_negative_prompt"] = styled_hires(
                self.hub.styles, req.styles, req.prompt, req.negative_prompt, req.hr_prompt, req.hr_negative_prompt)
        return req.model_copy(update=update)

    def _control(self, req: _Request, mode: str) -> tuple[list, list[str]]:
        """The request's ControlNet units (alwayson_scripts.controlnet) and their places in it, checked
        against the mode's GetInfo: a thread's work."""
        if controlnet.script_args(req) is None:
            return [], []
        return controlnet.read_units(req, self.hub.backends[mode].info())

    def _model(self, req: _Request, chosen: dict, mode: str) -> str:
        """The checkpoint a call runs on: its override_settings' (which must exist for its mode), else the
        caller's option where its mode has it, else "" (the mode's default). Asks GetInfo: a thread's work."""
        wanted = (req.override_settings or {}).get(CHECKPOINT)
        if wanted:
            return model_for(str(wanted), mode, self.hub, f"override_settings.{CHECKPOINT}")
        if chosen.get(CHECKPOINT):
            return model_for(str(chosen[CHECKPOINT]), mode, self.hub, CHECKPOINT, strict=False)
        return ""

    async def _follow_all(self, task: Task, request: Request) -> list:
        """Every batch's Result or error, in seed order; the caller going away stops them."""
        follow = [asyncio.ensure_future(anyio.to_thread.run_sync(self._follow, task, job, limiter=self.limiter))
                  for job in task.jobs]
        waiting = asyncio.gather(*follow, return_exceptions=True)
        while not waiting.done():
            await asyncio.wait([waiting], timeout=DISCONNECT_POLL_S)
            if not waiting.done() and await request.is_disconnected():
                log.info("A1111 API: the caller of %s went away; its batches stop", task.id)
                self.hub.cancel(task.owner, job_ids={job.id for job in task.jobs})
        return waiting.result()

    def _follow(self, task: Task, job):
        try:
            for event in self.hub.follow(job):
                if isinstance(event, Result):
                    return event
            raise AssertionError("unreachable: a stream ends with its result or raises")
        except GenerationError as err:
            if not isinstance(err, Interrupted):  # one batch failed: the call fails, the others stop
                self.hub.cancel(task.owner, job_ids={other.id for other in task.jobs if other is not job})
            return err
        finally:
            self.tasks.batch_ended(task)

    def _save(self, mode: str, images: list) -> None:
        try:
            self.hub.save(mode, images)
        except SaveError as err:  # the images are still returned; the operator's log says why
            log.warning("A1111 API: %s images not saved: %s", mode, err)


def answer(req: _Request, work: Plan, results: list[Result], task: Task) -> dict:
    """A1111's TextToImageResponse / ImageToImageResponse: images, parameters echoed, info as JSON text."""
    images = [image for result in results for image in result.images]
    infotexts = [image.infotext for image in images]
    seeds = [image.seed for image in images] or [work.seed]
    pairs = split_infotext(infotexts[0])[2] if infotexts else {}
    count = max(1, len(images))
    parameters = req.model_dump()
    if isinstance(req, Img2ImgRequest):  # A1111 leaves the images out of the echo
        parameters.update(init_images=None, mask=None)
    first = images[0] if images else None
    sent = work.requests[0].params
    hires = work.mode == "txt2img" and work.requests[0].HasField("hires")
    info = {
        "prompt": req.prompt,
        "all_prompts": [sent.prompt] * count,  # with the styles applied, as A1111's
        "negative_prompt": req.negative_prompt,
        "all_negative_prompts": [sent.negative_prompt] * count,
        "seed": seeds[0],
        "all_seeds": seeds,
        "subseed": work.subseed,
        "all_subseeds": [work.subseed + i for i in range(count)],
        "subseed_strength": req.subseed_strength,
        # A1111's are the first pass's (p.width): with hires the image is larger (its infotext's Size is too)
        "width": first.width if first and not hires else req.width,
        "height": first.height if first and not hires else req.height,
        "sampler_name": pairs.get(SAMPLER, req.sampler_name or req.sampler_index),
        "cfg_scale": req.cfg_scale,
        "steps": req.steps,
        "batch_size": req.batch_size,
        "restore_faces": False,
        "face_restoration_model": None,
        "sd_model_name": pairs.get(MODEL),
        "sd_model_hash": pairs.get(MODEL_HASH),
        "sd_vae_name": None,
        "sd_vae_hash": None,
        "seed_resize_from_w": req.seed_resize_from_w,
        "seed_resize_from_h": req.seed_resize_from_h,
        "denoising_strength": req.denoising_strength,  # txt2img's too (its hires pass's), as A1111
        "extra_generation_params": {key: value for key, value in pairs.items() if key not in _OWN_KEYS},
        "index_of_first_image": 0,  # no grid image first
        "infotexts": infotexts,
        "styles": req.styles,
        "job_timestamp": time.strftime("%Y%m%d%H%M%S", time.localtime(task.created)),
        "clip_skip": work.clip_skip,
        "is_using_inpainting_conditioning": False,
        "version": VERSION,
    }
    return {
        "images": [base64.b64encode(image.data).decode() for image in images] if req.send_images else [],
        "parameters": parameters,
        "info": json.dumps(info),
    }


def build_router(hub: Hub, credentials: tuple = (), max_body_mb: float = 32.0) -> APIRouter:
    """The API's routes (`/sdapi/v1/...`), for `app.include_router`. `credentials`: (user, password)
    pairs for HTTP Basic on every route; empty: an open API."""
    owner = owner_dependency(credentials)
    # The standard library's JSON, not Gradio's app-wide orjson: it fails on an integer past 64 bits, so a
    # huge number echoed in `parameters` or kept in /options would turn every answer into a 500.
    router = APIRouter(prefix=PREFIX, tags=["AUTOMATIC1111 API"], dependencies=[Depends(owner)],
                       route_class=route_class(int(max_body_mb * MB)), default_response_class=JSONResponse)
    tasks = Tasks(hub)
    options = Options(hub, hub.preview_every)
    generator = Generator(hub, tasks, options)

    @router.post("/txt2img", summary="Text to image (A1111's fields and answer)")
    async def txt2img(body: Txt2ImgRequest, request: Request, who: str = Depends(owner)) -> dict:
        return await generator.run(body, who, request)

    @router.post("/img2img", summary="Image to image; with a mask, inpainting (A1111's fields and answer)")
    async def img2img(body: Img2ImgRequest, request: Request, who: str = Depends(owner)) -> dict:
        return await generator.run(body, who, request)

    @router.get("/progress", summary="The caller's generations: progress, ETA, live preview")
    def progress(skip_current_image: bool = False, who: str = Depends(owner)) -> dict:
        return tasks.progress(who, skip_current_image)

    @router.post("/interrupt", summary="Stop the caller's generations (each answers what it finished)")
    def interrupt(who: str = Depends(owner)) -> dict:
        tasks.interrupt(who)
        return {}

    @router.post("/skip", summary="Stop the caller's oldest batch in flight; the others go on")
    def skip(who: str = Depends(owner)) -> dict:
        tasks.skip(who)
        return {}

    @router.get("/options", summary="The caller's settings")
    def get_options(who: str = Depends(owner)) -> dict:
        return options.get(who)

    @router.post("/options", summary="Change the caller's settings (the whole dict GET returned, or some keys)")
    def set_options(body: dict, who: str = Depends(owner)) -> dict:
        options.set(who, body)
        return {}

    @router.get("/sd-models", summary="The models the services serve, each once")
    def get_sd_models() -> list[dict]:
        return sd_models(hub)

    catalog.add_routes(router, hub)
    extras.add_routes(router, hub)
    return router
