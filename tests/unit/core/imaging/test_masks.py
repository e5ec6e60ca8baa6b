import numpy as np
import pytest
from PIL import Image

from services.core.imaging import masks

LEFT_HALF = [255] * 4 + [0] * 4  # a row of the expected mask: repaint the left half


def row(gray: Image.Image) -> list[int]:
    return list(np.asarray(gray)[0])


def opaque_mask(mode="RGBA") -> Image.Image:
    """A black/white mask saved with an opaque alpha channel: white (left half) = repaint."""
    white = (255, 255) if mode == "LA" else (255, 255, 255, 255)
    black = (0, 255) if mode == "LA" else (0, 0, 0, 255)
    mask = Image.new(mode, (8, 8), black)
    mask.paste(white, (0, 0, 4, 8))
    return mask


def brush_layer(mode="RGBA") -> Image.Image:
    """A transparent canvas with strokes in a dark colour over the left half (colour means nothing)."""
    mask = Image.new(mode, (8, 8), (0, 0) if mode == "LA" else (0, 0, 0, 0))
    mask.paste((20, 255) if mode == "LA" else (20, 20, 20, 255), (0, 0, 4, 8))
    return mask


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_brush_layer_is_read_from_its_alpha(mode):
    assert row(masks.mask_to_gray(brush_layer(mode))) == LEFT_HALF


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_opaque_mask_is_read_by_luminance(mode):
    assert row(masks.mask_to_gray(opaque_mask(mode))) == LEFT_HALF


@pytest.mark.parametrize("alpha", [254, 128, 0])
def test_one_pixel_of_an_opaque_mask_does_not_flip_it_to_alpha(alpha):
    # Read from its alpha, this mask would repaint everything (alpha 255, or 254 at one pixel).
    big = opaque_mask().resize((64, 64), Image.NEAREST)
    big.putpixel((63, 63), (0, 0, 0, alpha))
    assert row(masks.mask_to_gray(big).resize((8, 8), Image.NEAREST)) == LEFT_HALF
    assert set(np.asarray(masks.mask_to_gray(big))[:, 40:].ravel()) == {0}


def test_nearly_opaque_mask_is_read_by_luminance():
    mask = opaque_mask()
    mask.putalpha(250)
    assert row(masks.mask_to_gray(mask)) == LEFT_HALF


def test_brush_layer_with_soft_edges_and_stray_opaque_pixels_is_still_alpha():
    layer = brush_layer().resize((64, 64), Image.NEAREST)
    layer.putpixel((40, 40), (255, 255, 255, 200))  # a stray soft dab: still a brush layer
    gray = masks.mask_to_gray(layer)
    assert gray.getpixel((0, 0)) == 255 and gray.getpixel((40, 40)) == 200 and gray.getpixel((63, 0)) == 0


def palette_mask(transparent: bool) -> Image.Image:
    mask = Image.new("P", (8, 8), 0)
    mask.putpalette([255, 255, 255, 0, 0, 0])  # index 0 white (the canvas), 1 a black brush
    mask.paste(1, (0, 0, 4, 8))
    if transparent:
        mask.info["transparency"] = 0
    return mask


def test_palette_mask_with_a_transparent_entry_is_a_brush_layer():
    assert row(masks.mask_to_gray(palette_mask(transparent=True))) == LEFT_HALF
    # The same palette mask without transparency is read by luminance: its white right half is repainted.
    assert row(masks.mask_to_gray(palette_mask(transparent=False))) == [0] * 4 + [255] * 4


def test_prepare_mask_resizes_fits_inverts_and_binarizes():
    mask = Image.new("L", (10, 10), 0)
    mask.paste(200, (0, 0, 5, 10))
    out = masks.prepare_mask(mask, (20, 20), (16, 16), "resize", invert=False)
    assert out.size == (16, 16) and set(out.getdata()) == {0, 255}
    assert out.getpixel((0, 0)) == 255 and out.getpixel((15, 0)) == 0
    inverted = masks.prepare_mask(mask, (20, 20), (16, 16), "resize", invert=True)
    assert inverted.getpixel((0, 0)) == 0


ORIGINAL, GENERATED = (10, 20, 30), (200, 100, 50)


@pytest.mark.parametrize("blur", [0, 1, 4, 64])
def test_blend_over_keeps_the_original_exactly_where_the_mask_is_black(blur):
    rng = np.random.default_rng(blur)
    original = Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    generated = Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    out = np.asarray(masks.blend_over(original, generated, mask, blur))
    keep = np.asarray(mask) == 0
    assert np.array_equal(out[keep], np.asarray(original)[keep])


@pytest.mark.parametrize("blur", [4, 64])
def test_blend_over_softens_the_seam_inside_the_mask(blur):
    original, generated = Image.new("RGB", (64, 64), ORIGINAL), Image.new("RGB", (64, 64), GENERATED)
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    out = masks.blend_over(original, generated, mask, blur)
    assert out.getpixel((15, 32)) == ORIGINAL  # just outside the edge: the original exactly
    inside_edge = out.getpixel((16, 32))  # just inside: a mix of the two
    assert inside_edge not in (ORIGINAL, GENERATED)
    assert all(min(a, b) <= c <= max(a, b) for a, b, c in zip(ORIGINAL, GENERATED, inside_edge))
    if blur == 4:
        assert out.getpixel((32, 32)) == GENERATED  # the middle, far from the seam: generated


def test_blend_over_without_blur_is_a_hard_cut():
    original, generated = Image.new("RGB", (16, 16), ORIGINAL), Image.new("RGB", (16, 16), GENERATED)
    mask = Image.new("L", (16, 16), 0)
    mask.paste(255, (0, 0, 8, 16))
    out = masks.blend_over(original, generated, mask, blur=0)
    assert all(out.getpixel((x, y)) == ORIGINAL for x in range(8, 16) for y in range(16))
    assert all(out.getpixel((x, y)) == GENERATED for x in range(8) for y in range(16))


def test_only_masked_region_is_the_masks_box_padded_and_grown_to_the_output_ratio():
    mask = Image.new("L", (200, 100), 0)
    mask.paste(255, (100, 40, 120, 60))  # 20 x 20
    x1, y1, x2, y2 = masks.only_masked_region(mask, 128, 64, padding=10)  # 40 x 40 padded, then 2:1
    assert (x1, y1) <= (90, 30) and (x2, y2) >= (130, 70)
    assert (x2 - x1, y2 - y1) == (80, 40)
    # It never leaves the image: cut at its edges (the cut-out is then fitted by resize and fill).
    assert masks.only_masked_region(mask, 64, 64, padding=80) == (20, 0, 200, 100)


def test_paste_back_puts_the_cut_out_where_it_was_and_keeps_the_rest():
    base = Image.new("RGB", (100, 80), (10, 20, 30))
    mask = Image.new("L", (100, 80), 0)
    mask.paste(255, (40, 20, 60, 40))
    overlay = masks.Overlay(base, mask, (30, 10, 70, 50))
    out = np.asarray(masks.paste_back(overlay, Image.new("RGB", (64, 64), (200, 0, 0)), blur=0))
    assert (out[20:40, 40:60] == (200, 0, 0)).all()
    keep = np.asarray(mask) == 0
    assert (out[keep] == (10, 20, 30)).all()
