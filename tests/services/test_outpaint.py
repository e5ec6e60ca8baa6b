"""Outpainting over gRPC: the canvas extended, the new area painted, every input pixel kept exactly.
Its reference is the chain a diffusers user writes: the extended canvas and its mask into diffusers'
inpainting pipeline, the input pasted back."""

from __future__ import annotations

import io

import grpc
import numpy as np
import pytest
import torch
from PIL import Image

from imagegen.v1 import imagegen_pb2 as pb
from services.core.models.presets import ensure_tiny
from services.inpaint import outpaint
from tests.conftest import CACHE_DIR, png, request_for

MAX_DIFF = 3  # of 255, per channel
FIELDS = {"prompt": "a red fox", "steps": 4, "seed": 7, "width": 0, "height": 0, "mask": None}


def pixels(data) -> np.ndarray:
    image = data if isinstance(data, Image.Image) else Image.open(io.BytesIO(data))
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def outpainted(services, source: bytes, **kwargs):
    return services["inpaint"].client.generate(request_for("inpaint", image=source, **{**FIELDS, **kwargs})).images[0]


@pytest.mark.parametrize("fill", ["edge", "noise", "mean"])
def test_every_input_pixel_stays_and_the_new_area_is_painted(services, fill):
    source = png((64, 72), seed=2)
    sides = {"left": 16, "right": 0, "up": 8, "down": 24, "fill": fill}
    got = outpainted(services, source, outpaint=sides, mask_blur=4)
    assert (got.width, got.height) == (80, 104)
    out, src = pixels(got.data), pixels(source)
    assert np.array_equal(out[8:80, 16:80], src)  # exactly, blur or not
    new = np.ones(out.shape[:2], bool)
    new[8:80, 16:80] = False
    canvas, _ = outpaint.extend(Image.open(io.BytesIO(source)), outpaint.Sides(16, 0, 8, 24, fill), 7)
    assert np.abs(out[new] - pixels(canvas)[new]).mean() > 5  # painted, not left as the fill
    assert f"Outpaint: left 16 right 0 up 8 down 24 fill {fill}" in got.infotext


def test_it_is_diffusers_inpainting_on_the_extended_canvas(services):
    from diffusers import AutoPipelineForInpainting

    pipe = AutoPipelineForInpainting.from_pretrained(ensure_tiny(CACHE_DIR, True))
    pipe.set_progress_bar_config(disable=True)
    source = png((64, 64), seed=3)
    got = outpainted(services, source, outpaint={"right": 32}, mask_blur=0)
    canvas, mask = outpaint.extend(Image.open(io.BytesIO(source)), outpaint.Sides(0, 32, 0, 0, "edge"), 7)
    generated = pipe("a red fox", image=canvas, mask_image=mask, width=96, height=64, num_inference_steps=4,
                     strength=1.0, generator=torch.Generator("cpu").manual_seed(7)).images[0]
    expected = Image.composite(generated, canvas, mask)
    assert np.abs(pixels(got.data) - pixels(expected)).max() <= MAX_DIFF


def test_a_canvas_off_the_grid_of_8_grows_on_the_extended_side():
    assert outpaint._round_up(60, 0, 16) == (0, 20)  # 60 + 16 -> 80: the extra on the right
    assert outpaint._round_up(60, 16, 0) == (20, 0)  # only the left is extended: the extra goes there
    assert outpaint._round_up(64, 8, 8) == (8, 8)
    canvas, mask = outpaint.extend(Image.new("RGB", (60, 64), (10, 20, 30)), outpaint.Sides(0, 20, 0, 0, "mean"), 0)
    assert canvas.size == (80, 64) and np.asarray(canvas)[0, 79].tolist() == [10, 20, 30]
    assert np.asarray(mask)[:, :60].max() == 0 and np.asarray(mask)[:, 60:].min() == 255


def test_noise_fill_follows_the_seed():
    image, sides = Image.new("RGB", (64, 64)), outpaint.Sides(0, 8, 0, 0, "noise")
    one, again, other = (np.asarray(outpaint.extend(image, sides, seed)[0]) for seed in (1, 1, 2))
    assert np.array_equal(one, again) and not np.array_equal(one, other)


@pytest.mark.parametrize("overrides, field", [
    ({"outpaint": {"left": 12}}, "outpaint.left"),
    ({"outpaint": {"left": 16}, "mask": png((64, 64), mode="L")}, "mask_image.data"),
    ({"outpaint": {"up": 8}, "only_masked": True}, "only_masked"),
    ({"outpaint": {"down": 8}, "invert_mask": True}, "invert_mask"),
    ({"outpaint": {"down": 8}, "width": 64, "height": 64}, "params.height"),
    ({"outpaint": {"right": 4096}}, "init_image.data"),
])
def test_bad_outpainting_names_the_field_and_the_service_keeps_serving(services, overrides, field):
    with pytest.raises(grpc.RpcError) as raised:
        outpainted(services, png(), **overrides)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert raised.value.details().startswith(field), raised.value.details()
    assert outpainted(services, png(), outpaint={"left": 8}).width == 72


def test_replay_outpaints_the_input_again_to_the_same_pixels(services, capsys, tmp_path):
    from services.client.cli import main

    source = tmp_path / "input.png"
    source.write_bytes(png((64, 64), seed=4))
    made = outpainted(services, source.read_bytes(), outpaint={"up": 16, "fill": "noise"}, mask_blur=2,
                      seed=2**33 + 1)
    original = tmp_path / "outpainted.png"
    original.write_bytes(made.data)
    code = main(["replay", str(original), "--addr", services["inpaint"].address, "--image", str(source),
                 "--out", str(tmp_path / "again"), "--quiet"])
    _out, err = capsys.readouterr()
    assert code == 0 and err == "", err
    assert np.array_equal(pixels((tmp_path / "again.png").read_bytes()), pixels(made.data))


def test_infotext_outpaint_values_that_are_not_sides_are_refused():
    from services.client.infotext import parse_outpaint, parse_parameters

    assert parse_outpaint("left 16 right 0 up 0 down 8 fill mean") == {"left": 16, "right": 0, "up": 0, "down": 8,
                                                                       "fill": "mean"}
    for bad in ("left 12 right 0 up 0 down 0 fill edge", "left 8 right 0 up 0 down 0 fill blur", "left 8"):
        assert parse_outpaint(bad) is None
    params = parse_parameters(f"x\nSteps: 4, Seed: 1, Size: 64x64, Mask blur: 4, Outpaint: left 8")
    assert params.outpaint is None and "Outpaint" in params.refused and params.mode == "inpaint"
