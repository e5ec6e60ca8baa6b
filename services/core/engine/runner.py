"""The step engine's execution: what the scheduler decided, each call on its model (the pool's, by name).

Admission (a request's prompts encoded under its LoRA set, its rows made by its mode), one UNet call
over a call's rows (its LoRA set active, timed once the device has run it), decoding finished rows,
previews. Every fault of a call becomes `CallFailed` carrying the status its requests fail with, and
the device memory of a failed call is freed once nothing refers to it any more.
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager

from ..checks import check_clip_skip
from ..control_checks import check_family
from ..errors import InternalError, InvalidArgument, OutOfMemory, ServiceError
from ..imaging import previews
from ..models.loaded import Loaded
from ..models.loading import ModelLoadError, ModelOutOfMemory
from ..work.device import release_device_memory, wait_for_device
from .controlnet import attach_control
from .denoise import decode, unet_step
from .resize import resize
from .rows import Row, encode_prompt

log = logging.getLogger(__name__)


class CallFailed(Exception):
    """A call failed; its requests fail with `error`. `out_of_memory`: the device ran out of memory."""

    def __init__(self, error: ServiceError, out_of_memory: bool = False):
        super().__init__(str(error))
        self.error, self.out_of_memory = error, out_of_memory


@contextmanager
def _faults(out_of_memory: str):
    """Turns what a call raised into CallFailed; frees device memory after the exception is gone."""
    import torch

    failure = None
    try:
        yield
    except torch.OutOfMemoryError:
        failure = CallFailed(OutOfMemory(out_of_memory), out_of_memory=True)
    except ModelOutOfMemory as exc:  # bringing the call's model over (the pool freed what it held): the
        failure = CallFailed(OutOfMemory(str(exc)))  # call's rows were never the problem, budgets stay
    except ModelLoadError as exc:  # the call's model could not be brought to the device
        failure = CallFailed(InternalError.logged(exc, log))
    except ServiceError as exc:  # a LoRA that does not fit the model, or is gone from the folder
        failure = CallFailed(exc)
    except Exception as exc:  # noqa: BLE001 - these requests fail; the engine keeps serving
        failure = CallFailed(InternalError.logged(exc, log))
    if failure is not None:
        if failure.out_of_memory:
            release_device_memory()
        raise failure


class Runner:
    def __init__(self, mode, model: Loaded, pool=None, controlnets=None, upscalers=None, cohorts: bool = True):
        self.mode, self.model, self.pool = mode, model, pool  # pool: models by name (None: `model` only)
        self.cohorts = cohorts  # rows that can step as one do (denoise.unet_step)
        self.controlnets = controlnets  # models.controlnets.ControlNetCache: the units' ControlNets
        self.upscalers = upscalers  # models.upscalers.Upscalers: a hires fix's model upscalers

    def model_of(self, name: str, why: str = "a UNet call") -> Loaded:
        """The named model on the device (a switch when it is not); "": the default."""
        if self.pool is None:
            return self.model
        return self.pool.get(name or self.pool.catalog.default.name, why)

    def _known(self, name: str) -> Loaded | None:
        """The named model if the pool holds it (device or host memory), without moving it."""
        if self.pool is None or not name or name == self.model.name:
            return self.model
        return self.pool.held(name)

    def embedding_hashes(self, spec, name: str) -> tuple[tuple[str, str], ...]:
        """The embeddings the request's prompts used on its model (`name`): infotext's `TI hashes`."""
        return (self._known(name) or self.model).embedding_hashes(spec)

    def admit(self, job) -> tuple[list[Row], tuple]:
        """The rows of a request, one per seed, each where diffusers' pipeline starts for it, and its LoRA
        set pinned for its life (`release` it when the request leaves)."""
        import torch

        spec = job.spec
        pinned, model = (), None
        try:
            with _faults("the device ran out of memory; try fewer or smaller images"), torch.inference_mode():
                model = self.model_of(spec.model, "a request joining")
                check_clip_skip(spec.clip_skip, model.max_clip_skip)  # known for sure once loaded
                check_family(spec.control, model.family)
                nets = self._controlnets(spec, model)
                # Its LoRAs (loaded now if they are not): they may change the text encoders too.
                pinned = model.adapters.pin(spec.loras)
                model.adapters.activate(pinned)
                prompt = encode_prompt(model.pipe, spec)
                rows = []
                for index, seed in enumerate(spec.seeds):
                    row = self.mode.admit(model.pipe, spec, prompt, seed, model.scheduler(spec, [seed]))
                    row.owner, row.image_index, row.loras, row.model = job, index, pinned, model.name
                    if nets:
                        attach_control(model.pipe, row, spec.control, nets)
                    rows.append(row)
                return rows, pinned
        except CallFailed:
            if model is not None:
                model.adapters.unpin(pinned)
            raise
        finally:
            if model is not None:
                model.restore_scheduler()

    def _controlnets(self, spec, model: Loaded) -> list:
        """The request's units' ControlNets on its model's device, in its dtype (loaded if need be)."""
        if not spec.control:
            return []
        if self.controlnets is None:
            raise InvalidArgument("params.control", "this service runs no ControlNets")
        unet = model.pipe.unet
        return [self.controlnets.get(unit.model, unet.device, unet.dtype, f"{unit.field}.model")
                for unit in spec.control]

    def room_for(self, spec) -> bool:
        """Whether a request's LoRAs can be pinned now without evicting those running requests use."""
        model = self._known(spec.model)
        return model is None or model.adapters.room_for(spec.loras)  # not held: its cache is empty

    def release(self, name: str, pinned: tuple) -> None:
        model = self._known(name)
        if model is not None:
            model.adapters.unpin(pinned)

    def step(self, rows: list[Row]) -> float:
        """One UNet call over rows of one shape key; its seconds, once the device has run it."""
        import torch

        started = time.monotonic()
        with _faults("the device ran out of memory; try fewer or smaller images"), torch.inference_mode():
            model = self.model_of(rows[0].model)  # one model per shape key
            model.adapters.activate(rows[0].loras)  # the rows' pinned LoRA set (one per shape key)
            unet_step(model.unet_call, rows, cohorts=self.cohorts)  # compiled under --compile (engine/graphs.py)
            # The call's real time, for the estimator and the scheduler's choice of rows.
            wait_for_device(model.pipe.unet.device)
        return time.monotonic() - started

    def resize(self, rows: list[Row]) -> None:
        """Run the rows' resize phases (the hires fix), each on its model's VAE where it decodes (and the
        service's upscaler models where a row names one)."""
        import torch

        with _faults("the device ran out of memory while enlarging for the second pass"), torch.inference_mode():
            for name in dict.fromkeys(row.model for row in rows):
                resize(self.model_of(name, "resizing").pipe, [row for row in rows if row.model == name], self.upscalers)

    def decode(self, rows: list[Row]) -> list:
        """PIL images of finished rows, in order, in one VAE call."""
        import torch

        with _faults("the device ran out of memory while decoding"), torch.inference_mode():
            images = {}
            for name in dict.fromkeys(row.model for row in rows):  # each model's VAE for its rows
                mine = [row for row in rows if row.model == name]
                model = self.model_of(name, "decoding")
                images.update(zip(map(id, mine), decode(model.pipe, mine, model.compiled_decode)))
            return [images[id(row)] for row in rows]

    def preview(self, rows: list[Row]):
        """The pixels of a small preview of the rows' current latents, side by side (previews.encode
        makes its JPEG, off the loop)."""
        import torch

        family = (self._known(rows[0].model) or self.model).family
        return previews.preview_pixels(torch.cat([row.latents for row in rows]), family)
