"""Inpainting masks: read from what people send (alpha or luminance), fitted like the image, blended back."""

from __future__ import annotations

from PIL import Image, ImageChops, ImageFilter, ImageOps

from .images import fit_image

# A mask is a brush layer, read from its alpha, when at least this share of its pixels is fully transparent.
BRUSH_LAYER_MIN_TRANSPARENT = 0.01


def mask_to_gray(mask: Image.Image) -> Image.Image:
    """A mask as 8-bit grey, white = repaint.

    The rule: a mask with transparency (RGBA, LA, or a palette image with a transparent entry) is
    read from its alpha when at least 1% of its pixels are fully transparent (alpha 0): that is a
    brush layer on a transparent canvas (what Gradio's ImageEditor gives), painted where opaque,
    whatever the colour. Every other mask is read by luminance, its alpha ignored: masks without
    alpha, opaque ones, nearly opaque ones (an opaque black/white mask with a pixel at alpha 254, or
    a whole mask at alpha 250), and ones with only a few stray fully transparent pixels.
    """
    if mask.mode == "PA" or mask.mode == "P" and "transparency" in mask.info:
        mask = mask.convert("RGBA")
    if "A" in mask.getbands():
        alpha = mask.getchannel("A")
        transparent = alpha.histogram()[0]
        if transparent >= BRUSH_LAYER_MIN_TRANSPARENT * mask.width * mask.height:
            return alpha
    return mask.convert("L")  # from RGBA or LA: the colour, alpha ignored


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
    """Generated pixels where the mask is white, the original's exactly where it is black.

    `blur` (mask_blur, px) feathers the seam inside the painted area only: the mask is blurred
    (Gaussian, radius `blur`), then capped by the mask itself (the minimum of the two), so the blend
    weight is zero wherever the mask is black, whatever the blur, and the generated pixels fade in
    over the painted side of the edge.
    """
    soft = ImageChops.darker(mask.filter(ImageFilter.GaussianBlur(blur)), mask) if blur > 0 else mask
    return Image.composite(generated, original, soft)
