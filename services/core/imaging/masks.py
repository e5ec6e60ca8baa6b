"""Inpainting masks: read from what people send (alpha or luminance), fitted like the image, blended back."""

from __future__ import annotations

from PIL import Image, ImageFilter, ImageOps

from .images import fit_image


def mask_to_gray(mask: Image.Image) -> Image.Image:
    """A mask as 8-bit grey, white = repaint.

    A mask with an alpha channel that is not fully opaque is a brush layer on a transparent canvas
    (what Gradio's ImageEditor gives): its alpha is the mask, whatever colour was painted.
    """
    if mask.mode == "P":
        mask = mask.convert("RGBA")
    if "A" in mask.getbands():
        alpha = mask.getchannel("A")
        lo, _hi = alpha.getextrema()
        if lo < 255:
            return alpha
    return mask.convert("L")


def prepare_mask(mask: Image.Image, source_size: tuple[int, int], size: tuple[int, int], fit: str, invert: bool) -> Image.Image:
    """The mask as binary grey at `size`, white = repaint.

    A mask of another size than the input image (`source_size`) is first resized to it, then fitted
    to `size` exactly as the image was, so the two stay aligned. Binarized at 50%, as diffusers does.
    """
    gray = mask_to_gray(mask)
    if gray.size != source_size:
        gray = gray.resize(source_size, resample=Image.BILINEAR)
    gray = fit_image(gray, size[0], size[1], fit, resample=Image.BILINEAR)
    if invert:
        gray = ImageOps.invert(gray)
    return gray.point(lambda v: 255 if v >= 128 else 0)


def blend_over(original: Image.Image, generated: Image.Image, mask: Image.Image, blur: int) -> Image.Image:
    """Generated pixels where the (blurred) mask is white, the original's exactly where it is black."""
    soft = mask.filter(ImageFilter.GaussianBlur(blur)) if blur > 0 else mask
    return Image.composite(generated, original, soft)
