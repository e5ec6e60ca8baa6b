"""Inpainting masks: read from what people send (alpha or luminance), fitted like the image, blended back;
the masked area's "fill" content, and the crop of "only masked" inpainting and its way back."""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image, ImageChops, ImageFilter, ImageOps

from .images import fill_resize, fit_image

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


@dataclass(frozen=True)
class Overlay:
    """Where an inpainted image goes back: over `image` (what the answer shows where the mask keeps) by
    `mask` (binary, image's size); `box` (x1, y1, x2, y2): the part of `image` that was cut out and
    repainted at the request's size ("only masked"), None when the whole picture was."""

    image: Image.Image
    mask: Image.Image
    box: tuple[int, int, int, int] | None = None


def only_masked_region(mask: Image.Image, width: int, height: int, padding: int) -> tuple[int, int, int, int]:
    """The part "only masked" repaints: the mask's bounding box grown by `padding` on each side, then
    to width:height's aspect ratio within the image (diffusers' get_crop_region, which is
    AUTOMATIC1111's get_crop_region and expand_crop_region)."""
    from diffusers.image_processor import VaeImageProcessor

    return tuple(int(v) for v in VaeImageProcessor.get_crop_region(mask, width, height, pad=padding))


def cut_out(image: Image.Image, mask: Image.Image, box, width: int,
            height: int) -> tuple[Image.Image, Image.Image]:
    """The image and the mask inside `box`, fitted to width x height as "resize and fill" does, as
    diffusers' inpainting pipeline prepares them for padding_mask_crop (Lanczos; the mask binarized)."""
    picture = fill_resize(image.crop(box), width, height)
    cut = fill_resize(mask.crop(box), width, height)
    return picture, cut.point(lambda v: 255 if v >= 128 else 0)


def paste_back(overlay: Overlay, generated: Image.Image, blur: int) -> Image.Image:
    """The repainted image at the overlay's size: a repainted cut-out scaled back to its box (centre
    crop to the box's exact ratio, as diffusers' apply_overlay), then blended over the overlay's image."""
    if overlay.box is not None:
        from diffusers.image_processor import VaeImageProcessor

        x1, y1, x2, y2 = overlay.box
        patch = VaeImageProcessor().resize(generated, height=y2 - y1, width=x2 - x1, resize_mode="crop")
        canvas = overlay.image.copy()
        canvas.paste(patch, (x1, y1))
        generated = canvas
    return blend_over(overlay.image, generated, overlay.mask, blur)


# The blurs "fill" paints with, widest first, and how often each is laid on: AUTOMATIC1111's recipe.
_FILL_LAYERS = ((256, 1), (64, 1), (16, 2), (4, 4), (2, 2), (0, 1))


def fill_masked(image: Image.Image, mask: Image.Image) -> Image.Image:
    """The masked area (white) painted with the colours around it, AUTOMATIC1111's "fill" masked content:
    the kept pixels, with alpha and premultiplied so that a blur spreads only their colours, blurred
    ever less and laid over each other, so each masked pixel ends up with its nearest surroundings'
    colour; the kept pixels come out as they were."""
    kept = Image.new("RGBa", image.size)
    kept.paste(image.convert("RGBA").convert("RGBa"), mask=ImageOps.invert(mask.convert("L")))
    painted = Image.new("RGBA", image.size)
    for radius, times in _FILL_LAYERS:
        layer = kept.filter(ImageFilter.GaussianBlur(radius)).convert("RGBA")
        for _ in range(times):
            painted.alpha_composite(layer)
    return painted.convert("RGB")
