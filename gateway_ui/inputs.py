"""Images handed to a tab's image input (uploaded, or sent from another tab), checked from their header.

PIL's `Image.open` reads the header only; nothing here decodes pixels. A small file may claim a huge
size (a 531 KB PNG of 13000x13000 decodes to 500 MB), so the gateway passes files on as their own
bytes and compares the size they claim with the service's `max_input_pixels` first; the services
decode them, with their own limits.
"""

from __future__ import annotations

import warnings

from PIL import Image

READABLE = "PNG, JPEG, WEBP, BMP or GIF"


class _TooLarge(Exception):
    """PIL refused to even describe it: more pixels than its decompression-bomb limit."""


def image_size(path) -> tuple[int, int] | None:
    """(width, height) from the file's header; None when it is not an image PIL can read. Raises
    _TooLarge past PIL's decompression-bomb limit (twice Image.MAX_IMAGE_PIXELS)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                return image.size
    except Image.DecompressionBombError:
        raise _TooLarge from None
    except (OSError, ValueError, SyntaxError):  # UnidentifiedImageError is an OSError
        return None


def problem(path, what: str, max_pixels: int = 0) -> str | None:
    """What is wrong with the image file at `path` for an input named `what` ("Img2Img: the input
    image"), in words for the browser; None when it may go on. max_pixels: the service's
    max_input_pixels (0: not checked here)."""
    try:
        size = image_size(path)
    except _TooLarge:
        return f"{what} has too many pixels (over {2 * Image.MAX_IMAGE_PIXELS:,}); use a smaller image."
    if size is None:
        return f"{what} is not a readable image ({READABLE})."
    width, height = size
    if max_pixels and width * height > max_pixels:
        return (f"{what} is {width}x{height} ({width * height:,} pixels), over the service's limit of "
                f"{max_pixels:,} pixels (max_input_pixels); use a smaller image.")
    return None


def uploaded_paths(payload) -> list[str]:
    """The file paths in an image input's raw value (gr.Image: one file; gr.ImageEditor: background,
    layers and composite)."""
    if isinstance(payload, dict):
        if isinstance(payload.get("path"), str):
            return [payload["path"]]
        return [path for value in payload.values() for path in uploaded_paths(value)]
    if isinstance(payload, list):
        return [path for value in payload for path in uploaded_paths(value)]
    return []
