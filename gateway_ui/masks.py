"""Turning what the browser sends (an ImageEditor value, uploaded files) into service inputs."""

from __future__ import annotations

import io

from PIL import Image, ImageChops


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def painted_mask(layers: list) -> Image.Image | None:
    """The union of the brush layers' alpha: painted = white = repaint. None if nothing painted."""
    mask = None
    for layer in layers or []:
        if layer is None:
            continue
        alpha = layer.convert("RGBA").getchannel("A")
        mask = alpha if mask is None else ImageChops.lighter(mask, alpha.resize(mask.size))
    if mask is None or mask.getextrema()[1] == 0:
        return None
    return mask.point(lambda v: 255 if v > 0 else 0)


def editor_inputs(editor: dict | None, uploaded_mask: Image.Image | None) -> tuple[bytes, bytes]:
    """(image PNG, mask PNG) from an ImageEditor value; an uploaded mask wins over painting."""
    if not editor or editor.get("background") is None:
        raise ValueError("upload an image to the editor first")
    background = editor["background"]
    if uploaded_mask is not None:
        mask = uploaded_mask
    else:
        mask = painted_mask(editor.get("layers"))
        if mask is None:
            raise ValueError("paint over the part to repaint with the brush, or upload a mask")
    return png_bytes(background), png_bytes(mask)
