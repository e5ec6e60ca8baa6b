"""The command line: wrong numbers are one-line usage errors (exit code 2), and files are named by format."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from imagegen.v1.contract import MAX_SEED
from services.client.cli import build_parser, main, output_path

IMAGE_ARGS = ["--image", "in.png"]
INPAINT_ARGS = [*IMAGE_ARGS, "--mask", "mask.png"]


@pytest.mark.parametrize("argv", [
    ["txt2img", "--seed", "-2"],
    ["txt2img", "--seed", str(MAX_SEED + 1)],
    ["txt2img", "--steps", "-3"],
    ["txt2img", "--steps", str(2**32)],
    ["txt2img", "--steps", "many"],
    ["txt2img", "--steps", "2.5"],
    ["txt2img", "--width", "-64"],
    ["txt2img", "--height", "-8"],
    ["txt2img", "--num-images", "-1"],
    ["txt2img", "--timeout", "-5"],
    ["txt2img", "--timeout", "nan"],
    ["img2img", *IMAGE_ARGS, "--seed", "-7"],
    ["inpaint", *INPAINT_ARGS, "--mask-blur", "-2"],
    ["inpaint", *INPAINT_ARGS, "--mask-blur", "65"],
    ["inpaint", *INPAINT_ARGS, "--only-masked-padding", "257"],
])
def test_numbers_out_of_range_are_a_one_line_usage_error(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)  # refused before any service is called: none runs at the default address
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and f"argument {argv[-2]}:" in errors[0], err


def test_the_parser_takes_numbers_in_range():
    args = build_parser().parse_args(["inpaint", *INPAINT_ARGS, "--seed", str(MAX_SEED), "--steps", "0",
                                      "--mask-blur", "64", "--num-images", "2", "--timeout", "1.5"])
    assert (args.seed, args.steps, args.mask_blur, args.num_images, args.timeout) == (MAX_SEED, 0, 64, 2, 1.5)
    assert build_parser().parse_args(["txt2img"]).seed is None  # random
    inpaint = build_parser().parse_args(["inpaint", *INPAINT_ARGS, "--only-masked", "--only-masked-padding", "256",
                                         "--masked-content", "latent nothing", "--fit", "latent"])
    assert (inpaint.only_masked, inpaint.only_masked_padding, inpaint.masked_content, inpaint.fit) == (
        True, 256, "latent nothing", "latent")
    assert build_parser().parse_args(["txt2img", "--seed", "-1"]).seed is None  # random, as in the tabs


def test_seed_minus_one_is_random_in_the_client_too():
    from services.client.requests import make_request

    assert not make_request("txt2img", seed=-1).params.HasField("seed")
    assert make_request("txt2img", seed=0).params.seed == 0


BASE_PAIRS = {"Steps": "4", "Sampler": "Euler a", "CFG scale": "7", "Seed": "1", "Size": "64x64"}


@pytest.mark.parametrize("key, value", [
    ("Seed", "-5"), ("Seed", str(2**64)), ("Steps", str(10**12)), ("Steps", "-4"), ("Clip skip", "-1"),
    ("Mask blur", "-3"), ("Size", f"{2**40}x64"), ("CFG scale", "nan"), ("Denoising strength", "1e400"),
])
def test_replay_of_numbers_out_of_range_is_a_one_line_error(key, value, tmp_path, capsys):
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    pairs = ", ".join(f"{k}: {v}" for k, v in {**BASE_PAIRS, key: value}.items())
    info.add_text("parameters", f"a fox\n{pairs}")
    Image.new("RGB", (8, 8)).save(tmp_path / "odd.png", pnginfo=info)
    # Refused before any service is called: none runs at the default address.
    assert main(["replay", str(tmp_path / "odd.png"), "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1 and err.startswith("error: "), err
    assert f"{key} '{value}' is outside" in err
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("out, fmt, expected", [
    (None, "png", "txt2img.png"),
    (None, "jpeg", "txt2img.jpg"),
    (None, "webp", "txt2img.webp"),
    ("x.png", "jpeg", "x.jpg"),
    ("x.jpeg", "jpeg", "x.jpeg"),
    ("x.JPG", "jpeg", "x.JPG"),
    ("x.jpg", "webp", "x.webp"),
    ("x.webp", "png", "x.png"),
    ("dir/x", "jpeg", "dir/x.jpg"),
    ("run.v2", "png", "run.v2.png"),
])
def test_the_output_name_follows_the_format(out, fmt, expected):
    assert output_path(None if out is None else Path(out), "txt2img", fmt) == Path(expected)


def test_jpeg_asked_for_a_png_name_is_written_as_jpg(services, tmp_path, capsys, monkeypatch):
    address = services["txt2img"].address
    small = ["--addr", address, "--prompt", "a fox", "--steps", "2", "--width", "64", "--height", "64", "--seed", "3"]
    assert main(["txt2img", *small, "--format", "jpeg", "--out", str(tmp_path / "x.png")]) == 0
    assert not (tmp_path / "x.png").exists()
    data = (tmp_path / "x.jpg").read_bytes()
    assert data[:3] == b"\xff\xd8\xff" and Image.open(io.BytesIO(data)).format == "JPEG"
    captured = capsys.readouterr()
    assert str(tmp_path / "x.jpg") in captured.out and "x.jpg" in captured.err  # said where it went

    monkeypatch.chdir(tmp_path)  # the default name follows the format too
    assert main(["txt2img", *small, "--format", "webp", "--num-images", "2", "--quiet"]) == 0
    for name in ("txt2img-0.webp", "txt2img-1.webp"):
        assert Image.open(tmp_path / name).format == "WEBP"


def test_loras_are_name_and_weight_and_reach_the_request():
    from services.client.requests import make_request

    args = build_parser().parse_args(["txt2img", "--lora", "film grain:0.6", "--lora", "pixel", "--lora", "x:-1.5"])
    assert args.lora == [("film grain", 0.6), ("pixel", 1.0), ("x", -1.5)]
    request = make_request("txt2img", "a fox", loras=args.lora)
    assert [(item.name, round(item.weight, 3)) for item in request.params.loras] == args.lora
    assert [item.name for item in make_request("txt2img", loras={"a": 1}).params.loras] == ["a"]


@pytest.mark.parametrize("value", ["film:strong", ":0.5"])
def test_a_bad_lora_is_a_one_line_usage_error(value, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["txt2img", "--lora", value])
    assert exit_info.value.code == 2 and "--lora" in capsys.readouterr().err


def test_txt2img_takes_the_hires_fix_and_refuses_an_unknown_latent_mode(capsys):
    from services.client.hires_cli import hires_of

    args = build_parser().parse_args(["txt2img", "--hires", "--hires-scale", "1.5", "--hires-upscaler",
                                      "Latent (bicubic)", "--hires-steps", "6", "--hires-resize", "1024x0"])
    assert hires_of(args) == {"scale": 1.5, "resize_width": 1024, "resize_height": 0, "upscaler": "Latent (bicubic)",
                              "steps": 6, "denoising_strength": None, "scheduler": "", "schedule_type": "",
                              "prompt": "", "negative_prompt": ""}
    assert hires_of(build_parser().parse_args(["txt2img", "--hires-scale", "2"])) is None  # no --hires: none
    with pytest.raises(SystemExit) as exit_:
        main(["txt2img", "--hires", "--hires-upscaler", "Latent (bilinear)"])
    assert exit_.value.code == 2 and "unknown hires upscaler 'Latent (bilinear)'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["img2img", *IMAGE_ARGS, "--hires"])  # txt2img's alone


def test_controlnet_units_reach_the_request(tmp_path):
    from imagegen.v1 import imagegen_pb2 as pb
    from services.client.requests import make_request

    image = tmp_path / "edges.png"
    image.write_bytes(b"\x89PNG edges")
    args = build_parser().parse_args(["txt2img", "--control", f"model=edges,image={image},preprocessor=canny,"
                                      "threshold_a=50,weight=0.8,control_mode=prompt,pixel_perfect=true"])
    (unit,) = make_request("txt2img", "a fox", control=args.control).params.control
    assert (unit.model, unit.image.data, unit.preprocessor, unit.threshold_a) == ("edges", b"\x89PNG edges", "canny", 50)
    assert (round(unit.weight, 3), unit.control_mode, unit.pixel_perfect) == (0.8, pb.CONTROL_MODE_PROMPT, True)


@pytest.mark.parametrize("value, says", [
    ("image=x.png", "names no model"), ("model=a,weight=lots", "weight='lots' is not a number"),
    ("model=a,colour=red", "not KEY=VALUE"), ("model=a,control_mode=loud", "unknown control mode"),
])
def test_a_bad_controlnet_unit_is_a_one_line_usage_error(value, says, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["txt2img", "--control", value])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "--control" in err and says in err
