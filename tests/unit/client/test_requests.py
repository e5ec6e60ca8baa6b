"""make_request and as_image: request messages from plain Python values."""

import io

import pytest
from PIL import Image

from imagegen.v1 import imagegen_pb2 as pb
from services.client.requests import as_image, make_request


def test_txt2img_fields_and_image_fields_ignored():
    request = make_request("txt2img", "a fox", negative_prompt="blurry", steps=5, guidance_scale=6.5,
                           width=64, height=128, seed=7, num_images=2, scheduler="ddim", output_format="jpeg",
                           quality=80, image=b"png", mask=b"mask", strength=0.5, fit="crop", mask_blur=2)
    assert isinstance(request, pb.Txt2ImgRequest)
    assert request.params == pb.GenerationParams(
        prompt="a fox", negative_prompt="blurry", num_inference_steps=5, guidance_scale=6.5, width=64,
        height=128, seed=7, num_images=2, scheduler="ddim", output_format=pb.IMAGE_FORMAT_JPEG, quality=80)


def test_unset_optional_fields_are_left_to_the_service():
    params = make_request("txt2img", "a fox").params
    assert not params.HasField("seed") and not params.HasField("guidance_scale")
    assert params.num_inference_steps == 0 and params.output_format == pb.IMAGE_FORMAT_PNG
    zero = make_request("txt2img", seed=0, guidance_scale=0.0).params
    assert zero.HasField("seed") and zero.HasField("guidance_scale")  # zero is a value, not "unset"


def test_img2img_takes_image_strength_and_fit_but_not_a_mask():
    request = make_request("img2img", "a fox", image=b"png bytes", strength=0.6, fit="crop", mask=b"mask")
    assert isinstance(request, pb.Img2ImgRequest)
    assert request.init_image.data == b"png bytes"
    assert request.HasField("strength") and request.strength == pytest.approx(0.6)
    assert request.fit == pb.FIT_MODE_CROP
    assert not make_request("img2img", image=b"x").HasField("strength")


def test_inpaint_takes_the_mask_fields_too():
    request = make_request("inpaint", "a cat", image=b"img", mask=b"mask", mask_blur=0, invert_mask=True,
                           fit="keep")
    assert isinstance(request, pb.InpaintRequest)
    assert (request.init_image.data, request.mask_image.data) == (b"img", b"mask")
    assert request.HasField("mask_blur") and request.mask_blur == 0
    assert request.invert_mask and request.fit == pb.FIT_MODE_KEEP
    assert not make_request("inpaint").HasField("mask_blur")


def test_inpaint_area_masked_content_and_the_new_fits_by_name():
    request = make_request("inpaint", image=b"img", mask=b"mask", only_masked=True, only_masked_padding=0,
                           masked_content="latent noise", fit="fill")
    assert request.only_masked and request.HasField("only_masked_padding") and request.only_masked_padding == 0
    assert request.masked_content == pb.MASKED_CONTENT_LATENT_NOISE and request.fit == pb.FIT_MODE_FILL
    plain = make_request("inpaint")
    assert not plain.only_masked and not plain.HasField("only_masked_padding")
    assert plain.masked_content == pb.MASKED_CONTENT_UNSPECIFIED  # the service's default: original
    assert make_request("img2img", fit="latent").fit == pb.FIT_MODE_LATENT
    with pytest.raises(ValueError, match="masked content"):
        make_request("inpaint", masked_content="noise")


@pytest.mark.parametrize("name, enum", [("png", pb.IMAGE_FORMAT_PNG), ("jpeg", pb.IMAGE_FORMAT_JPEG),
                                        ("webp", pb.IMAGE_FORMAT_WEBP)])
def test_output_formats_by_name(name, enum):
    assert make_request("txt2img", output_format=name).params.output_format == enum


def test_unknown_names_are_refused():
    with pytest.raises(ValueError, match="unknown mode"):
        make_request("outpaint", "a fox")
    with pytest.raises((KeyError, ValueError)):
        make_request("txt2img", output_format="gif")
    with pytest.raises((KeyError, ValueError)):
        make_request("img2img", fit="stretch")


def test_as_image_from_bytes_path_pil_and_message(tmp_path):
    path = tmp_path / "in.png"
    path.write_bytes(b"file bytes")
    assert as_image(b"raw").data == b"raw" and as_image(bytearray(b"raw")).data == b"raw"
    assert as_image(path).data == b"file bytes" and as_image(str(path)).data == b"file bytes"
    message = pb.Image(data=b"x")
    assert as_image(message) is message
    converted = as_image(Image.new("RGB", (4, 2), "red"))
    assert converted.mime_type == "image/png"
    assert Image.open(io.BytesIO(converted.data)).size == (4, 2)
    with pytest.raises(TypeError):
        as_image(42)


def test_hires_fix_becomes_the_txt2img_second_pass():
    request = make_request("txt2img", "a fox", hires={
        "scale": 2, "upscaler": "Latent (bicubic)", "steps": 0, "denoising_strength": 0.55,
        "scheduler": "euler_a", "schedule_type": "", "prompt": "a sharp fox", "negative_prompt": ""})
    hires = request.hires
    assert request.HasField("hires") and hires.HasField("scale") and hires.scale == 2
    assert (hires.upscaler, hires.steps, hires.scheduler, hires.prompt) == ("Latent (bicubic)", 0, "euler_a",
                                                                            "a sharp fox")
    assert hires.denoising_strength == pytest.approx(0.55)
    sized = make_request("txt2img", hires={"resize_width": 1024, "resize_height": 0, "upscaler": "Lanczos"}).hires
    assert (sized.resize_width, sized.resize_height, sized.upscaler) == (1024, 0, "Lanczos")
    assert not sized.HasField("scale") and not sized.HasField("denoising_strength")  # the service's defaults
    assert make_request("txt2img", hires={}).HasField("hires")  # a second pass with every default
    assert not make_request("txt2img", "a fox").HasField("hires")
    # Model upscalers are named by the service (GetInfo): any other name is the service's to check.
    assert make_request("txt2img", hires={"upscaler": "4x-UltraSharp"}).hires.upscaler == "4x-UltraSharp"


def test_hires_fix_refuses_unknown_keys_and_latent_modes_by_name():
    with pytest.raises(ValueError, match=r"unknown hires keys \['hr_scale'\]"):
        make_request("txt2img", hires={"hr_scale": 2})
    with pytest.raises(ValueError, match="unknown hires upscaler 'Latent \\(bilinear\\)'.*Latent \\(nearest-exact\\)"):
        make_request("txt2img", hires={"upscaler": "Latent (bilinear)"})
    with pytest.raises(ValueError, match="hires steps '-1'"):
        make_request("txt2img", hires={"steps": -1})
