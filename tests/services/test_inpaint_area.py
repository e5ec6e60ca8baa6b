"""A1111's inpainting choices and resize modes over gRPC, each against the diffusers chain that does it:
"only masked" is diffusers' padding_mask_crop, masked content fill / latent noise / latent nothing are
the picture or its latents changed before the pipeline call, fit latent is the input's latents stretched.
Run under IMAGEGEN_TEST_ENGINE=step and =pipeline: both engines give diffusers' images."""

from __future__ import annotations

import io

import grpc
import numpy as np
import pytest
import torch
from PIL import Image

from services.client.infotext import parse_parameters
from services.client.replay import replay_request
from services.core.imaging import masks
from services.core.imaging.images import fill_resize
from services.core.models.presets import ensure_tiny
from tests.conftest import CACHE_DIR, box_mask, png, request_for

MAX_DIFF = 3  # of 255, per channel: the engines' UNet batches against diffusers' own call
FIELDS = {"prompt": "a red fox", "negative_prompt": "", "steps": 4, "seed": 7}


def pixels(data) -> np.ndarray:
    image = data if isinstance(data, Image.Image) else Image.open(io.BytesIO(data))
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def decoded(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data)).convert("RGB")


@pytest.fixture(scope="module")
def inpaint_pipe():
    from diffusers import AutoPipelineForInpainting

    pipe = AutoPipelineForInpainting.from_pretrained(ensure_tiny(CACHE_DIR, True))
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def img2img_pipe():
    from diffusers import AutoPipelineForImage2Image

    pipe = AutoPipelineForImage2Image.from_pretrained(ensure_tiny(CACHE_DIR, False))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def generator(seed: int = 7) -> torch.Generator:
    return torch.Generator("cpu").manual_seed(seed)


def diffusers_call(pipe, strength: float, **inputs) -> Image.Image:
    return pipe(FIELDS["prompt"], num_inference_steps=FIELDS["steps"], strength=strength, generator=generator(),
                **inputs).images[0]


# --- only masked -------------------------------------------------------------------------------------

def test_only_masked_is_diffusers_padding_mask_crop(services, inpaint_pipe):
    source, mask = png((120, 96), seed=3), box_mask((120, 96), (70, 20, 100, 44))
    got = services["inpaint"].client.generate(request_for(
        "inpaint", image=source, mask=mask, mask_blur=0, only_masked=True, only_masked_padding=6, width=64,
        height=64, **FIELDS)).images[0]
    assert (got.width, got.height) == (120, 96)  # the input's size: the repainted box went back into it
    expected = diffusers_call(inpaint_pipe, 1.0, image=decoded(source), mask_image=Image.open(io.BytesIO(mask)),
                              width=64, height=64, padding_mask_crop=6)
    assert np.abs(pixels(got.data) - pixels(expected)).max() <= MAX_DIFF
    # ... and it is not the whole picture repainted at 64x64 and stretched back.
    whole = services["inpaint"].client.generate(request_for(
        "inpaint", image=source, mask=mask, mask_blur=0, width=120, height=96, **FIELDS)).images[0]
    assert np.abs(pixels(got.data) - pixels(whole.data)).max() > 20


def test_only_masked_keeps_every_pixel_outside_the_mask_and_records_a1111s_keys(services):
    source, box = png((96, 80), seed=4), (40, 16, 72, 48)
    got = services["inpaint"].client.generate(request_for(
        "inpaint", image=source, mask=box_mask((96, 80), box), mask_blur=8, only_masked=True, width=64,
        height=64, **FIELDS)).images[0]
    out, src = pixels(got.data), pixels(source)
    keep = np.ones((80, 96), bool)
    keep[box[1]:box[3], box[0]:box[2]] = False
    assert np.array_equal(out[keep], src[keep])
    assert np.abs(out[~keep] - src[~keep]).mean() > 10
    assert "Size: 64x64" in got.infotext  # the size denoised at, as A1111 records it
    assert "Inpaint area: Only masked, Masked area padding: 32" in got.infotext  # the default padding


def test_only_masked_padding_grows_the_region_repainted(services):
    source, mask = png((128, 128), seed=5), box_mask((128, 128), (56, 56, 72, 72))
    tight, wide = (pixels(services["inpaint"].client.generate(request_for(
        "inpaint", image=source, mask=mask, mask_blur=0, only_masked=True, only_masked_padding=padding, width=64,
        height=64, **FIELDS)).images[0].data) for padding in (0, 40))
    # The same mask at another zoom: the repainted pixels differ.
    assert np.abs(tight[56:72, 56:72] - wide[56:72, 56:72]).mean() > 5


# --- masked content ----------------------------------------------------------------------------------

def test_masked_content_fill_is_the_pipeline_on_the_filled_picture(services, inpaint_pipe):
    source, mask = decoded(png(seed=6)), Image.open(io.BytesIO(box_mask())).convert("L")
    got = services["inpaint"].client.generate(request_for(
        "inpaint", image=png(seed=6), mask=box_mask(), mask_blur=0, strength=0.6, masked_content="fill",
        **FIELDS)).images[0]
    filled = masks.fill_masked(source, mask)
    generated = diffusers_call(inpaint_pipe, 0.6, image=filled, mask_image=mask, width=64, height=64)
    expected = Image.composite(generated, source, mask)  # the answer keeps the input outside the mask
    assert np.abs(pixels(got.data) - pixels(expected)).max() <= MAX_DIFF
    assert "Masked content: fill" in got.infotext
    original = services["inpaint"].client.generate(request_for(
        "inpaint", image=png(seed=6), mask=box_mask(), mask_blur=0, strength=0.6, **FIELDS)).images[0]
    assert np.abs(pixels(got.data) - pixels(original.data)).max() > 3 * MAX_DIFF  # the filling showed
    assert "Masked content" not in original.infotext  # original: A1111 writes nothing


def test_fill_paints_the_masked_area_with_its_surroundings_and_keeps_the_rest():
    source = np.zeros((64, 64, 3), np.uint8)
    source[:, :32] = (200, 30, 30)
    source[:, 32:] = (30, 30, 200)
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (24, 0, 40, 64))
    image = Image.fromarray(source)
    source[:, 24:40] = 0  # what was under the mask must not show
    filled = np.asarray(masks.fill_masked(Image.fromarray(source), mask), dtype=np.int16)
    assert np.array_equal(filled[:, :24], np.asarray(image, dtype=np.int16)[:, :24])
    assert filled[:, 25, 0].min() > 120 and filled[:, 38, 2].min() > 120  # red spreads left, blue right


@pytest.mark.parametrize("content", ["latent noise", "latent nothing"])
def test_latent_masked_content_is_the_pipeline_on_changed_latents(services, inpaint_pipe, content):
    source_png, mask_png = png(seed=8), box_mask()
    got = services["inpaint"].client.generate(request_for(
        "inpaint", image=source_png, mask=mask_png, mask_blur=0, strength=0.6, masked_content=content,
        **FIELDS)).images[0]
    # The chain a diffusers user writes: encode, change the latents under the mask, pass them as `image`
    # (with the masked picture's latents), one generator throughout.
    pipe, source, mask = inpaint_pipe, decoded(source_png), Image.open(io.BytesIO(mask_png)).convert("L")
    gen = generator()
    picture = pipe.image_processor.preprocess(source)
    condition = pipe.mask_processor.preprocess(mask)
    scale = pipe.vae.config.scaling_factor
    latents = pipe.vae.encode(picture).latent_dist.sample(gen) * scale
    small = torch.nn.functional.interpolate(condition, size=latents.shape[-2:])
    fill = torch.randn(latents.shape, generator=gen) if content == "latent noise" else torch.zeros_like(latents)
    latents = latents * (1 - small) + fill * small
    masked = pipe.vae.encode(picture * (condition < 0.5)).latent_dist.sample(gen) * scale
    generated = pipe(FIELDS["prompt"], num_inference_steps=FIELDS["steps"], strength=0.6, generator=gen,
                     image=latents, masked_image_latents=masked, mask_image=mask, width=64, height=64).images[0]
    expected = Image.composite(generated, source, mask)
    assert np.abs(pixels(got.data) - pixels(expected)).max() <= MAX_DIFF
    assert f"Masked content: {content}" in got.infotext


def test_latent_masked_content_at_strength_1_is_the_original(services):
    # Pure noise to start from: what lies under the mask is never seen.
    client = services["inpaint"].client
    images = [pixels(client.generate(request_for("inpaint", strength=1.0, masked_content=content, **FIELDS))
                     .images[0].data) for content in ("original", "latent noise", "latent nothing")]
    assert np.array_equal(images[0], images[1]) and np.array_equal(images[0], images[2])


# --- resize modes ------------------------------------------------------------------------------------

def test_fit_latent_is_the_inputs_latents_stretched(services, img2img_pipe):
    source_png = png((80, 48), seed=9)
    got = services["img2img"].client.generate(request_for(
        "img2img", image=source_png, fit="latent", width=64, height=64, strength=0.7, **FIELDS)).images[0]
    pipe, gen = img2img_pipe, generator()
    encoded = pipe.vae.encode(pipe.image_processor.preprocess(decoded(source_png))).latent_dist.sample(gen)
    stretched = torch.nn.functional.interpolate(encoded * pipe.vae.config.scaling_factor, size=(8, 8),
                                                mode="bilinear")
    expected = pipe(FIELDS["prompt"], num_inference_steps=FIELDS["steps"], strength=0.7, generator=gen,
                    image=stretched).images[0]
    assert np.abs(pixels(got.data) - pixels(expected)).max() <= MAX_DIFF
    assert "Resize mode: Just resize (latent upscale)" in got.infotext
    resized = services["img2img"].client.generate(request_for(
        "img2img", image=source_png, width=64, height=64, strength=0.7, **FIELDS)).images[0]
    assert np.abs(pixels(got.data) - pixels(resized.data)).max() > 10


def test_fit_latent_and_fill_in_inpaint_keep_the_fitted_input_outside_the_mask(services):
    # The answer shows, outside the mask, the input as the fit made it: stretched (latent), filled (fill).
    source = png((96, 64), seed=10)
    picture = Image.open(io.BytesIO(source))
    for fit, fitted in (("latent", picture.resize((64, 64), Image.LANCZOS)), ("fill", fill_resize(picture, 64, 64))):
        got = services["inpaint"].client.generate(request_for(
            "inpaint", image=source, mask=box_mask((96, 64), (32, 16, 64, 48)), mask_blur=0, fit=fit, width=64,
            height=64, strength=0.7, **FIELDS)).images[0]
        assert (got.width, got.height) == (64, 64)
        out, src = pixels(got.data), pixels(fitted)
        assert np.array_equal(out[:8], src[:8]), fit
        assert np.abs(out[24:40, 24:40] - src[24:40, 24:40]).mean() > 5, fit


# --- checks and replay -------------------------------------------------------------------------------

@pytest.mark.parametrize("field, overrides", [
    ("only_masked_padding", {"only_masked": True, "only_masked_padding": 257}),
    ("masked_content", {}),
    ("fit", {}),
])
def test_bad_values_are_refused_naming_the_field(services, field, overrides):
    request = request_for("inpaint", **overrides)
    if field == "masked_content":
        request.masked_content = 99
    if field == "fit":
        request.fit = 99
    with pytest.raises(grpc.RpcError) as err:
        services["inpaint"].client.generate(request)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details().startswith(f"{field}: "), err.value.details()
    assert len(services["inpaint"].client.generate(request_for("inpaint")).images) == 1  # still serving


def test_fit_latent_refuses_an_input_too_big_to_encode(services):
    big = png((2056, 2056), seed=1)  # over max_pixels (2048 x 2048) rounded to a multiple of 8
    with pytest.raises(grpc.RpcError) as err:
        services["img2img"].client.generate(request_for("img2img", image=big, fit="latent", width=64, height=64))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details().startswith("init_image.data: "), err.value.details()


@pytest.mark.parametrize("mode, fields", [
    ("inpaint", {"only_masked": True, "only_masked_padding": 4, "masked_content": "latent noise", "strength": 0.7}),
    ("inpaint", {"masked_content": "fill", "fit": "fill", "width": 64, "height": 64, "strength": 0.7}),
    ("img2img", {"fit": "latent", "width": 64, "height": 64}),
])
def test_replaying_the_infotext_gives_the_same_pixels(services, mode, fields):
    image, mask = png((80, 64), seed=11), box_mask((80, 64), (20, 20, 50, 44))
    inputs = {"image": image, **({"mask": mask} if mode == "inpaint" else {})}
    client = services[mode].client
    first = client.generate(request_for(mode, **inputs, **fields)).images[0]
    request, warnings = replay_request(parse_parameters(first.infotext), client.info(), **inputs)
    assert warnings == []
    again = client.generate(request).images[0]
    assert np.array_equal(pixels(again.data), pixels(first.data))
