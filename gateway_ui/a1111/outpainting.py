"""The "Poor man's outpainting" script of the A1111 API (img2img only), as the inpaint service's outpaint.

script_args, positionally (A1111's scripts/poor_mans_outpainting.py; a shorter list takes its UI defaults):
pixels (8..256, a multiple of 8), mask_blur (0..64), inpainting_fill (an index: fill, original, latent noise,
latent nothing), direction (a list of left, right, up, down).

Where this differs from A1111: the extended canvas is painted in one pass at its own size (A1111 paints
width x height tiles of it, and rounds the canvas up to a multiple of 64, here of 8), so the request's
width and height are not used; the input image's pixels are kept exactly.
"""

from __future__ import annotations

from imagegen.v1.contract import MAX_MASK_BLUR, OUTPAINT_SIDES

from .errors import field_error

NAME = "Poor man's outpainting"
DEFAULTS = (128, 4, 0, list(OUTPAINT_SIDES))  # its UI's: 128 px, blur 4, fill, every direction
MOST_PIXELS = 256  # its slider's


def is_outpainting(script_name: str | None) -> bool:
    return bool(script_name) and script_name.strip().lower() == NAME.lower()


def _whole(value, where: str, least: int, most: int) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not least <= value <= most:
        raise field_error(where, f"a whole number {least}..{most}")
    return value


def keywords(script_args: list, contents: dict) -> dict:
    """make_request's keywords for the script's arguments (`contents`: inpainting_fill index -> masked content)."""
    args = [*script_args[:len(DEFAULTS)], *DEFAULTS[len(script_args):]]
    pixels = _whole(args[0], "script_args.0", 8, MOST_PIXELS)
    if pixels % 8:
        raise field_error("script_args.0", "pixels to expand: a multiple of 8")
    blur = _whole(args[1], "script_args.1", 0, MAX_MASK_BLUR // 2)
    if args[2] not in contents:
        raise field_error("script_args.2", "masked content: 0 (fill), 1 (original), 2 (latent noise) or "
                                           "3 (latent nothing)")
    direction = args[3]
    if not isinstance(direction, list) or not direction or not set(direction) <= set(OUTPAINT_SIDES):
        raise field_error("script_args.3", f"outpainting direction: a list of {', '.join(OUTPAINT_SIDES)}")
    return {"outpaint": {side: pixels if side in direction else 0 for side in OUTPAINT_SIDES},
            # The script doubles its blur for the inpainting, as A1111's does.
            "mask_blur": blur * 2, "masked_content": contents[args[2]], "only_masked": False,
            "width": 0, "height": 0, "fit": None}
