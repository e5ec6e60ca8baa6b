"""The grid image: the cells' own pixels, A1111's label margins, the z axis as grids side by side."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from gateway_ui.xyz.grid import annotate, png_with_infotext, xyz_grids


def cell(value: int, size=(64, 64)) -> Image.Image:
    return Image.new("RGB", size, (value, 255 - value, value // 2))


def test_the_grid_is_the_cells_with_a1111s_margins():
    cells = [cell(v) for v in (10, 60, 110, 160)]
    whole, subs = xyz_grids(cells, (2, 2, 1), (["Steps: 2", "Steps: 4"], ["Seed: 1", "Seed: 2"], [""]))
    assert len(subs) == 1 and whole.size == subs[0].size
    pad_left = 64 * 3 // 4  # A1111: three quarters of a cell for the row titles
    pad_top = whole.height - 2 * 64
    assert whole.width == pad_left + 2 * 64 and pad_top > 0
    pixels = np.asarray(whole)
    for i, picture in enumerate(cells):
        x, y = pad_left + (i % 2) * 64, pad_top + (i // 2) * 64
        assert np.array_equal(pixels[y:y + 64, x:x + 64], np.asarray(picture))
    assert (pixels[:pad_top, pad_left:] < 128).any()  # the column titles are drawn (black on white)
    assert (pixels[pad_top:, :pad_left] < 128).any()


def test_no_legend_and_margins():
    cells = [cell(v) for v in (10, 60, 110, 160)]
    whole, _ = xyz_grids(cells, (2, 2, 1), (["a", "b"], ["c", "d"], [""]), draw_legend=False)
    assert whole.size == (128, 128)
    spaced = annotate(Image.new("RGB", (128, 128)), 64, 64, ["", ""], ["", ""], margin=10)
    assert spaced.size == (138, 138)  # no text, no band: only the margins between cells


def test_a_z_axis_puts_one_grid_per_value_side_by_side():
    cells = [cell(v) for v in range(0, 240, 30)]
    whole, subs = xyz_grids(cells, (2, 2, 2), (["x1", "x2"], ["y1", "y2"], ["CFG Scale: 3", "CFG Scale: 5"]))
    assert len(subs) == 2 and subs[0].size == subs[1].size
    assert whole.width == 2 * subs[0].width and whole.height > subs[0].height  # the z titles above
    top = whole.height - subs[0].height
    assert np.array_equal(np.asarray(whole)[top:, subs[0].width:], np.asarray(subs[1]))


def test_the_png_carries_its_infotext():
    data = png_with_infotext(cell(5), "a fox\nSteps: 4, Script: X/Y/Z plot")
    assert Image.open(io.BytesIO(data)).info["parameters"] == "a fox\nSteps: 4, Script: X/Y/Z plot"
