"""Turning what the browser sends (an ImageEditor value, uploaded files) into service inputs."""

from __future__ import annotations

from PIL import Image, ImageChops


class InputError(ValueError):
    """What the person must fix, in words for the browser (the gateway shows it after the tab's name)."""


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


def editor_image(editor: dict | None) -> Image.Image:
    """The image uploaded to the editor (its background)."""
    if not editor or editor.get("background") is None:
        raise InputError("upload an image to the editor first")
    return editor["background"]


def editor_inputs(editor: dict | None, uploaded_mask) -> tuple[Image.Image, object]:
    """(image, mask) from an ImageEditor value; an uploaded mask (a file's path, or an image) wins over painting."""
    background = editor_image(editor)
    if uploaded_mask is not None:
        mask = uploaded_mask
    else:
        mask = painted_mask(editor.get("layers"))
        if mask is None:
            raise InputError("paint over the part to repaint with the brush, or upload a mask")
    return background, mask
