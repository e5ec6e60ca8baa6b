"""`python -m services.client replay`: an image made again from its infotext gives the same pixels."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from services.client import make_request
from services.client.cli import main
from tests.conftest import box_mask, png, request_for


def pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def replay(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["replay", *map(str, args), "--quiet"])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def inputs(tmp_path):
    image, mask = tmp_path / "input.png", tmp_path / "mask.png"
    image.write_bytes(png((96, 64), seed=3))
    mask.write_bytes(box_mask((96, 64), (8, 8, 56, 48)))
    return {"--image": image, "--mask": mask}


CASES = [
    ("txt2img", "euler_a", "png"), ("txt2img", "dpmpp_2m_karras", "png"), ("txt2img", "", "png"),
    ("txt2img", "ddim", "jpeg"), ("img2img", "euler", "png"), ("img2img", "unipc", "webp"),
    ("inpaint", "dpmpp_2m", "png"), ("inpaint", "heun", "png"),
]


@pytest.mark.parametrize("mode,scheduler,fmt", CASES)
def test_replay_gives_the_same_pixels(services, capsys, tmp_path, inputs, mode, scheduler, fmt):
    service = services[mode]
    contract = service.runtime.mode.contract
    extra = {}
    if contract.takes_image:
        extra = {"image": inputs["--image"], "strength": 0.7}
    if contract.takes_mask:
        extra.update(mask=inputs["--mask"], mask_blur=3)
    request = request_for(mode, prompt="a red fox, at dawn: oil", negative_prompt="blurry", seed=2**40 + 5,
                          guidance_scale=6.5, scheduler=scheduler, output_format=fmt, width=0, height=0,
                          clip_skip=2 if scheduler in ("euler_a", "unipc", "heun") else None, **extra)
    original = service.client.generate(request).images[0]
    source = tmp_path / f"original.{fmt}"
    source.write_bytes(original.data)
    args = [source, "--addr", service.address, "--out", tmp_path / "again"]
    for flag in ("--image", "--mask")[: contract.takes_image + contract.takes_mask]:
        args += [flag, inputs[flag]]
    code, out, err = replay(capsys, *args)
    assert code == 0, err
    assert err == ""  # same model: no warning
    written = tmp_path / f"again.{'jpg' if fmt == 'jpeg' else fmt}"
    assert str(written) in out
    again = written.read_bytes()
    assert np.array_equal(pixels(again), pixels(original.data))
    from services.client.infotext import read_infotext

    assert read_infotext(again) == original.infotext


def a1111_png(path, text: str) -> None:
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", text)
    Image.new("RGB", (64, 64), (10, 20, 30)).save(path, pnginfo=info)


def test_replays_infotext_written_the_way_automatic1111_writes_it(services, capsys, tmp_path):
    text = ("a castle on a hill\nNegative prompt: lowres, bad anatomy\n"
            "Steps: 5, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1234567890, Size: 64x64, "
            "Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Lora hashes: \"add_detail: 7c6bad76eb54\", "
            "Version: v1.10.1")
    a1111_png(tmp_path / "a1111.png", text)
    code, _out, err = replay(capsys, tmp_path / "a1111.png", "--addr", services["txt2img"].address,
                             "--out", tmp_path / "again.png")
    assert code == 0, err
    # A different model and LoRAs are warnings on stderr, not errors.
    assert "warning:" in err and "'v1-5-pruned-emaonly'" in err and "'tiny'" in err
    assert "add_detail" in err
    expected = services["txt2img"].client.generate(make_request(
        "txt2img", "a castle on a hill", negative_prompt="lowres, bad anatomy", steps=5, guidance_scale=7,
        seed=1234567890, width=64, height=64, scheduler="dpmpp_2m_karras")).images[0]
    assert np.array_equal(pixels((tmp_path / "again.png").read_bytes()), pixels(expected.data))


def test_replays_automatic1111_img2img_with_the_old_sampler_spelling(services, capsys, tmp_path, inputs):
    text = ("a castle\nSteps: 6, Sampler: DPM++ 2M Karras, CFG scale: 7.5, Seed: 99, Size: 96x64, "
            "Model hash: abc, Model: tiny, Denoising strength: 0.5")
    a1111_png(tmp_path / "a1111.png", text)
    code, _out, err = replay(capsys, tmp_path / "a1111.png", "--image", inputs["--image"],
                             "--addr", services["img2img"].address, "--out", tmp_path / "again.png")
    assert code == 0 and err == "", err
    expected = services["img2img"].client.generate(make_request(
        "img2img", "a castle", steps=6, guidance_scale=7.5, seed=99, width=96, height=64, strength=0.5,
        scheduler="dpmpp_2m_karras", image=inputs["--image"])).images[0]
    assert np.array_equal(pixels((tmp_path / "again.png").read_bytes()), pixels(expected.data))


def test_a_file_without_parameters_is_a_one_line_error(capsys, tmp_path):
    (tmp_path / "plain.png").write_bytes(png())
    code, out, err = replay(capsys, tmp_path / "plain.png", "--out", tmp_path / "x.png")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("error: ") and "no generation parameters" in err
    assert not (tmp_path / "x.png").exists()


def test_image_modes_need_their_inputs_and_unknown_samplers_are_named(services, capsys, tmp_path):
    a1111_png(tmp_path / "inpaint.png", "x\nSteps: 4, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 64x64, "
                                        "Denoising strength: 1, Mask blur: 4")
    code, _out, err = replay(capsys, tmp_path / "inpaint.png", "--addr", services["inpaint"].address,
                             "--out", tmp_path / "x.png")
    assert code == 2 and "made by inpaint" in err and "--image" in err
    a1111_png(tmp_path / "odd.png", "x\nSteps: 4, Sampler: DPM++ 2S a, Schedule type: Karras, CFG scale: 7, Seed: 1, "
                                    "Size: 64x64")
    code, _out, err = replay(capsys, tmp_path / "odd.png", "--addr", services["txt2img"].address,
                             "--out", tmp_path / "x.png")
    assert code == 2 and err.count("\n") == 1 and "unknown sampler 'DPM++ 2S a, Schedule type: Karras'" in err
