"""Reading parameters back: ours and AUTOMATIC1111's infotext, from PNG, JPEG and WEBP files."""

from __future__ import annotations

import dataclasses
import inspect
import io

import pytest
from PIL import Image, PngImagePlugin

from imagegen.v1.contract import OUTPUT_FORMATS
from imagegen.v1.infotext import split_infotext
from services.client import make_request
from services.client.infotext import (RECALLABLE, NoParameters, Parameters, parse_parameters, read_infotext,
                                      read_parameters)
from services.core.imaging.images import encode_image

# As AUTOMATIC1111 1.10 writes an inpainting result (with a LoRA, and its extras).
A1111_INPAINT = (
    "masterpiece, a castle, <lora:add_detail:0.8>\n"
    "Negative prompt: lowres, bad anatomy\n"
    "Steps: 30, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1234567890, Size: 512x768, "
    'Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Denoising strength: 0.75, Mask blur: 4, '
    'Lora hashes: "add_detail: 7c6bad76eb54, detail2: 0123456789ab", Version: v1.10.1'
)


def test_each_recallable_field_is_a_parameters_attribute_and_a_request_keyword():
    attributes = {f.name for f in dataclasses.fields(Parameters)}
    keywords = set(inspect.signature(make_request).parameters)
    for field in RECALLABLE:
        assert field.name in attributes and field.name in keywords, field


def test_reads_automatic1111_inpainting_infotext():
    p = parse_parameters(A1111_INPAINT)
    assert p.mode == "inpaint"
    assert p.prompt == "masterpiece, a castle, <lora:add_detail:0.8>"
    assert p.negative_prompt == "lowres, bad anatomy"
    assert (p.steps, p.guidance_scale, p.seed, p.width, p.height) == (30, 7.0, 1234567890, 512, 768)
    assert (p.scheduler, p.schedule_type) == ("dpmpp_2m", "karras")
    assert p.sampler == "DPM++ 2M, Schedule type: Karras"
    assert (p.strength, p.mask_blur, p.model) == (0.75, 4, "v1-5-pruned-emaonly")
    assert p.loras == {"add_detail": "7c6bad76eb54", "detail2": "0123456789ab"}
    assert p.model_hash == "6ce0161689" and p.extra == {"Version": "v1.10.1"}
    assert p.problems == ()
    fields = p.fields()
    assert fields["seed"] == "1234567890" and fields["loras"]["add_detail"] == "7c6bad76eb54"


def test_the_mode_comes_from_the_infotext():
    base = "a fox\nSteps: 4, Sampler: Euler a, CFG scale: 7.5, Seed: 7, Size: 64x64, Model: tiny"
    assert parse_parameters(base).mode == "txt2img"
    assert parse_parameters(base + ", Denoising strength: 0.6").mode == "img2img"
    assert parse_parameters(base + ", Denoising strength: 1.0, Mask blur: 0").mode == "inpaint"
    inverted = parse_parameters(f"{base}, Denoising strength: 1, Mask blur: 4, Mask mode: Inpaint not masked")
    assert inverted.mode == "inpaint" and inverted.invert_mask
    # AUTOMATIC1111's hires fix records a denoising strength on a txt2img image.
    hires = parse_parameters(base + ", Denoising strength: 0.7, Hires upscale: 2, Hires upscaler: Latent")
    assert hires.mode == "txt2img" and hires.strength is None
    assert hires.problems == () and hires.hires["scale"] == 2 and hires.hires["denoising_strength"] == 0.7


def test_an_unknown_sampler_is_named():
    p = parse_parameters("x\nSteps: 20, Sampler: DPM++ 2S a, Schedule type: Exponential, Seed: 1")
    assert p.scheduler is None and p.schedule_type is None
    assert p.problems and "'DPM++ 2S a, Schedule type: Exponential'" in p.problems[0]
    assert "Euler a" in p.problems[0] and "SGM Uniform" in p.problems[0]  # and what there is instead
    odd = parse_parameters("x\nSteps: 20, Sampler: Euler, Schedule type: Align Your Steps, Seed: 1")
    assert odd.scheduler is None and "'Euler, Schedule type: Align Your Steps'" in odd.problems[0]


def test_bad_numbers_are_problems_not_crashes():
    p = parse_parameters("x\nSteps: many, CFG scale: 7, Seed: 1, Size: big")
    assert p.steps is None and p.seed == 1
    assert any("Steps 'many'" in problem for problem in p.problems)
    assert any("Size 'big'" in problem for problem in p.problems)


def test_text_without_a_parameters_line_is_refused():
    with pytest.raises(NoParameters):
        parse_parameters("just a prompt")
    assert split_infotext("just a prompt\nsecond line") == ("just a prompt\nsecond line", "", {})


def png_with_text(text: str | None) -> bytes:
    info = PngImagePlugin.PngInfo()
    if text is not None:
        info.add_text("parameters", text)
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp"])
def test_reads_what_the_services_write_in_every_format(fmt):
    data = encode_image(Image.new("RGB", (8, 8)), OUTPUT_FORMATS[fmt], A1111_INPAINT, 90)
    assert read_infotext(data) == A1111_INPAINT
    assert read_parameters(data).seed == 1234567890


@pytest.mark.parametrize("order", ["utf-16-be", "utf-16-le"])
def test_reads_exif_user_comment_in_either_byte_order(order):
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9286] = b"UNICODE\0" + A1111_INPAINT.encode(order)
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format="JPEG", exif=exif.tobytes())
    assert read_infotext(buf.getvalue()) == A1111_INPAINT


def test_files_without_parameters_say_so():
    assert read_infotext(png_with_text(None)) is None
    with pytest.raises(NoParameters, match="no generation parameters"):
        read_parameters(png_with_text(None))
    with pytest.raises(NoParameters, match="not a readable image"):
        read_parameters(b"not an image at all")


BASE = "a fox\nSteps: 4, Sampler: Euler a, CFG scale: 7.5, Seed: 7, Size: 64x64"


PAIRS = {"Steps": "4", "Sampler": "Euler a", "CFG scale": "7.5", "Seed": "7", "Size": "64x64"}


@pytest.mark.parametrize("key, value, attribute, problem", [
    ("Seed", str(2**64), "seed", f"Seed '{2**64}' is outside 0..{2**64 - 1}"),
    ("Seed", "-5", "seed", "Seed '-5' is outside 0.."),
    ("CFG scale", "nan", "guidance_scale", "CFG scale 'nan' is outside 0..50"),
    ("CFG scale", "1e400", "guidance_scale", "CFG scale '1e400' is outside"),
    ("Steps", "1000000000", "steps", "Steps '1000000000' is outside 1..150"),
    ("Steps", "-3", "steps", "Steps '-3' is outside"),
    ("Size", "99999999999x64", "width", "Size '99999999999x64' is outside 64..2048"),
    ("Clip skip", "-1", "clip_skip", "Clip skip '-1' is outside 1..12"),
    ("Steps", "9" * 5000, "steps", "Steps '" + "9" * 40 + "...' is not a number"),  # past int()'s digits
])
def test_values_outside_what_a_request_takes_are_problems_not_fields(key, value, attribute, problem):
    p = parse_parameters("a fox\n" + ", ".join(f"{k}: {v}" for k, v in {**PAIRS, key: value}.items()))
    assert getattr(p, attribute) is None
    assert any(problem in found for found in p.problems), p.problems
    assert p.refused[key] in p.problems
    assert p.seed == (None if key == "Seed" else 7) and p.scheduler == "euler_a"  # the others are kept


def test_a_refused_mask_blur_or_strength_still_tells_the_mode():
    assert parse_parameters(BASE + ", Denoising strength: 0.6, Mask blur: -3").mode == "inpaint"
    p = parse_parameters(BASE + ", Denoising strength: 7")
    assert p.mode == "img2img" and p.strength is None and "Denoising strength" in p.refused


def test_infotext_over_the_limit_is_not_read():
    from services.client.infotext import MAX_INFOTEXT

    long_prompt = "x" * MAX_INFOTEXT
    with pytest.raises(NoParameters, match=f"longer than {MAX_INFOTEXT} characters"):
        parse_parameters(f"{long_prompt}\n{BASE}")
    with pytest.raises(NoParameters, match="longer than"):
        read_parameters(png_with_text(f"{long_prompt}\n{BASE}"))
    assert parse_parameters("x" * (MAX_INFOTEXT - len(BASE) - 1) + "\n" + BASE).seed == 7  # up to it is read


def png_with_chunks(*chunks: tuple[str, str, bool]) -> bytes:
    """A PNG with text chunks (keyword, text, compressed), written as Pillow writes them."""
    info = PngImagePlugin.PngInfo()
    for keyword, text, compressed in chunks:
        info.add_text(keyword, text, zip=compressed)
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def test_a_big_unrelated_text_chunk_does_not_hide_the_parameters():
    workflow = '{"nodes": [' + ", ".join(f'{{"id": {i}}}' for i in range(200_000)) + "]}"  # 2.4 MB
    assert len(workflow) > PngImagePlugin.MAX_TEXT_CHUNK
    for compressed in (True, False):
        data = png_with_chunks(("workflow", workflow, compressed), ("parameters", A1111_INPAINT, compressed))
        if compressed:
            with pytest.raises(ValueError, match="MAX_TEXT_CHUNK"):  # what Pillow says of the whole file
                Image.open(io.BytesIO(data))
        assert read_infotext(data) == A1111_INPAINT
        assert read_parameters(data).seed == 1234567890
    assert read_infotext(png_with_chunks(("workflow", workflow, True))) is None  # none: no parameters


@pytest.mark.parametrize("compressed", [False, True])
def test_text_chunks_of_every_kind_are_read(compressed):
    unicode = "ein Fuchs, rötlich 狐\n" + BASE  # not Latin-1: Pillow writes an iTXt chunk
    assert read_infotext(png_with_chunks(("parameters", unicode, compressed))) == unicode
    assert read_infotext(png_with_chunks(("parameters", A1111_INPAINT, compressed))) == A1111_INPAINT


def test_a_broken_png_is_still_unreadable():
    data = png_with_text(A1111_INPAINT)
    with pytest.raises(NoParameters, match="not a readable image"):
        read_infotext(data[:20])  # cut in its header
    broken = bytearray(data)
    broken[16] ^= 0xFF  # IHDR's width: its checksum no longer holds
    with pytest.raises(NoParameters, match="not a readable image"):
        read_infotext(bytes(broken))
