"""Outpainting: the canvas extended by some sides, the new area filled and masked for the inpainting.

The mask is exactly the new area, so the inpainting's own blend (masks.blend_over) keeps every pixel of
the input as it was; mask_blur feathers the seam on the new side only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from imagegen.v1 import imagegen_pb2 as pb
from imagegen.v1.contract import OUTPAINT_FILL_BY_ENUM, OUTPAINT_SIDES

from services.core.errors import InvalidArgument
from services.core.imaging import images


@dataclass(frozen=True)
class Sides:
    left: int
    right: int
    up: int
    down: int
    fill: str

    def describe(self) -> str:
        """Its infotext value (no commas: infotext separates its entries with them)."""
        return f"left {self.left} right {self.right} up {self.up} down {self.down} fill {self.fill}"


def requested(request: pb.InpaintRequest) -> bool:
    out = request.outpaint
    return any(getattr(out, side) for side in OUTPAINT_SIDES)


def check(request: pb.InpaintRequest, source_size: tuple[int, int]) -> Sides:
    """The sides, each a multiple of 8, the canvas rounded up to a multiple of 8 on the extended sides;
    the fields outpainting makes for itself refused when given."""
    out = request.outpaint
    for side in OUTPAINT_SIDES:
        if getattr(out, side) % 8:
            raise InvalidArgument(f"outpaint.{side}", f"{getattr(out, side)} is not a multiple of 8")
    if out.fill not in OUTPAINT_FILL_BY_ENUM:
        raise InvalidArgument("outpaint.fill", f"unknown fill {out.fill}")
    if request.mask_image.data:
        raise InvalidArgument("mask_image.data", "outpainting makes its own mask (the new area); send none")
    if request.only_masked:
        raise InvalidArgument("only_masked", "outpainting paints the new area of the whole canvas; leave it off")
    if request.invert_mask:
        raise InvalidArgument("invert_mask", "outpainting's mask is the new area; leave it off")
    left, right = _round_up(source_size[0], out.left, out.right)
    up, down = _round_up(source_size[1], out.up, out.down)
    return Sides(left, right, up, down, OUTPAINT_FILL_BY_ENUM[out.fill])


def _round_up(length: int, before: int, after: int) -> tuple[int, int]:
    """The sides grown so that length + before + after is a multiple of 8: the extra on the far side
    when it is extended (or nothing is), else on the near one, so an unextended side keeps its edge."""
    extra = -(length + before + after) % 8
    if after or not before:
        return before, after + extra
    return before + extra, after


def extend(image: Image.Image, sides: Sides, seed: int) -> tuple[Image.Image, Image.Image]:
    """The canvas (RGB, the input at (left, up), the new area filled) and its mask (white = the new area)."""
    picture = np.asarray(images.to_rgb(image))
    pad = ((sides.up, sides.down), (sides.left, sides.right), (0, 0))
    if sides.fill == "edge":
        canvas = np.pad(picture, pad, mode="edge")
    else:
        height, width = picture.shape[0] + sides.up + sides.down, picture.shape[1] + sides.left + sides.right
        if sides.fill == "noise":
            canvas = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
        else:
            canvas = np.empty((height, width, 3), dtype=np.uint8)
            canvas[:] = np.round(picture.reshape(-1, 3).mean(axis=0)).astype(np.uint8)
        canvas[sides.up:sides.up + picture.shape[0], sides.left:sides.left + picture.shape[1]] = picture
    mask = np.full(canvas.shape[:2], 255, dtype=np.uint8)
    mask[sides.up:sides.up + picture.shape[0], sides.left:sides.left + picture.shape[1]] = 0
    return Image.fromarray(canvas), Image.fromarray(mask, "L")
