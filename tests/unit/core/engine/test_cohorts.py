"""Cohorts (engine/cohorts.py): rows that arrived together step as one scheduler over their latents
stacked, and every image is exactly the one the per-row path makes, however cohorts form and break.

The per-row path (unet_step(..., cohorts=False)) is the one test_denoise.py holds equal to diffusers'
pipelines; here the cohort path is held to it exactly: the final latents torch.equal, row by row."""

from __future__ import annotations

import pytest
import torch

from imagegen.v1 import imagegen_pb2 as pb
from services.core.engine.cohorts import arrange
from services.core.engine.denoise import unet_step
from services.core.engine.resize import resize
from services.core.engine.rows import encode_prompt
from services.core.models import schedulers
from services.core.models.loading import load_pipeline
from services.core.models.presets import ensure_tiny
from tests.conftest import CACHE_DIR, SERVER_MODES, box_mask, png, request_for, service_config


@pytest.fixture(scope="module")
def pipes():
    loaded = {}

    def get(mode_name, model="tiny"):
        if (mode_name, model) not in loaded:
            mode = SERVER_MODES[mode_name]
            folder = str(ensure_tiny(CACHE_DIR, inpaint=False)) if model == "tiny-4ch" else model
            config = service_config(mode_name, "--model", folder)
            loaded[mode_name, model] = (mode, config, load_pipeline(mode, config)[0])
        return loaded[mode_name, model]

    return get


def spec_for(mode, config, hires=None, **fields):
    extra = {"image": png((64, 64), seed=3)} if mode.contract.takes_image else {}
    if mode.contract.takes_mask:
        extra["mask"] = box_mask((64, 64), (8, 8, 40, 48))
    request = request_for(mode.name, **{"steps": 6, **extra, **fields})
    if hires is not None:
        request.hires.CopyFrom(hires)
    return mode.check(request, config)


class Crowd:
    """Requests' rows admitted together and stepped as the engine steps them: one UNet call per shape key
    each iteration, rows resized between passes; `skip` (iteration -> request indexes) leaves requests
    out of a call as the CPU scheduler's pick does, `cancel` (iteration -> indexes) drops them."""

    def __init__(self, mode, pipe, specs, eta=None):
        self.mode, self.pipe, self.specs = mode, pipe, specs
        base = pipe.scheduler
        try:
            with torch.inference_mode():
                self.rows = []
                for spec in specs:
                    prompt = encode_prompt(pipe, spec)
                    self.rows.append([mode.admit(pipe, spec, prompt, seed,
                                                 schedulers.fresh(spec.scheduler, base, spec.schedule_type, (seed,)))
                                      for seed in spec.seeds])
        finally:
            pipe.scheduler = base
        if eta is not None:  # DDIM's eta as diffusers' pipelines would pass it
            for row in self.rows[eta[0]]:
                row.phase.step_kwargs["eta"] = eta[1]

    def run(self, cohorts: bool, skip=None, cancel=None, watch=None) -> list:
        """Each request's rows' final latents (None for a cancelled one)."""
        skip, cancel = skip or {}, cancel or {}
        live = list(range(len(self.rows)))
        iteration = 0
        with torch.inference_mode():
            while any(not row.done for r in live for row in self.rows[r]):
                live = [r for r in live if r not in cancel.get(iteration, ())]
                riding = [r for r in live if r not in skip.get(iteration, ())]
                rows = [row for r in riding for row in self.rows[r] if not row.done and not row.resizing]
                for key in dict.fromkeys(row.shape_key for row in rows):
                    unet_step(self.pipe.unet, [row for row in rows if row.shape_key == key], cohorts=cohorts)
                if watch is not None:
                    watch(iteration, self.rows)
                resizing = [row for r in live for row in self.rows[r] if row.resizing]
                if resizing:
                    resize(self.pipe, resizing)
                iteration += 1
        return [[row.latents.clone() for row in self.rows[r]] if r in live else None for r in range(len(self.rows))]


def assert_same(per_row, cohort):
    for a, b in zip(per_row, cohort):
        assert (a is None) == (b is None)
        for x, y in zip(a or [], b or []):
            assert torch.equal(x, y), (x - y).abs().max()


HIRES = pb.HiresFix(scale=2, upscaler="Latent", denoising_strength=0.6, steps=4)


def txt2img_crowd(mode, config):
    sde = ["dpmpp_sde"] if schedulers.available("dpmpp_sde") else []
    fields = [
        dict(scheduler="dpmpp_2m", num_images=4, seed=1),  # 0: a request of four
        dict(scheduler="dpmpp_2m", num_images=2, seed=10),  # 1: arrives with 0: one cohort of six, split later
        dict(scheduler="euler_a", seed=20),  # 2, 3: Euler a together; 3 is cancelled mid-way
        dict(scheduler="euler_a", seed=30),
        dict(scheduler="euler_a", seed=40, num_images=2, hires=HIRES),  # 4: hires, in 2-3's first cohort
        dict(scheduler="ddim", seed=50, num_images=2),  # 5: DDIM with eta
        dict(scheduler="unipc", seed=60, num_images=2),
        dict(scheduler="heun", seed=70, num_images=2),
        dict(scheduler="lms", seed=80, num_images=3, guidance_scale=1.0),  # unguided
        dict(scheduler="dpmpp_2m_sde", seed=90, num_images=2),
        dict(scheduler="", seed=100, num_images=2),  # the model's own (PNDM)
        *[dict(scheduler=name, seed=110, num_images=2) for name in sde],  # per-row only
    ]
    return [spec_for(mode, config, **f) for f in fields]


def test_a_crowd_where_cohorts_form_and_break_gets_the_per_row_images_exactly(pipes):
    mode, config, pipe = pipes("txt2img")
    specs = txt2img_crowd(mode, config)
    seen = {}

    def watch(iteration, rows):  # each request's rows' cohort sizes (0: alone) after each iteration
        seen[iteration] = [[len(row.cohort) if row.cohort else 0 for row in request] for request in rows]

    per_row = Crowd(mode, pipe, specs, eta=(5, 0.7)).run(False, skip={3: (1, 7)}, cancel={2: (3,)})
    crowd = Crowd(mode, pipe, specs, eta=(5, 0.7))
    cohort = crowd.run(True, skip={3: (1, 7)}, cancel={2: (3,)}, watch=watch)
    assert_same(per_row, cohort)
    assert cohort[3] is None
    # Requests 0 and 1 formed one cohort, 2-4 (Euler a, the hires one's first pass) another, each other
    # request one of its own, DPM++ SDE's rows none; the skip split 0 from 1, the cancel took 3 from 2-4.
    assert seen[0][:11] == [[6] * 4, [6] * 2, [4], [4], [4, 4], [2, 2], [2, 2], [2, 2], [3] * 3, [2, 2], [2, 2]]
    assert seen[0][11:] in ([], [[0, 0]])
    assert seen[3][:5] == [[4] * 4, [2] * 2, [3], [0], [3, 3]]
    assert all(row.cohort is None for request in crowd.rows for row in request)  # each ended with its phase


@pytest.mark.parametrize("mode_name, model", [("img2img", "tiny"), ("inpaint", "tiny"), ("inpaint", "tiny-4ch")])
def test_image_modes_cohorts_get_the_per_row_images_exactly(pipes, mode_name, model):
    # Inpainting with a text-to-image (4-channel) model puts the unmasked latents back after each step:
    # a cohort does it for its rows at once (KeepUnmasked.after_cohort_step).
    mode, config, pipe = pipes(mode_name, model)
    specs = [spec_for(mode, config, scheduler=scheduler, num_images=3, seed=seed, strength=0.8)
             for scheduler, seed in (("euler_a", 1), ("euler_a", 9), ("dpmpp_2m", 5), ("dpmpp_2m", 13),
                                     ("unipc", 17))]
    # Cohorts of two requests each (Euler a, DPM++ 2M) split by a skip, UniPC's by a cancel.
    split = dict(skip={1: (3,), 2: (0,)}, cancel={3: (4,)})
    per_row = Crowd(mode, pipe, specs).run(False, **split)
    cohort = Crowd(mode, pipe, specs).run(True, **split)
    assert_same(per_row, cohort)


def test_cohorts_form_of_rows_alike_and_split_when_their_rows_part(pipes):
    mode, config, pipe = pipes("txt2img")
    specs = [spec_for(mode, config, scheduler="dpmpp_2m", num_images=3, seed=1),
             spec_for(mode, config, scheduler="dpmpp_2m", num_images=2, seed=10),
             spec_for(mode, config, scheduler="dpmpp_2m", num_images=2, seed=20, guidance_scale=3.0),
             spec_for(mode, config, scheduler="euler_a", num_images=2, seed=30)]
    if schedulers.available("dpmpp_sde"):
        specs.append(spec_for(mode, config, scheduler="dpmpp_sde", num_images=2, seed=40))
    rows = Crowd(mode, pipe, specs).rows
    a, b, c, d = rows[:4]
    with torch.inference_mode():
        groups = arrange([row for request in rows for row in request])
        # Alike rows of two requests are one cohort; other guidance, another sampler: cohorts of their own;
        # DPM++ SDE (its noise from a Brownian tree its instance seeds): each row alone.
        assert [len(g) for g in groups] == [5, 2, 2] + [1, 1] * (len(rows) == 5)
        assert [g.alone for g in groups] == [False] * 3 + [True, True] * (len(rows) == 5)
        assert all(row.cohort is groups[0] for row in a + b) and groups[0].latents.shape[0] == 5
        assert all(row.scheduler is groups[0].scheduler for row in a + b)
        unet_step(pipe.unet, a + b + c + d)
        # The second request rides elsewhere: the first goes on as a cohort of its own, its scheduler's
        # batched state (DPM++ 2M's model outputs) sliced to its rows; the second is a cohort apart.
        first_outputs = groups[0].scheduler.model_outputs[-1]
        [part_a] = arrange(a)
        assert part_a.rows == a and part_a.scheduler is not groups[0].scheduler
        assert torch.equal(part_a.scheduler.model_outputs[-1], first_outputs[:3])
        assert b[0].cohort is b[1].cohort and b[0].cohort is not part_a and len(b[0].cohort) == 2
        assert torch.equal(b[0].cohort.scheduler.model_outputs[-1], first_outputs[3:])
        assert torch.equal(b[1].latents, groups[0].latents[4:5])
        # Rows with state of their own never form a cohort again; a stateless sampler's rows at one step do.
        unet_step(pipe.unet, a)
        assert [len(g) for g in arrange(a + b)] == [3, 2]
        solo = Crowd(mode, pipe, [specs[3]]).rows[0]
        unet_step(pipe.unet, solo[:1])
        unet_step(pipe.unet, solo[1:])
        assert [len(g) for g in arrange(solo)] == [2]  # Euler a holds no state: they step as one again


@pytest.mark.parametrize("name", [*schedulers.SCHEDULERS])
def test_each_batched_scheduler_steps_a_split_cohort_as_its_rows_alone(pipes, name):
    if not schedulers.available(name):
        pytest.skip(f"{name} needs a module not installed here")
    mode, config, pipe = pipes("txt2img")
    steps = 4 if name == "lcm" else 6
    specs = [spec_for(mode, config, scheduler=name, num_images=3, seed=1, steps=steps,
                      guidance_scale=1.5 if name == "lcm" else 7.5),
             spec_for(mode, config, scheduler=name, num_images=2, seed=9, steps=steps,
                      guidance_scale=1.5 if name == "lcm" else 7.5)]
    per_row = Crowd(mode, pipe, specs).run(False, skip={2: (0,)})
    cohort = Crowd(mode, pipe, specs).run(True, skip={2: (0,)})
    assert_same(per_row, cohort)
