"""Upscalers: the ESRGAN path is spandrel's own descriptor call, tiled as A1111 tiles, passes of the model's
factor then a Lanczos resize to exactly the target; A1111's resizers; files found by name, loaded without
running pickled code."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from services.core.imaging import tiles
from services.core.models import upscalers
from services.core.models.spandrel_import import load_spandrel
from tests.upscaler_files import tiny_esrgan, upscaler_folder


def noise(width: int, height: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


def spandrel_call(img: Image.Image) -> Image.Image:
    """spandrel's own way: its loader on the file, its descriptor on a (1, 3, H, W) RGB tensor in 0..1."""
    descriptor = load_spandrel().ModelLoader("cpu").load_from_file(str(tiny_esrgan())).eval()
    tensor = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255).permute(2, 0, 1)[None]
    with torch.no_grad():
        out = descriptor(tensor)[0].permute(1, 2, 0).numpy()
    return Image.fromarray((out * 255).round().astype(np.uint8))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return upscaler_folder(tmp_path_factory.mktemp("upscalers"))


@pytest.fixture(scope="module")
def found(folder):
    return upscalers.Upscalers(folder)


def test_the_model_path_equals_spandrel_s_own_descriptor_call(found):
    img = noise(40, 32)
    out = found.upscale(img, "esrgan", (80, 64))  # one tile, one pass of the model's own 2x: nothing resized
    assert np.array_equal(np.asarray(out), np.asarray(spandrel_call(img)))
    # The .pth of the same weights gives the same image.
    assert np.array_equal(np.asarray(found.upscale(img, "esrgan-pth", (80, 64))), np.asarray(out))


def test_tiled_equals_untiled_but_within_the_blend_seams(folder):
    img = noise(256, 96, seed=1)
    untiled = np.asarray(upscalers.Upscalers(folder, tile=1000).upscale(img, "esrgan", (512, 192))).astype(int)
    tiled = np.asarray(upscalers.Upscalers(folder, tile=96).upscale(img, "esrgan", (512, 192))).astype(int)
    grid = tiles.Grid.of(256, 96, 96, tiles.OVERLAP)
    assert len(grid.xs) == 3
    seams = np.zeros(512, bool)
    for x in grid.xs[1:]:
        seams[2 * x:2 * (x + tiles.OVERLAP)] = True  # where a tile is blended over its left neighbour
    diff = np.abs(tiled - untiled).max(axis=(0, 2))
    assert (diff[~seams] == 0).all()
    assert diff[seams].max() <= 2


def test_passes_of_the_model_s_factor_then_exactly_the_target_with_lanczos(found):
    img = noise(24, 20)
    once = found.upscale(img, "esrgan", (48, 40))
    twice = found.upscale(once, "esrgan", (96, 80))
    thrice = found.upscale(twice, "esrgan", (192, 160))
    # 3x: two passes (48x40 is short of 72x60), then Lanczos down to exactly 72x60.
    out = found.upscale(img, "esrgan", (72, 60))
    assert out.size == (72, 60)
    assert np.array_equal(np.asarray(out), np.asarray(twice.resize((72, 60), Image.LANCZOS)))
    # Odd sizes too, not only multiples of the factor or of 8.
    assert found.upscale(img, "esrgan", (61, 37)).size == (61, 37)
    # 8x: three passes reach it exactly; A1111 stops at three, so 16x is three passes and a resize.
    assert np.array_equal(np.asarray(found.upscale(img, "esrgan", (192, 160))), np.asarray(thrice))
    big = found.upscale(img, "esrgan", (384, 320))
    assert np.array_equal(np.asarray(big), np.asarray(thrice.resize((384, 320), Image.LANCZOS)))


def test_a1111_s_resizers(found):
    img = noise(30, 20)
    assert np.array_equal(np.asarray(found.upscale(img, "Lanczos", (75, 50))),
                          np.asarray(img.resize((75, 50), Image.LANCZOS)))
    assert np.array_equal(np.asarray(found.upscale(img, "Nearest", (60, 40))),
                          np.asarray(img.resize((60, 40), Image.NEAREST)))
    # "None" does nothing itself: A1111's last step, a Lanczos resize, makes the size.
    assert np.array_equal(np.asarray(found.upscale(img, "None", (60, 40))),
                          np.asarray(img.resize((60, 40), Image.LANCZOS)))
    assert np.array_equal(np.asarray(found.upscale(img, "None", (30, 20))), np.asarray(img))


def test_a_tensor_batch_is_upscaled_image_by_image(found):
    imgs = [noise(24, 16, seed) for seed in (1, 2)]
    batch = torch.stack([torch.from_numpy(np.asarray(i, dtype=np.float32) / 255).permute(2, 0, 1) for i in imgs])
    out = found.upscale_tensor(batch, "esrgan", (48, 32))
    assert out.shape == (2, 3, 32, 48)
    for i, img in enumerate(imgs):
        expected = np.asarray(found.upscale(img, "esrgan", (48, 32)), dtype=np.float32) / 255
        assert np.allclose(out[i].permute(1, 2, 0).numpy(), expected)


def test_files_are_found_by_name_the_resizers_first(found):
    assert found.names() == ["None", "Lanczos", "Nearest", "esrgan", "esrgan-pth", "evil", "not-a-model"]
    facts = {f.name: f for f in found.infos()}
    assert facts["esrgan"] == upscalers.Facts("esrgan", 2, "ESRGAN", "esrgan.safetensors")
    assert facts["esrgan-pth"].scale == 2 and facts["esrgan-pth"].file == "esrgan-pth.pth"
    assert facts["Lanczos"] == upscalers.Facts("Lanczos")
    assert "spandrel" in facts["not-a-model"].unusable
    assert upscalers.available(None) == {}


def test_a_pth_whose_unpickling_runs_code_is_refused_and_never_runs_it(folder, found):
    with pytest.raises(upscalers.UpscalerUnusable, match="only tensors are loaded"):
        upscalers.load_descriptor(folder / "evil.pth")
    assert "only tensors are loaded" in {f.name: f for f in found.infos()}["evil"].unusable
    assert not (folder / "ran").exists()
    # The file does run code under plain pickle: the refusal is what kept it from running.
    torch.load(folder / "evil.pth", weights_only=False)
    assert (folder / "ran").exists()
    (folder / "ran").unlink()


def test_the_cache_is_bounded(folder):
    bounded = upscalers.Upscalers(folder, capacity=1)
    first = bounded.model("esrgan")
    assert bounded.model("esrgan") is first  # kept
    bounded.model("esrgan-pth")
    assert bounded.model("esrgan") is not first  # evicted by the other, loaded again
