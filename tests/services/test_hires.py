"""The hires fix (Txt2ImgRequest.hires) over gRPC against the chain a diffusers user writes: the
text-to-image pipeline with output_type="latent", the latents interpolated (a latent upscaler) or the
decoded picture resized (an image upscaler), then the image-to-image pipeline on them with the timesteps
A1111's step rule gives (the last n of an int(n / strength)-step schedule) and a generator seeded afresh."""

from __future__ import annotations

import io

import grpc
import numpy as np
import pytest
import torch
from PIL import Image

from imagegen.v1 import imagegen_pb2 as pb
from imagegen.v1.contract import LATENT_UPSCALE_MODES
from services.core.models.presets import ensure_tiny
from tests.conftest import CACHE_DIR, RunningService, request_for
from tests.services.crowds import all_at_once

MAX_DIFF = 3  # of 255, per channel
PROMPT = "a red fox"


@pytest.fixture(scope="module")
def step_services():
    running = {name: RunningService("txt2img", "--engine", "step", "--model", name) for name in ("tiny", "tiny-xl")}
    yield running
    for service in running.values():
        service.stop()


@pytest.fixture(scope="module")
def pipes():
    from diffusers import AutoPipelineForImage2Image, AutoPipelineForText2Image

    made = {}
    for name in ("tiny", "tiny-xl"):
        t2i = AutoPipelineForText2Image.from_pretrained(ensure_tiny(CACHE_DIR, False, name))
        t2i.set_progress_bar_config(disable=True)
        i2i = AutoPipelineForImage2Image.from_pipe(t2i)
        i2i.set_progress_bar_config(disable=True)
        made[name] = (t2i, i2i)
    return made


def pixels(data) -> np.ndarray:
    image = data if isinstance(data, Image.Image) else Image.open(io.BytesIO(data))
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def hires_request(seed=7, first_steps=4, size=(64, 64), **hires):
    """A txt2img request (its first pass's fields named apart) with the second pass `hires`."""
    request = request_for("txt2img", prompt=PROMPT, steps=first_steps, seed=seed, width=size[0], height=size[1])
    request.hires.CopyFrom(pb.HiresFix(**hires))
    return request


def reference(pipes, name, *, seed=7, steps=4, size=(64, 64), scheduler=None, upscaler="Latent", to=(96, 96),
              crop=(0, 0), hires_steps=None, strength=0.7, hires_scheduler=None, hires_prompt=None):
    """The diffusers chain: what a diffusers user writes for A1111's hires fix."""
    t2i, i2i = pipes[name]
    base = t2i.scheduler
    try:
        if scheduler is not None:
            t2i.scheduler = scheduler(base)
        # As the services: an empty negative prompt encoded (SDXL puts zeros for None), CFG 7.5 (SDXL: 5).
        latent = upscaler in LATENT_UPSCALE_MODES  # else the first pass decoded, as the pipeline decodes
        first = t2i(PROMPT, negative_prompt="", guidance_scale=7.5, num_inference_steps=steps, width=size[0],
                    height=size[1], output_type="latent" if latent else "pil",
                    generator=torch.Generator().manual_seed(seed)).images
        if latent:
            latents = first
            mode, antialias = LATENT_UPSCALE_MODES[upscaler]
            image = torch.nn.functional.interpolate(latents, size=(to[1] // 8, to[0] // 8), mode=mode,
                                                    antialias=antialias)
            if crop != (0, 0):
                image = image[:, :, crop[1] // 2: image.shape[2] - (crop[1] + 1) // 2,
                              crop[0] // 2: image.shape[3] - (crop[0] + 1) // 2]
        else:
            image = first[0].resize(to, resample={"Lanczos": Image.LANCZOS, "Nearest": Image.NEAREST}[upscaler])
        n = hires_steps or steps
        total = int(n / min(strength, 0.999))
        i2i.scheduler = (hires_scheduler or scheduler or (lambda b: type(b).from_config(b.config)))(base)
        return i2i(hires_prompt or PROMPT, negative_prompt="", guidance_scale=7.5, image=image, num_inference_steps=total, strength=min(1.0, (n + 0.5) / total),
                   generator=torch.Generator().manual_seed(seed)).images[0]
    finally:
        t2i.scheduler = i2i.scheduler = base


def euler_a(base):
    from diffusers import EulerAncestralDiscreteScheduler

    return EulerAncestralDiscreteScheduler.from_config(base.config)


def dpm_karras(base):
    from diffusers import DPMSolverMultistepScheduler

    return DPMSolverMultistepScheduler.from_config(base.config, use_karras_sigmas=True)


@pytest.mark.parametrize("name", ["tiny", "tiny-xl"])
@pytest.mark.parametrize("upscaler", ["Latent", "Latent (bicubic antialiased)", "Lanczos"])
def test_a_second_pass_equals_the_diffusers_chain(step_services, pipes, name, upscaler):
    got = step_services[name].client.generate(hires_request(scale=1.5, upscaler=upscaler,
                                                            denoising_strength=0.6)).images[0]
    assert (got.width, got.height) == (96, 96)
    expected = reference(pipes, name, upscaler=upscaler, strength=0.6)
    assert np.abs(pixels(got.data) - pixels(expected)).max() <= MAX_DIFF
    assert f"Hires upscale: 1.5, Hires upscaler: {upscaler}" in got.infotext
    assert "Denoising strength: 0.6" in got.infotext and "Size: 64x64" in got.infotext  # A1111: the first pass's


def test_hires_steps_sampler_and_prompt_of_its_own(step_services, pipes):
    request = request_for("txt2img", prompt=PROMPT, steps=3, seed=9, width=64, height=64, scheduler="euler_a")
    request.hires.CopyFrom(pb.HiresFix(scale=1.25, steps=5, denoising_strength=0.45, scheduler="dpmpp_2m",
                                       schedule_type="karras", prompt="a blue fox"))
    got = step_services["tiny"].client.generate(request).images[0]
    assert (got.width, got.height) == (80, 80)
    expected = reference(pipes, "tiny", seed=9, steps=3, scheduler=euler_a, to=(80, 80), hires_steps=5,
                         strength=0.45, hires_scheduler=dpm_karras, hires_prompt="a blue fox")
    assert np.abs(pixels(got.data) - pixels(expected)).max() <= MAX_DIFF
    for written in ("Hires steps: 5", "Hires sampler: DPM++ 2M", "Hires schedule type: Karras",
                    "Hires prompt: a blue fox"):
        assert written in got.infotext


def test_a_target_size_of_another_aspect_keeps_the_centre_of_the_latents(step_services, pipes):
    got = step_services["tiny"].client.generate(hires_request(size=(64, 96), resize_width=96,
                                                              resize_height=96)).images[0]
    assert (got.width, got.height) == (96, 96)
    # 64x96 covering 96x96: 96x144, 6 latent rows cut, 3 from the top.
    expected = reference(pipes, "tiny", size=(64, 96), to=(96, 144), crop=(0, 6))
    assert np.abs(pixels(got.data) - pixels(expected)).max() <= MAX_DIFF
    assert "Hires resize: 96x96" in got.infotext and "Hires upscale:" not in got.infotext


def test_a_crowd_mixing_hires_and_plain_requests_gives_each_its_image_alone(step_services):
    service = step_services["tiny"]
    requests = [hires_request(seed=20 + i, scale=1.5) if i % 2 else
                request_for("txt2img", prompt=PROMPT, steps=4, seed=20 + i) for i in range(4)]
    alone = [service.client.generate(r).images[0].data for r in requests]
    together = all_at_once([lambda r=r: service.client.generate(r).images[0].data for r in requests])
    for one, other in zip(alone, together):
        assert np.abs(pixels(one) - pixels(other)).max() <= MAX_DIFF


def test_progress_counts_both_passes(step_services):
    from services.client.events import Progress

    events = list(step_services["tiny"].client.stream(hires_request(scale=1.5, first_steps=3,
                                                                     denoising_strength=0.5)))
    progress = [e for e in events if isinstance(e, Progress)]
    assert {e.total_steps for e in progress} == {6} and progress[-1].step == 6  # 3 + 3 (0: the first's)


@pytest.mark.parametrize("hires, field", [
    ({"scale": 5}, "hires.scale"),
    ({"resize_width": 100}, "hires.resize_width"),
    ({"scale": 4, "upscaler": "ESRGAN_4x"}, "hires.upscaler"),
    ({"denoising_strength": 0}, "hires.denoising_strength"),
    ({"steps": 1000}, "hires.steps"),
    ({"scheduler": "nope"}, "hires.scheduler"),
    ({"scheduler": "euler", "schedule_type": "karras", "prompt": "x <lora:a:1>"}, "hires.prompt"),
])
def test_bad_second_passes_name_the_field(step_services, hires, field):
    with pytest.raises(grpc.RpcError) as raised:
        step_services["tiny"].client.generate(hires_request(**hires))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert raised.value.details().startswith(field), raised.value.details()


def test_the_pipeline_engine_refuses_a_second_pass():
    service = RunningService("txt2img", "--engine", "pipeline")
    try:
        with pytest.raises(grpc.RpcError) as raised:
            service.client.generate(hires_request(scale=1.5))
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert raised.value.details().startswith("hires:") and "step engine" in raised.value.details()
    finally:
        service.stop()
