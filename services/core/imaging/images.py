"""Image bytes in and out: decoding with limits, fitting to a size, encoding with infotext."""

from __future__ import annotations

import io
import warnings

from PIL import Image, ImageOps, PngImagePlugin, UnidentifiedImageError

from imagegen.v1.contract import OutputFormat

from ..errors import InvalidArgument

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


def encode_image(img: Image.Image, fmt: OutputFormat, infotext: str, quality: int) -> bytes:
    """Encode with the infotext embedded where AUTOMATIC1111-compatible tools look for it."""
    buf = io.BytesIO()
    if fmt.pil == "PNG":
        info = PngImagePlugin.PngInfo()
        info.add_text("parameters", infotext)
        img.save(buf, format="PNG", pnginfo=info, compress_level=4)
    else:
        exif = Image.Exif()
        # EXIF UserComment: an 8-byte charset prefix, then UTF-16 text (what A1111 writes).
        exif.get_ifd(_EXIF_IFD)[_EXIF_USER_COMMENT] = b"UNICODE\0" + infotext.encode("utf-16-be")
        img.save(buf, format=fmt.pil, quality=quality, exif=exif.tobytes())
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
