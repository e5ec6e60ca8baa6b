"""A1111's tiling: tiles spread evenly, the last flush with the edge; put back together, a model whose every
output pixel depends on its own input pixel gives exactly the untiled image."""

from __future__ import annotations

import numpy as np
from PIL import Image

from services.core.imaging import tiles


def noise(width: int, height: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


def test_tiles_spread_evenly_from_the_first_edge_to_the_last():
    # A1111's split_grid: ceil((length - overlap) / (tile - overlap)) tiles, starts int(i * step).
    assert tiles.starts(500, 192, 8) == [0, 154, 308]
    assert tiles.starts(192, 192, 8) == [0]
    assert tiles.starts(193, 192, 8) == [0, 1]
    grid = tiles.Grid.of(100, 500)
    assert (grid.tile_w, grid.tile_h, grid.xs, grid.ys) == (100, 192, (0,), (0, 154, 308))
    for length in range(1, 700, 37):
        found = tiles.starts(length, min(192, length), 8)
        tile = min(192, length)
        assert found[0] == 0 and found[-1] == length - tile
        assert all(b - a <= tile - 8 for a, b in zip(found, found[1:]))  # neighbours overlap by 8 at least


def test_a_pointwise_model_tiled_equals_it_untiled():
    img = noise(300, 210)

    def twice(tile):  # each output pixel from one input pixel: tiling cannot change it
        return tile.resize((tile.width * 2, tile.height * 2), Image.NEAREST)

    calls = []
    out = tiles.tiled(img, twice, tile=64, overlap=8, between=lambda: calls.append(1))
    assert out.size == (600, 420)
    assert np.array_equal(np.asarray(out), np.asarray(twice(img)))
    assert len(calls) == tiles.Grid.of(300, 210, 64, 8).count == 6 * 4


def test_the_seams_blend_linearly_from_the_left_tile_to_the_right_one():
    img = Image.new("RGB", (120, 40))
    seen = iter([(0, 0, 0), (250, 250, 250)])

    def paint(tile):  # the first tile black, the second white: the seam shows the blend
        return Image.new("RGB", tile.size, next(seen))

    out = np.asarray(tiles.tiled(img, paint, tile=64, overlap=8))[0, :, 0]
    grid = tiles.Grid.of(120, 40, 64, 8)
    start = grid.xs[1]
    assert (out[:start] == 0).all() and (out[start + 8:] == 250).all()
    ramp = out[start:start + 8]
    assert ramp[0] == 0 and all(a < b for a, b in zip(ramp, ramp[1:])) and ramp[-1] < 250
