"""Image bytes in and out: decoding with limits, fitting to a size, masks, encoding with infotext."""

from __future__ import annotations

import io
import warnings

from PIL import Image, ImageFilter, ImageOps, PngImagePlugin, UnidentifiedImageError

from .errors import InvalidArgument

MIME = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
_EXIF_USER_COMMENT = 0x9286
_EXIF_IFD = 0x8769


def decode_image(data: bytes, field: str, max_pixels: int) -> Image.Image:
    """Decode image bytes fully, refusing empty, unreadable, truncated or oversized images."""
    if not data:
        raise InvalidArgument(field, "is required (no image bytes given)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            # The header gives the size before any pixel is decoded: refuse bombs here.
            width, height = img.size
            if width * height > max_pixels:
                raise InvalidArgument(
                    field, f"image is {width}x{height}, over the limit of {max_pixels} pixels"
                )
            img.load()
    except InvalidArgument:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InvalidArgument(field, "is not a readable image (PNG, JPEG, WEBP, BMP or GIF)") from None
    except Exception as exc:  # noqa: BLE001 - the bytes are the caller's: any decoder failure is theirs
        raise InvalidArgument(field, f"image could not be decoded ({type(exc).__name__}: {exc})") from None
    if width < 1 or height < 1:
        raise InvalidArgument(field, "image is empty")
    return ImageOps.exif_transpose(img)


def round8(value: int) -> int:
    return max(8, value - value % 8)


def fit_image(img: Image.Image, width: int, height: int, mode: str, resample=Image.LANCZOS) -> Image.Image:
    """Fit an image to width x height: 'resize' stretches, 'crop' covers then centre-crops."""
    if img.size == (width, height):
        return img
    if mode == "crop":
        return ImageOps.fit(img, (width, height), method=resample)
    return img.resize((width, height), resample=resample)


def to_rgb(img: Image.Image) -> Image.Image:
    """RGB, with any transparency composited over white (not over black garbage)."""
    if img.mode == "RGB":
        return img
    if "A" in img.getbands() or img.mode == "P" and "transparency" in img.info:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


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


def encode_image(img: Image.Image, fmt: str, infotext: str, quality: int) -> bytes:
    """Encode with the infotext embedded where AUTOMATIC1111-compatible tools look for it."""
    buf = io.BytesIO()
    if fmt == "PNG":
        info = PngImagePlugin.PngInfo()
        info.add_text("parameters", infotext)
        img.save(buf, format="PNG", pnginfo=info, compress_level=4)
    else:
        exif = Image.Exif()
        # EXIF UserComment: an 8-byte charset prefix, then UTF-16 text (what A1111 writes).
        exif.get_ifd(_EXIF_IFD)[_EXIF_USER_COMMENT] = b"UNICODE\0" + infotext.encode("utf-16-be")
        img.save(buf, format=fmt, quality=quality, exif=exif.tobytes())
    return buf.getvalue()


def read_infotext(data: bytes) -> str | None:
    """The infotext embedded by encode_image (PNG text chunk or EXIF UserComment)."""
    img = Image.open(io.BytesIO(data))
    if "parameters" in img.info:
        return img.info["parameters"]
    comment = img.getexif().get_ifd(_EXIF_IFD).get(_EXIF_USER_COMMENT)
    if isinstance(comment, bytes) and comment.startswith(b"UNICODE\0"):
        return comment[8:].decode("utf-16-be")
    return None


def solid_png(size: tuple[int, int], mode: str = "RGB", color=(128, 128, 128)) -> bytes:
    """A PNG of one colour: warm-up inputs, and masks that select everything."""
    buf = io.BytesIO()
    Image.new(mode, size, color).save(buf, format="PNG")
    return buf.getvalue()
