"""The hires fix with ControlNet units, with a model upscaler, and through an SDXL VAE with latent
statistics, over gRPC, each against the chain a diffusers user writes:
- units: diffusers' ControlNet text-to-image pipeline (latent output), the latents interpolated, then its
  ControlNet image-to-image pipeline on them with the unit's map fitted at the hires size (as
  sd-webui-controlnet prepares its hr_control) and A1111's step rule's timesteps;
- a model upscaler: the text-to-image pipeline's picture through spandrel's own descriptor call, then the
  image-to-image pipeline;
- SDXL's VAE latents_mean/latents_std: the SDXL pipelines decode and encode with them (the engine must too).
A crowd mixing a hires request with units and plain ones gives each its image alone.
"""

from __future__ import annotations

import functools
import io
import json
import shutil

import grpc
import numpy as np
import pytest
import torch
from PIL import Image

from imagegen.v1 import imagegen_pb2 as pb
from imagegen.v1.contract import LATENT_UPSCALE_MODES
from services.core.imaging import preprocessors
from services.core.models.presets import ensure_sample_controlnets, ensure_tiny
from services.core.models.upscalers import load_descriptor, to_image, to_tensor
from tests.conftest import CACHE_DIR, RunningService, png, request_for
from tests.services.crowds import all_at_once
from tests.upscaler_files import upscaler_folder

MAX_DIFF = 3  # of 255, per channel
PROMPT = "a red fox"
NETS = {"tiny": "tiny-controlnet", "tiny-xl": "tiny-xl-controlnet"}
STATS = "tiny-xl-stats"  # tiny-xl with latents_mean / latents_std in its VAE's config


def with_stats(source, target):
    """A copy of a model folder whose VAE config has SDXL-like latent statistics (the other parts linked)."""
    target.mkdir()
    for part in source.iterdir():
        if part.name != "vae":
            (target / part.name).symlink_to(part.resolve(), target_is_directory=part.is_dir())
    shutil.copytree(source / "vae", target / "vae")
    config_file = target / "vae" / "config.json"
    config = json.loads(config_file.read_text())
    config.update(latents_mean=[0.2, -0.3, 0.1, 0.05], latents_std=[1.3, 0.8, 1.1, 0.9])
    config_file.write_text(json.dumps(config))
    return target


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    models = tmp_path_factory.mktemp("models")
    (models / "tiny-xl").symlink_to(ensure_tiny(CACHE_DIR, False, "tiny-xl"), target_is_directory=True)
    with_stats(ensure_tiny(CACHE_DIR, False, "tiny-xl"), models / STATS)
    return {"models": models, "controlnets": ensure_sample_controlnets(CACHE_DIR),
            "upscalers": upscaler_folder(tmp_path_factory.mktemp("upscalers"))}


@pytest.fixture(scope="module")
def service(folders):
    running = RunningService("txt2img", "--engine", "step", "--models-dir", str(folders["models"]),
                             "--controlnet-dir", str(folders["controlnets"]), "--upscaler-dir",
                             str(folders["upscalers"]), "--max-batch-size", "8", "--batch-wait-ms", "300")
    yield running
    running.stop()


@functools.lru_cache(maxsize=None)
def pipe(cls_name: str, model: str, folder: str = "", controlnet: str = ""):
    """diffusers' pipeline `cls_name` on the model (from `folder` when given), with a ControlNet when named."""
    import diffusers

    source = folder or ensure_tiny(CACHE_DIR, False, model)
    extra = {"controlnet": diffusers.ControlNetModel.from_pretrained(ensure_sample_controlnets(CACHE_DIR) / controlnet)} \
        if controlnet else {}
    made = getattr(diffusers, cls_name).from_pretrained(source, **extra)
    made.set_progress_bar_config(disable=True)
    return made


def pixels(data) -> np.ndarray:
    image = data if isinstance(data, Image.Image) else Image.open(io.BytesIO(data))
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def hires_request(model="tiny", seed=7, units=(), **hires):
    request = request_for("txt2img", prompt=PROMPT, steps=4, seed=seed, width=64, height=64,
                          model="" if model == "tiny" else model)
    for unit in units:
        request.params.control.add(**unit)
    request.hires.CopyFrom(pb.HiresFix(**hires))
    return request


def second_pass(i2i, image, seed, strength, steps=4, **extra):
    """The image-to-image pipeline with A1111's step rule: the last `steps` of int(steps / strength)."""
    total = int(steps / min(strength, 0.999))
    return i2i(PROMPT, negative_prompt="", guidance_scale=7.5, image=image, num_inference_steps=total,
               strength=min(1.0, (steps + 0.5) / total), generator=torch.Generator().manual_seed(seed),
               **extra).images[0]


def unit_fields(seed=3, size=(96, 64), **fields):
    """A unit whose control image has another aspect than the output (Crop and Resize fits it)."""
    return dict(model=NETS["tiny"], image=pb.Image(data=png(size, seed=seed)), **fields)


def controlnet_chain(model, unit: dict, seed, upscaler, to, strength):
    """The diffusers chain for a hires request with one unit (its map fitted at each pass's size)."""
    xl = "XL" if model == "tiny-xl" else ""
    t2i = pipe(f"StableDiffusion{xl}ControlNetPipeline", model, controlnet=unit["model"])
    i2i = pipe(f"StableDiffusion{xl}ControlNetImg2ImgPipeline", model, controlnet=unit["model"])
    message = pb.ControlUnit(**unit)
    source = Image.open(io.BytesIO(message.image.data))
    first_map = preprocessors.control_image(message, source, 64, 64, seed)
    hires_map = preprocessors.control_image(message, source, *to, seed)  # sd-webui-controlnet's hr_control
    weight = unit.get("weight", 1.0)
    latents = t2i(PROMPT, negative_prompt="", guidance_scale=7.5, num_inference_steps=4, width=64, height=64,
                  image=first_map, controlnet_conditioning_scale=weight, output_type="latent",
                  generator=torch.Generator().manual_seed(seed)).images
    mode, antialias = LATENT_UPSCALE_MODES[upscaler]
    latents = torch.nn.functional.interpolate(latents, size=(to[1] // 8, to[0] // 8), mode=mode, antialias=antialias)
    return second_pass(i2i, latents, seed, strength, control_image=hires_map, controlnet_conditioning_scale=weight,
                       width=to[0], height=to[1])


@pytest.mark.parametrize("model, upscaler", [("tiny", "Latent"), ("tiny", "Latent (bicubic antialiased)"),
                                             ("tiny-xl", "Latent")])
def test_a_second_pass_keeps_its_units_with_maps_at_its_size(service, model, upscaler):
    unit = {**unit_fields(), "model": NETS[model]}
    request = hires_request(model, units=[unit], scale=1.5, upscaler=upscaler, denoising_strength=0.6)
    got = service.client.generate(request).images[0]
    assert (got.width, got.height) == (96, 96)
    plain = service.client.generate(hires_request(model, scale=1.5, upscaler=upscaler,
                                                  denoising_strength=0.6)).images[0]
    assert np.abs(pixels(got.data) - pixels(plain.data)).max() > 10  # the unit steers
    expected = controlnet_chain(model, unit, 7, upscaler, (96, 96), 0.6)
    assert np.abs(pixels(got.data) - pixels(expected)).max() <= MAX_DIFF
    assert "ControlNet 0:" in got.infotext and "Hires upscale: 1.5" in got.infotext


def test_the_second_pass_map_is_fitted_again_not_stretched(service):
    """The row's ControlNet map after the resize is the detected map fitted at the hires size (Crop and
    Resize of a 96x64 image to 120x120), which differs from the first pass's map stretched."""
    from services.core.engine.controlnet import ControlUnits

    spec = service.runtime.check(hires_request(units=[unit_fields()], scale=1.875))
    unit = spec.control[0]
    again = np.asarray(unit.image_at(120, 120))
    source = Image.open(io.BytesIO(png((96, 64), seed=3)))
    message = pb.ControlUnit(**unit_fields())
    assert np.array_equal(again, np.asarray(preprocessors.control_image(message, source, 120, 120, 7)))
    stretched = np.asarray(unit.image.resize((120, 120), Image.LANCZOS), dtype=np.int16)
    assert np.abs(again.astype(np.int16) - stretched).max() > 10
    assert ControlUnits.resized is not None  # the conditioner's hook (engine/resize.py calls it)


def model_upscaler_chain(folder, seed, strength, to):
    """The text-to-image pipeline's picture through spandrel's descriptor (the tiny ESRGAN, 2x: one
    call reaches the target), then the image-to-image pipeline."""
    t2i = pipe("StableDiffusionPipeline", "tiny")
    i2i = pipe("StableDiffusionImg2ImgPipeline", "tiny")
    first = t2i(PROMPT, negative_prompt="", guidance_scale=7.5, num_inference_steps=4, width=64, height=64,
                generator=torch.Generator().manual_seed(seed)).images[0]
    descriptor = load_descriptor(folder / "esrgan.safetensors")
    with torch.inference_mode():
        upscaled = to_image(descriptor(to_tensor(first, "cpu", torch.float32)))
    assert upscaled.size == to
    return second_pass(i2i, upscaled, seed, strength)


def test_a_model_upscaler_is_the_diffusers_chain_with_spandrel_between(service, folders):
    assert "esrgan" in [u.name for u in service.client.info().upscalers]  # the Txt2Img tab's dropdown lists it
    got = service.client.generate(hires_request(scale=2, upscaler="esrgan", denoising_strength=0.55)).images[0]
    assert (got.width, got.height) == (128, 128)
    expected = model_upscaler_chain(folders["upscalers"], 7, 0.55, (128, 128))
    assert np.abs(pixels(got.data) - pixels(expected)).max() <= MAX_DIFF
    assert "Hires upscaler: esrgan" in got.infotext


@pytest.mark.parametrize("name, words", [("nope", "unknown upscaler"), ("evil", "cannot be used"),
                                         ("../esrgan", "names, not paths")])
def test_an_unknown_or_unusable_upscaler_is_refused_naming_the_field(service, name, words):
    with pytest.raises(grpc.RpcError) as raised:
        service.client.generate(hires_request(scale=2, upscaler=name))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert raised.value.details().startswith("hires.upscaler:") and words in raised.value.details()


def test_an_sdxl_vae_with_latent_statistics_decodes_and_encodes_as_the_sdxl_pipelines(service, folders):
    folder = str(folders["models"] / STATS)
    got = service.client.generate(hires_request(STATS, scale=1.5, upscaler="Lanczos",
                                                denoising_strength=0.6)).images[0]
    t2i = pipe("StableDiffusionXLPipeline", STATS, folder)
    i2i = pipe("StableDiffusionXLImg2ImgPipeline", STATS, folder)
    assert t2i.vae.config.latents_mean is not None
    first = t2i(PROMPT, negative_prompt="", guidance_scale=7.5, num_inference_steps=4, width=64, height=64,
                generator=torch.Generator().manual_seed(7)).images[0]
    expected = second_pass(i2i, first.resize((96, 96), resample=Image.LANCZOS), 7, 0.6)
    assert np.abs(pixels(got.data) - pixels(expected)).max() <= MAX_DIFF
    # Without the statistics (the plain scaling) it would differ: they matter here.
    plain = service.client.generate(hires_request("tiny-xl", scale=1.5, upscaler="Lanczos",
                                                  denoising_strength=0.6)).images[0]
    assert np.abs(pixels(got.data) - pixels(plain.data)).max() > 10


def test_a_crowd_mixing_hires_with_units_and_plain_requests_gives_each_its_image_alone(service):
    requests = [
        hires_request(seed=31, units=[unit_fields()], scale=1.5),
        request_for("txt2img", prompt=PROMPT, steps=4, seed=32),
        hires_request(seed=33, scale=1.5),
        hires_request(seed=34, units=[unit_fields(seed=5, weight=0.6)], scale=1.5, upscaler="Lanczos"),
        request_for("txt2img", prompt=PROMPT, steps=5, seed=35),
    ]
    requests[1].params.control.add(**unit_fields(seed=6))
    alone = [service.client.generate(r).images[0].data for r in requests]
    together = all_at_once([lambda r=r: service.client.generate(r).images[0].data for r in requests])
    for one, other in zip(alone, together):
        assert np.abs(pixels(one) - pixels(other)).max() <= MAX_DIFF
