"""An image cut into overlapping tiles and put back together, as AUTOMATIC1111 tiles its upscalers.

A1111 (modules/images.py split_grid / combine_grid, used by modules/upscaler_utils.py) spreads tiles of a
fixed size evenly over the image, the first at 0 and the last flush with the far edge, so neighbours
overlap by at least `overlap` pixels. After each tile is processed (made `scale` times bigger), a row's
tiles are laid left to right, each one's first overlap*scale columns blended linearly over its left
neighbour and the rest pasted over it; the rows are laid top to bottom the same way. A side shorter than
the tile is one tile of that side's length here (A1111 would cut a tile reaching outside the image and
fill the outside black, which the model then sees at the border).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
from PIL import Image

TILE = 192  # A1111's ESRGAN_tile default
OVERLAP = 8  # A1111's ESRGAN_tile_overlap default


def starts(length: int, tile: int, overlap: int) -> list[int]:
    """Where the tiles along one side of `length` pixels start (each `tile` long, tile <= length)."""
    count = math.ceil((length - overlap) / (tile - overlap)) if tile > overlap else 1
    if count <= 1:
        return [0]
    step = (length - tile) / (count - 1)
    return [min(int(i * step), length - tile) for i in range(count)]


@dataclass(frozen=True)
class Grid:
    """Where the tiles of an image go: their sizes and start positions along each side."""

    width: int
    height: int
    tile_w: int
    tile_h: int
    xs: tuple[int, ...]
    ys: tuple[int, ...]

    @classmethod
    def of(cls, width: int, height: int, tile: int = TILE, overlap: int = OVERLAP) -> "Grid":
        tile_w, tile_h = min(tile, width), min(tile, height)
        return cls(width, height, tile_w, tile_h, tuple(starts(width, tile_w, overlap)),
                   tuple(starts(height, tile_h, overlap)))

    @property
    def count(self) -> int:
        return len(self.xs) * len(self.ys)


def _ramp(length: int, across: int, horizontal: bool) -> Image.Image:
    """A1111's blend mask: 0 rising to just under 255 over `length` pixels, the same `across` the other way."""
    values = (np.arange(length, dtype=np.float32) * 255 / length).astype(np.uint8)
    grid = np.repeat(values[None, :], across, axis=0) if horizontal else np.repeat(values[:, None], across, axis=1)
    return Image.fromarray(grid, "L")


def _lay(pieces: list[tuple[int, Image.Image]], size: tuple[int, int], overlap: int,
         horizontal: bool) -> Image.Image:
    """Pieces laid along one axis at their starts, each blended over the one before for `overlap` pixels."""
    out = Image.new("RGB", size)
    for start, piece in pieces:
        if start == 0 or overlap <= 0:
            out.paste(piece, (start, 0) if horizontal else (0, start))
            continue
        if horizontal:
            mask = _ramp(overlap, piece.height, True)
            out.paste(piece.crop((0, 0, overlap, piece.height)), (start, 0), mask=mask)
            out.paste(piece.crop((overlap, 0, piece.width, piece.height)), (start + overlap, 0))
        else:
            mask = _ramp(overlap, piece.width, False)
            out.paste(piece.crop((0, 0, piece.width, overlap)), (0, start), mask=mask)
            out.paste(piece.crop((0, overlap, piece.width, piece.height)), (0, start + overlap))
    return out


def tiled(img: Image.Image, run: Callable[[Image.Image], Image.Image], tile: int = TILE, overlap: int = OVERLAP,
          between: Callable[[], None] | None = None) -> Image.Image:
    """`run` (an RGB image to one `scale` times bigger, the same factor for every tile) over `img`'s tiles,
    put back together. `between` is called before each tile (a cancelled request raises there)."""
    grid = Grid.of(img.width, img.height, tile, overlap)
    rows, scale = [], None
    for y in grid.ys:
        row = []
        for x in grid.xs:
            if between is not None:
                between()
            out = run(img.crop((x, y, x + grid.tile_w, y + grid.tile_h)))
            scale = scale or out.width // grid.tile_w
            row.append((x * scale, out))
        rows.append((y * scale, _lay(row, (grid.width * scale, grid.tile_h * scale), overlap * scale, True)))
    return _lay(rows, (grid.width * scale, grid.height * scale), overlap * scale, False)
