"""ControlNet units over gRPC, served by the step engine: a request served alone is diffusers' own
ControlNet pipeline's image (SD and SDXL, all three modes, one and two units, guidance start/end, a
weight, both soft-injection control modes), a crowd mixing rows with and without units gives every
request its image alone, bad units are INVALID_ARGUMENT naming the field, GetInfo lists the ControlNets
and infotext records the units as sd-webui-controlnet does.

The ControlNets are the tiny ones of presets.py (their zero convolutions drawn at random, so they change
the image: asserted too). "ControlNet is more important" is A1111's (soft injection 0.825^(m-1-j) and the
conditional half only): its reference is diffusers' guess mode arrangement with a ControlNet that scales
its residuals by A1111's curve instead of guess mode's logspace, as a diffusers user would write it.
"""

from __future__ import annotations

import functools
import io

import numpy as np
import pytest
import torch
from PIL import Image

from imagegen.v1 import imagegen_pb2 as pb
from imagegen.v1.contract import SOFT_INJECTION_BASE
from services.client import InvalidInput
from services.core.models.presets import build_tiny_controlnet, ensure_sample_controlnets, ensure_tiny
from tests.conftest import CACHE_DIR, SERVER_MODES, RunningService, png, request_for
from tests.services.crowds import all_at_once

MAX_DIFF = 3  # of 255, per channel
# diffusers' ControlNet pipelines, by (mode, SDXL).
PIPELINES = {
    ("txt2img", False): "StableDiffusionControlNetPipeline",
    ("img2img", False): "StableDiffusionControlNetImg2ImgPipeline",
    ("inpaint", False): "StableDiffusionControlNetInpaintPipeline",
    ("txt2img", True): "StableDiffusionXLControlNetPipeline",
    ("img2img", True): "StableDiffusionXLControlNetImg2ImgPipeline",
    ("inpaint", True): "StableDiffusionXLControlNetInpaintPipeline",
}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """The sample ControlNets, and a second SD one (another seed) for two-unit requests."""
    folder = tmp_path_factory.mktemp("controlnets")
    samples = ensure_sample_controlnets(CACHE_DIR)
    for name in ("tiny-controlnet", "tiny-xl-controlnet"):
        (folder / name).symlink_to(samples / name, target_is_directory=True)
    build_tiny_controlnet("tiny", seed=5).save_pretrained(folder / "second")
    (folder / "notes.txt").write_text("not a ControlNet")
    return folder


@pytest.fixture(scope="module")
def services(folder, tmp_path_factory):
    from services.launch import demo_models

    models = demo_models(CACHE_DIR, tmp_path_factory.mktemp("models"))  # tiny (the default) and tiny-xl
    running = {mode: RunningService(mode, "--engine", "step", "--controlnet-dir", str(folder), "--models-dir",
                                    str(models), "--max-batch-size", "8", "--batch-wait-ms", "300")
               for mode in ("txt2img", "img2img", "inpaint")}
    yield running
    for service in running.values():
        service.stop()


def pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.int16)


def with_units(request, *units: dict):
    for unit in units:
        fields = dict(unit)
        image = fields.pop("image", png(seed=3))
        request.params.control.add(**fields, **({"image": pb.Image(data=image)} if image else {}))
    return request


def controlnet_class(soft: bool):
    """diffusers' ControlNetModel, or one whose residuals follow A1111's soft injection (weight x
    0.825^(m-1-j) for residual j of m) in place of its own scaling (guess mode's logspace)."""
    from diffusers import ControlNetModel

    if not soft:
        return ControlNetModel

    class SoftInjection(ControlNetModel):
        def forward(self, *args, conditioning_scale=1.0, guess_mode=False, return_dict=True, **kwargs):
            down, mid = super().forward(*args, conditioning_scale=1.0, return_dict=False, **kwargs)
            count = len(down) + 1
            down = [d * (conditioning_scale * SOFT_INJECTION_BASE ** (count - 1 - j)) for j, d in enumerate(down)]
            return down, mid * conditioning_scale

    return SoftInjection


@functools.lru_cache(maxsize=None)
def base_pipe(mode: str, model: str, nine_channels: bool):
    """The model as a service loads it: as its --model, the inpaint service's build (a 9-channel UNet);
    from the models folder (`tiny-xl` in `services`), the 4-channel build, which inpaints by blending."""
    import diffusers

    cls = getattr(diffusers, SERVER_MODES[mode].pipeline_class)
    pipe = cls.from_pretrained(ensure_tiny(CACHE_DIR, nine_channels, model))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def diffusers_image(folder, mode: str, model: str, spec, names: list[str], soft=False, guess=False,
                    nine_channels: bool | None = None) -> np.ndarray:
    """diffusers' own ControlNet pipeline of the mode (MultiControlNet for several units), called for the
    spec's first image with the spec's control maps, weights and guidance ranges."""
    import diffusers

    nets = [controlnet_class(soft).from_pretrained(folder / name) for name in names]
    cls = getattr(diffusers, PIPELINES[mode, model == "tiny-xl"])
    if nine_channels is None:  # as `services` load them
        nine_channels = SERVER_MODES[mode].contract.takes_mask and model == "tiny"
    pipe = cls.from_pipe(base_pipe(mode, model, nine_channels), controlnet=nets[0] if len(nets) == 1 else diffusers.MultiControlNetModel(nets))
    pipe.set_progress_bar_config(disable=True)
    units = spec.control
    one = len(units) == 1

    def per_unit(values):
        return values[0] if one else list(values)

    args = dict(prompt=spec.prompt, negative_prompt=spec.negative_prompt, num_inference_steps=spec.steps,
                guidance_scale=spec.guidance_scale, generator=torch.Generator("cpu").manual_seed(spec.seeds[0]),
                controlnet_conditioning_scale=per_unit([u.weight for u in units]),
                control_guidance_start=per_unit([u.guidance_start for u in units]),
                control_guidance_end=per_unit([u.guidance_end for u in units]), guess_mode=guess)
    maps = per_unit([u.image for u in units])
    if mode == "txt2img":
        args.update(image=maps, width=spec.width, height=spec.height)
    else:
        args.update(image=spec.init_image, control_image=maps, strength=spec.pipeline_strength)
    if mode == "inpaint":
        args.update(mask_image=spec.mask, width=spec.width, height=spec.height)
    image = SERVER_MODES[mode].finish(spec, pipe(**args).images[0])
    return np.asarray(image, dtype=np.int16)


def served(service, request) -> np.ndarray:
    return pixels(service.client.generate(request).images[0].data)


def image_request(mode: str, model: str, **fields):
    steps = dict(steps=5, strength=0.8) if mode != "txt2img" else dict(steps=4)
    return request_for(mode, model=model if model != "tiny" else "", **{**steps, **fields})


def test_get_info_lists_the_folder_s_controlnets_with_their_families(services):
    info = services["txt2img"].client.info()
    listed = {c.name: c.family for c in info.controlnets}
    assert listed == {"second": "sd1", "tiny-controlnet": "sd1", "tiny-xl-controlnet": "sdxl"}
    assert info.limits.max_control_units == 3


@pytest.mark.parametrize("mode", ["txt2img", "img2img", "inpaint"])
@pytest.mark.parametrize("model", ["tiny", "tiny-xl"])
def test_one_unit_is_diffusers_own_controlnet_pipeline_and_changes_the_image(services, folder, mode, model):
    service = services[mode]
    name = "tiny-xl-controlnet" if model == "tiny-xl" else "tiny-controlnet"
    plain = served(service, image_request(mode, model))
    request = with_units(image_request(mode, model), dict(model=name))
    got = served(service, request)
    assert np.abs(got - plain).max() > 10  # the ControlNet steers
    expected = diffusers_image(folder, mode, model, service.runtime.check(request), [name])
    assert np.abs(got - expected).max() <= MAX_DIFF


def test_an_sdxl_inpainting_unet_feeds_its_controlnet_the_four_channel_latents(folder):
    service = RunningService("inpaint", "--engine", "step", "--model", "tiny-xl", "--controlnet-dir", str(folder))
    try:
        request = with_units(image_request("inpaint", "tiny"), dict(model="tiny-xl-controlnet", weight=1.3))
        spec = service.runtime.check(request)
        assert service.runtime.model.pipe.unet.config.in_channels == 9
        expected = diffusers_image(folder, "inpaint", "tiny-xl", spec, ["tiny-xl-controlnet"], nine_channels=True)
        assert np.abs(served(service, request) - expected).max() <= MAX_DIFF
    finally:
        service.stop()


@pytest.mark.parametrize("units, soft, guess", [
    # Two units: MultiControlNet, each with its own weight and guidance range.
    ([dict(model="tiny-controlnet", weight=0.7), dict(model="second", guidance_start=0.25, guidance_end=0.75,
                                                      image=png(seed=9))], False, False),
    # Guidance start and end, and a weight.
    ([dict(model="tiny-controlnet", weight=1.6, guidance_start=0.5, guidance_end=1.0)], False, False),
    # "My prompt is more important": soft injection on both halves.
    ([dict(model="tiny-controlnet", weight=0.9, control_mode=pb.CONTROL_MODE_PROMPT)], True, False),
    # "ControlNet is more important": soft injection, the conditional half only.
    ([dict(model="tiny-controlnet", control_mode=pb.CONTROL_MODE_CONTROLNET)], True, True),
])
def test_units_weights_ranges_and_control_modes_are_diffusers_own(services, folder, units, soft, guess):
    service = services["txt2img"]
    request = with_units(request_for("txt2img", steps=4), *units)
    got = served(service, request)
    expected = diffusers_image(folder, "txt2img", "tiny", service.runtime.check(request),
                               [unit["model"] for unit in units], soft=soft, guess=guess)
    assert np.abs(got - expected).max() <= MAX_DIFF


def test_the_control_modes_differ_from_balanced(services):
    service = services["txt2img"]
    images = [served(service, with_units(request_for("txt2img", steps=4), dict(model="tiny-controlnet",
                                                                               control_mode=mode)))
              for mode in (pb.CONTROL_MODE_BALANCED, pb.CONTROL_MODE_PROMPT, pb.CONTROL_MODE_CONTROLNET)]
    assert np.abs(images[0] - images[1]).max() > 3 and np.abs(images[1] - images[2]).max() > 3


def test_a_unit_without_an_image_steers_by_the_init_image(services, folder):
    service = services["img2img"]
    request = with_units(image_request("img2img", "tiny"), dict(model="tiny-controlnet", image=b""))
    spec = service.runtime.check(request)
    assert np.array_equal(np.asarray(spec.control[0].image), np.asarray(spec.init_image))  # 64x64 input: as it is
    got = served(service, request)
    assert np.abs(got - diffusers_image(folder, "img2img", "tiny", spec, ["tiny-controlnet"])).max() <= MAX_DIFF


CROWD = [
    dict(steps=4, seed=1),
    dict(steps=5, seed=2, units=[dict(model="tiny-controlnet")]),
    dict(steps=4, seed=3, guidance_scale=1.0, units=[dict(model="tiny-controlnet", control_mode=pb.CONTROL_MODE_CONTROLNET)]),
    dict(steps=6, seed=4, num_images=2, units=[dict(model="second", weight=0.5, guidance_end=0.5),
                                               dict(model="tiny-controlnet", image=png(seed=8))]),
    dict(steps=4, seed=5, scheduler="euler_a", units=[dict(model="second", control_mode=pb.CONTROL_MODE_PROMPT)]),
]


def crowd_request(fields: dict):
    fields = dict(fields)
    units = fields.pop("units", [])
    return with_units(request_for("txt2img", **fields), *units)


def test_a_crowd_mixing_units_and_none_gets_every_image_alone(services):
    service = services["txt2img"]
    alone = [service.client.generate(crowd_request(fields)) for fields in CROWD]
    before = service.metric("imagegen_step_rows_count")
    together = all_at_once([lambda c=c: service.client.generate(crowd_request(c)) for c in CROWD])
    for one, crowd in zip(alone, together):
        assert [image.seed for image in one.images] == [image.seed for image in crowd.images]
        for a, b in zip(one.images, crowd.images):
            assert a.infotext == b.infotext
            assert np.abs(pixels(a.data) - pixels(b.data)).max() <= MAX_DIFF
    calls = service.metric("imagegen_step_rows_count") - before
    assert calls < sum(fields["steps"] + 1 for fields in CROWD)  # they shared UNet calls


def test_infotext_records_each_unit_as_sd_webui_controlnet_does(services):
    service = services["txt2img"]
    request = with_units(request_for("txt2img", steps=2), dict(model="tiny-controlnet", weight=0.6),
                         dict(model="second", guidance_start=0.2, control_mode=pb.CONTROL_MODE_PROMPT,
                              resize_mode=pb.FIT_MODE_FILL))
    text = service.client.generate(request).images[0].infotext
    listed = {c.name: c for c in service.client.info().controlnets}
    digest = listed["tiny-controlnet"].hash
    assert len(digest) == 10 and listed["tiny-controlnet"].loaded
    assert (f'ControlNet 0: "Module: none, Model: tiny-controlnet [{digest}], Weight: 0.6, Resize Mode: Crop and '
            'Resize, Guidance Start: 0.0, Guidance End: 1.0, Pixel Perfect: False, Control Mode: Balanced"') in text
    assert ('Weight: 1.0, Resize Mode: Resize and Fill, Guidance Start: 0.2, Guidance End: 1.0, Pixel Perfect: '
            'False, Control Mode: My prompt is more important"') in text
    # ... and the client reads them back (PNG Info, replay, "Send to").
    from services.client.infotext import parse_parameters

    units = parse_parameters(text).controlnet
    assert (units[0].model, units[0].model_hash, units[0].weight) == ("tiny-controlnet", digest, 0.6)
    assert (units[1].guidance_start, units[1].control_mode, units[1].resize_mode) == (
        0.2, "My prompt is more important", "Resize and Fill")


@pytest.mark.parametrize("unit, field", [
    (dict(model="nope"), "params.control[0].model"),
    (dict(model="../tiny-controlnet"), "params.control[0].model"),
    (dict(model="tiny-xl-controlnet"), "params.control[0].model"),  # an SDXL ControlNet on an SD model
    (dict(model="tiny-controlnet", weight=2.5), "params.control[0].weight"),
    (dict(model="tiny-controlnet", weight=float("nan")), "params.control[0].weight"),
    (dict(model="tiny-controlnet", guidance_start=0.6, guidance_end=0.4), "params.control[0].guidance_start"),
    (dict(model="tiny-controlnet", guidance_end=1.5), "params.control[0].guidance_end"),
    (dict(model="tiny-controlnet", control_mode=7), "params.control[0].control_mode"),
    (dict(model="tiny-controlnet", resize_mode=pb.FIT_MODE_LATENT), "params.control[0].resize_mode"),
    (dict(model="tiny-controlnet", preprocessor="nope"), "params.control[0].preprocessor"),
    (dict(model="tiny-controlnet", image=b"not an image"), "params.control[0].image.data"),
    (dict(model="tiny-controlnet", image=b""), "params.control[0].image.data"),  # txt2img: required
])
def test_a_bad_unit_is_invalid_argument_naming_its_field_and_the_service_goes_on(services, unit, field):
    service = services["txt2img"]
    with pytest.raises(InvalidInput) as refused:
        service.client.generate(with_units(request_for("txt2img", steps=2), unit))
    assert refused.value.violations[0].field == field
    assert service.client.generate(request_for("txt2img", steps=2)).images


def test_more_units_than_the_limit_are_refused_naming_the_list(services):
    request = with_units(request_for("txt2img", steps=2), *[dict(model="tiny-controlnet")] * 4)
    with pytest.raises(InvalidInput) as refused:
        services["txt2img"].client.generate(request)
    assert refused.value.violations[0].field == "params.control"


def test_the_sdxl_model_refuses_an_sd_controlnet(services):
    request = with_units(request_for("txt2img", steps=2, model="tiny-xl"), dict(model="tiny-controlnet"))
    with pytest.raises(InvalidInput) as refused:
        services["txt2img"].client.generate(request)
    assert refused.value.violations[0].field == "params.control[0].model"
    assert "sd1" in refused.value.violations[0].description


def test_without_a_controlnet_folder_a_unit_is_refused_naming_it():
    service = RunningService("txt2img", "--engine", "step")
    try:
        with pytest.raises(InvalidInput) as refused:
            service.client.generate(with_units(request_for("txt2img", steps=2), dict(model="tiny-controlnet")))
        assert refused.value.violations[0].field == "params.control[0].model"
        assert "--controlnet-dir" in refused.value.violations[0].description
    finally:
        service.stop()


def test_the_pipeline_engine_refuses_units_naming_the_field(folder):
    service = RunningService("txt2img", "--engine", "pipeline", "--controlnet-dir", str(folder))
    try:
        with pytest.raises(InvalidInput) as refused:
            service.client.generate(with_units(request_for("txt2img", steps=2), dict(model="tiny-controlnet")))
        assert refused.value.violations[0].field == "params.control"
    finally:
        service.stop()


# Single files, as people download them: the original ControlNet layout (with and without the ControlLDM
# `control_model.` prefix, .safetensors and plain-tensor .pth) beside the diffusers folder of the very same
# ControlNet; a file whose tensors are no whole ControlNet, and one that is no ControlNet at all.
SINGLE_FILES = {"sd-file": ("sd-folder", "sd-file.safetensors", True), "sd-bare": ("sd-folder", "sd-bare.pth", False),
                "xl-file": ("xl-folder", "xl-file.safetensors", True), "xl-bare": ("xl-folder", "xl-bare.pth", False)}


@pytest.fixture(scope="module")
def file_folder(tmp_path_factory):
    from safetensors.torch import save_file

    from services.core.models.controlnet_writer import original_state, write_original

    folder = tmp_path_factory.mktemp("controlnet-files")
    nets = {"sd-folder": build_tiny_controlnet("tiny", seed=11, original=True),
            "xl-folder": build_tiny_controlnet("tiny-xl", seed=12, original=True)}
    for name, net in nets.items():
        net.save_pretrained(folder / name)
    for source, file_name, prefix in SINGLE_FILES.values():
        write_original(nets[source], folder / file_name, prefix=prefix)
    partial = original_state(nets["sd-folder"])
    del partial["control_model.zero_convs.2.0.weight"]
    save_file(partial, str(folder / "partial.safetensors"))
    save_file({"lora_unet_down.lora_up.weight": torch.zeros(4, 4)}, str(folder / "not-a-controlnet.safetensors"))
    return folder


@pytest.fixture(scope="module")
def file_service(file_folder, tmp_path_factory):
    from services.launch import demo_models

    models = demo_models(CACHE_DIR, tmp_path_factory.mktemp("models"))
    service = RunningService("txt2img", "--engine", "step", "--controlnet-dir", str(file_folder), "--models-dir",
                             str(models))
    yield service
    service.stop()


def test_single_files_are_listed_with_their_family_and_a1111_hash(file_service, file_folder):
    import hashlib
    import time

    deadline = time.monotonic() + 60
    while True:  # hashed in the background: GetInfo never waits for one
        listed = {c.name: c for c in file_service.client.info().controlnets}
        if all(c.hash for c in listed.values()) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert {name: c.family for name, c in listed.items()} == {
        "partial": "sd1", "sd-bare": "sd1", "sd-file": "sd1", "sd-folder": "sd1", "xl-bare": "sdxl", "xl-file": "sdxl",
        "xl-folder": "sdxl"}  # not-a-controlnet is skipped
    for name, (_source, file_name, _prefix) in SINGLE_FILES.items():
        assert listed[name].hash == hashlib.sha256((file_folder / file_name).read_bytes()).hexdigest()[:10]


@pytest.mark.parametrize("name", list(SINGLE_FILES))
def test_a_single_file_makes_the_image_of_its_diffusers_folder(file_service, file_folder, name):
    source = SINGLE_FILES[name][0]
    model = "tiny-xl" if source.startswith("xl") else "tiny"
    request = with_units(image_request("txt2img", model), dict(model=name, weight=1.5))
    got = served(file_service, request)
    from_folder = served(file_service, with_units(image_request("txt2img", model), dict(model=source, weight=1.5)))
    assert np.abs(got - from_folder).max() <= 1
    assert np.abs(got - served(file_service, image_request("txt2img", model))).max() > 10  # it steers
    expected = diffusers_image(file_folder, "txt2img", model, file_service.runtime.check(request), [source])
    assert np.abs(got - expected).max() <= MAX_DIFF


@pytest.mark.parametrize("name", ["partial", "not-a-controlnet"])
def test_a_broken_or_foreign_file_is_invalid_argument_naming_the_unit_and_the_service_goes_on(file_service, name):
    with pytest.raises(InvalidInput) as refused:
        file_service.client.generate(with_units(request_for("txt2img", steps=2), dict(model=name)))
    assert refused.value.violations[0].field == "params.control[0].model"
    assert str(file_service.config.controlnet_dir) not in refused.value.violations[0].description  # no paths
    assert file_service.client.generate(with_units(request_for("txt2img", steps=2), dict(model="sd-file"))).images
