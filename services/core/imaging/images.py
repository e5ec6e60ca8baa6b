"""Image bytes in and out: decoding with limits, fitting to a size, encoding with infotext."""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps, PngImagePlugin, UnidentifiedImageError

from imagegen.v1.contract import OutputFormat

from ..errors import InvalidArgument

_EXIF_USER_COMMENT = 0x9286
_EXIF_IFD = 0x8769

# The input formats the contract documents; nothing else is even parsed (Image.open's `formats`).
ACCEPTED_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF")
_ACCEPTED_TEXT = "PNG, JPEG, WEBP, BMP or GIF"
# A JPEG carrying MPF data (several pictures, as some cameras write) opens as "MPO": its first
# picture is an ordinary JPEG.
_OPENED_AS = {**{fmt: fmt for fmt in ACCEPTED_FORMATS}, "MPO": "JPEG"}
_TRUNCATED = "image is truncated (its data ends before the image is complete)"


def decode_image(data: bytes, field: str, max_pixels: int) -> Image.Image:
    """Decode image bytes fully, refusing empty, unreadable, truncated or oversized images.

    Only the documented formats are parsed. The size is checked from the header, before any pixel
    is decoded (decompression bombs). Truncated files are refused: Pillow raises for data that ends
    early (LOAD_TRUNCATED_IMAGES stays off); a WEBP shorter than its RIFF size and a JPEG too short
    for the blocks its header claims (libjpeg would fill them grey, and only warn) are refused here.
    The result is 8 bits per channel (see to_8bit) and upright (EXIF orientation applied).
    """
    if not data:
        raise InvalidArgument(field, "is required (no image bytes given)")
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP" and len(data) < 8 + int.from_bytes(data[4:8], "little"):
        raise InvalidArgument(field, _TRUNCATED)  # a WEBP shorter than its RIFF size (it would not even open)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
            fmt = _OPENED_AS.get(img.format or "")
            if fmt is None:
                raise InvalidArgument(field, f"is not a {_ACCEPTED_TEXT} image")
            # The header gives the size before any pixel is decoded: refuse bombs here.
            width, height = img.size
            if width * height > max_pixels:
                raise InvalidArgument(
                    field, f"image is {width}x{height}, over the limit of {max_pixels} pixels"
                )
            # Every 8x8 luma block of a JPEG takes at least one bit (its DC code, baseline or progressive):
            # a header claiming more blocks than the data has bits is a lie libjpeg would fill grey.
            if fmt == "JPEG" and len(data) * 8 < -(-width // 8) * -(-height // 8):
                raise InvalidArgument(field, _TRUNCATED)
            img.load()
    except InvalidArgument:
        raise
    except UnidentifiedImageError:
        raise InvalidArgument(field, f"is not a {_ACCEPTED_TEXT} image") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InvalidArgument(field, f"image is over the limit of {max_pixels} pixels") from None
    except Exception as exc:  # noqa: BLE001 - the bytes are the caller's: any decoder failure is theirs
        if "truncated" in str(exc):  # Pillow's OSError for data that ends early
            raise InvalidArgument(field, _TRUNCATED) from None
        problem = f"image could not be decoded ({type(exc).__name__}: {str(exc)[:80]})"
        raise InvalidArgument(field, problem) from None
    if width < 1 or height < 1:
        raise InvalidArgument(field, "image is empty")
    return to_8bit(ImageOps.exif_transpose(img))


# 16-bit (and 32-bit integer) grey: PNG's 16-bit grey opens as "I;16" ("I" in older Pillow).
_WIDE_MODES = {"I", "I;16", "I;16L", "I;16B", "I;16N"}


def to_8bit(img: Image.Image) -> Image.Image:
    """8 bits per channel, keeping the image's tones.

    16-bit grey ("I;16", "I;16B", ...) and integer "I" images hold 0..65535 (16-bit data; larger
    values are clipped): scaled to 0..255 as value * 255 / 65535, rounded (Pillow's own convert
    clips them to 0/255 instead). A 16-bit grey PNG's transparent value becomes an alpha channel (LA).
    16-bit RGB(A) and grey+alpha PNGs need nothing here: Pillow opens them as 8-bit RGB(A), from
    each sample's high byte (within 1 of the exact scaling).
    """
    if img.mode not in _WIDE_MODES:
        return img
    values = np.asarray(img).astype(np.int64)
    scaled = ((np.clip(values, 0, 65535) * 255 + 32767) // 65535).astype(np.uint8)
    gray = Image.fromarray(scaled)
    transparent = img.info.get("transparency")
    if isinstance(transparent, int):
        alpha = Image.fromarray(np.where(values == transparent, 0, 255).astype(np.uint8))
        return Image.merge("LA", (gray, alpha))
    return gray



def round8(value: int) -> int:
    return max(8, value - value % 8)


# Pillow's filters by the names diffusers' image processor is configured with.
_RESAMPLE_NAMES = {Image.LANCZOS: "lanczos", Image.BILINEAR: "bilinear", Image.BICUBIC: "bicubic",
                   Image.NEAREST: "nearest"}


def fit_image(img: Image.Image, width: int, height: int, mode: str, resample=Image.LANCZOS) -> Image.Image:
    """Fit an image to width x height: 'resize' (and 'latent', whose latents are stretched the same way)
    stretches, 'crop' covers then centre-crops, 'fill' fits inside and stretches the edges outwards."""
    if img.size == (width, height):
        return img
    if mode == "crop":
        return ImageOps.fit(img, (width, height), method=resample)
    if mode == "fill":
        return fill_resize(img, width, height, resample)
    return img.resize((width, height), resample=resample)


def fill_resize(img: Image.Image, width: int, height: int, resample=Image.LANCZOS) -> Image.Image:
    """AUTOMATIC1111's "Resize and fill", as diffusers' image processor does it (resize_mode "fill"): scaled
    to fit inside width x height, centred, the borders filled by stretching its outermost rows or columns.
    Grey stays grey (masks); transparency is composited over white first, as to_rgb does."""
    from diffusers.image_processor import VaeImageProcessor

    gray = img.mode == "L"
    processor = VaeImageProcessor(resample=_RESAMPLE_NAMES[resample])
    filled = processor.resize(img if gray else to_rgb(img), height=height, width=width, resize_mode="fill")
    return filled.convert("L") if gray else filled


def to_rgb(img: Image.Image) -> Image.Image:
    """RGB, with any transparency composited over white (not over black garbage)."""
    if img.mode == "RGB":
        return img
    if "A" in img.getbands() or img.mode == "P" and "transparency" in img.info:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def encode_image(img: Image.Image, fmt: OutputFormat, infotext: str, quality: int,
                 chunk: str = "parameters") -> bytes:
    """Encode with the infotext embedded where AUTOMATIC1111-compatible tools look for it: a PNG's
    `chunk` (A1111 keeps an Extras result's text in "postprocessing"), JPEG's and WEBP's EXIF comment."""
    buf = io.BytesIO()
    if fmt.pil == "PNG":
        info = PngImagePlugin.PngInfo()
        info.add_text(chunk, infotext)
        img.save(buf, format="PNG", pnginfo=info, compress_level=4)
    else:
        exif = Image.Exif()
        # EXIF UserComment: an 8-byte charset prefix, then UTF-16 text (what A1111 writes).
        exif.get_ifd(_EXIF_IFD)[_EXIF_USER_COMMENT] = b"UNICODE\0" + infotext.encode("utf-16-be")
        img.save(buf, format=fmt.pil, quality=quality, exif=exif.tobytes())
    return buf.getvalue()


def solid_png(size: tuple[int, int], mode: str = "RGB", color=(128, 128, 128)) -> bytes:
    """A PNG of one colour: warm-up inputs, and masks that select everything."""
    buf = io.BytesIO()
    Image.new(mode, size, color).save(buf, format="PNG")
    return buf.getvalue()
