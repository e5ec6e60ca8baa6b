import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageFile

from imagegen.v1.contract import OUTPUT_FORMATS
from services.client.infotext import read_infotext
from services.core.errors import InvalidArgument
from services.core.imaging import images, masks
from tests.conftest import png

ACCEPTED = "PNG, JPEG, WEBP, BMP or GIF"


def encode(img, fmt="PNG", **options) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **options)
    return buf.getvalue()


def noise(size=(96, 64), seed=0, mode="RGB") -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).convert(mode)


def refusal(data: bytes, field: str = "init_image.data", max_pixels: int = 4096 * 4096) -> InvalidArgument:
    with pytest.raises(InvalidArgument) as err:
        images.decode_image(data, field, max_pixels)
    assert err.value.field == field and str(err.value).startswith(field + ": ")
    return err.value


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def raw_png(width, height, depth, color_type, raw: bytes, extra: bytes = b"", interlaced=False) -> bytes:
    """A PNG written by hand (Pillow writes neither 16-bit colour nor interlaced PNGs)."""
    header = struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, 1 if interlaced else 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + extra
            + png_chunk(b"IDAT", zlib.compress(raw)) + png_chunk(b"IEND", b""))


def rows(samples: np.ndarray) -> bytes:
    """Scanlines (filter 0) of an (h, w, channels) array, big-endian as PNG stores 16-bit samples."""
    data = samples.astype(">u2" if samples.dtype == np.uint16 else np.uint8)
    return b"".join(b"\0" + data[y].tobytes() for y in range(data.shape[0]))


def adam7(samples: np.ndarray) -> bytes:
    """Interlaced scanlines: the 7 passes' sub-images one after the other."""
    passes = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4),
              (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))  # (x0, y0, dx, dy)
    subimages = (samples[y0::dy, x0::dx] for x0, y0, dx, dy in passes)
    return b"".join(rows(sub) for sub in subimages if sub.size)


def scaled(values) -> np.ndarray:
    return np.floor(np.asarray(values, dtype=np.float64) * 255 / 65535 + 0.5).astype(np.uint8)


GRADIENT16 = np.linspace(0, 65535, 256).round().astype(np.uint16)


# --- refusals, accepted formats -----------------------------------------------------------------


@pytest.mark.parametrize("data,problem", [
    (b"", "required"),
    (b"GIF89a-not-really", f"not a {ACCEPTED} image"),
    (png()[:100], "truncated"),
])
def test_decode_refuses_bad_bytes(data, problem):
    assert problem in refusal(data).problem


def test_decode_refuses_oversized_image_from_its_header():
    data = encode(Image.new("1", (5000, 5000)))
    assert "5000x5000" in refusal(data, "mask_image.data", 4096 * 4096).problem


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "BMP", "GIF"])
def test_decode_accepts_the_documented_formats(fmt):
    img = images.decode_image(encode(Image.new("RGB", (20, 10), "red"), fmt), "f", 10_000)
    assert img.size == (20, 10)


def test_jpeg_with_mpf_data_is_a_jpeg():
    # Some cameras write several pictures in one JPEG (MPF); Pillow names it "MPO". The first is read.
    first, second = Image.new("RGB", (32, 16), (200, 30, 30)), Image.new("RGB", (32, 16), (30, 30, 200))
    data = encode(first, "MPO", save_all=True, append_images=[second])
    assert Image.open(io.BytesIO(data)).format == "MPO"
    img = images.decode_image(data, "f", 10_000)
    assert img.size == (32, 16) and np.abs(np.asarray(img, np.int16) - (200, 30, 30)).max() < 8


@pytest.mark.parametrize("fmt", ["TIFF", "ICO", "PPM"])
def test_other_formats_are_refused_naming_the_accepted_ones(fmt):
    data = encode(Image.new("RGB", (16, 16), "red"), fmt)
    assert Image.open(io.BytesIO(data)).format == fmt  # Pillow itself would read it
    err = refusal(data, "mask_image.data")
    assert ACCEPTED in err.problem and len(str(err)) < 80


# --- truncated images ---------------------------------------------------------------------------


def jpeg_claiming(data: bytes, width: int, height: int) -> bytes:
    """The JPEG with its frame header (SOF) patched to claim another size."""
    patched = bytearray(data)
    sof = next(i for i in range(len(data) - 1) if data[i] == 0xFF and data[i + 1] in (0xC0, 0xC2))
    patched[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(patched)


def truncated_cases():
    img = noise((400, 300))
    for fmt in ("JPEG", "PNG", "WEBP"):
        data = encode(img, fmt)
        yield pytest.param(data[: len(data) // 2], id=f"{fmt}-cut-in-half")
        yield pytest.param(data[:-40], id=f"{fmt}-last-40-bytes-cut")
    for progressive in (False, True):
        small = encode(noise((96, 64)), "JPEG", progressive=progressive)
        kind = "progressive" if progressive else "baseline"
        # The red team's file: data for 96x64, header claiming 4000x3000 (decoded as mostly grey before).
        yield pytest.param(jpeg_claiming(small, 4000, 3000), id=f"JPEG-{kind}-header-claims-4000x3000")


@pytest.mark.parametrize("data", truncated_cases())
def test_truncated_images_are_refused(data):
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False  # nothing the services import turns it on
    err = refusal(data)
    assert err.problem.startswith("image is truncated"), err.problem


def complete_jpegs():
    photo = noise((27, 20)).resize((401, 299), Image.BICUBIC)
    grey = Image.new("RGB", (96, 64), (128, 128, 128))  # flat last block, like a short scan's: decoded twice
    half_grey = grey.copy()
    half_grey.paste((200, 30, 30), (0, 0, 96, 32))
    for name, img in (("photo", photo), ("grey", grey), ("half-grey", half_grey), ("L", photo.convert("L")),
                      ("CMYK", photo.convert("CMYK"))):
        for options in ({}, {"progressive": True}, {"optimize": True}, {"subsampling": 0},
                        {"restart_marker_blocks": 3}, {"quality": 100}):
            yield pytest.param(img, options, id=f"{name}-{'-'.join(map(str, options.items())) or 'default'}")


@pytest.mark.parametrize("img,options", complete_jpegs())
def test_complete_jpegs_decode_as_pillow_decodes_them(img, options):
    data = encode(img, "JPEG", **options)
    expected = Image.open(io.BytesIO(data))
    expected.load()
    for variant in (data, data + b"bytes after the end of image marker"):
        assert images.decode_image(variant, "f", 10**6).tobytes() == expected.tobytes()


def test_complete_interlaced_png_with_black_last_rows_decodes():
    pixels = np.asarray(noise((13, 11))).copy()
    pixels[-2:] = 0  # black last rows: the image data is counted, and is complete
    img = images.decode_image(raw_png(13, 11, 8, 2, adam7(pixels), interlaced=True), "f", 10_000)
    assert np.array_equal(np.asarray(img), pixels)


# --- 16-bit images ------------------------------------------------------------------------------


def test_16bit_grey_png_keeps_its_gradient():
    data = raw_png(256, 2, 16, 0, rows(np.tile(GRADIENT16, (2, 1))[:, :, None]))
    assert Image.open(io.BytesIO(data)).mode == "I;16"
    img = images.decode_image(data, "f", 10_000)
    assert img.mode == "L"
    assert np.array_equal(np.asarray(img)[0], scaled(GRADIENT16))  # value * 255 / 65535, rounded
    assert len(set(np.asarray(img)[0].tolist())) > 200  # a gradient, not 0/255


@pytest.mark.parametrize("mode", ["I;16", "I;16B", "I"])
def test_wide_grey_modes_scale_to_8_bits(mode):
    values = np.array([[0, 257, 1000, 32768, 40000, 65535]], np.int64)
    dtype = {"I;16": "<u2", "I;16B": ">u2", "I": "<i4"}[mode]
    img = Image.frombytes(mode, (6, 1), values.astype(dtype).tobytes())
    assert np.array_equal(np.asarray(images.to_8bit(img)), scaled(values))


def test_16bit_grey_transparency_becomes_alpha():
    samples = np.array([[0, 1000, 65535]], np.uint16)
    data = raw_png(3, 1, 16, 0, rows(samples[:, :, None]), extra=png_chunk(b"tRNS", struct.pack(">H", 1000)))
    img = images.decode_image(data, "f", 100)
    assert img.mode == "LA" and list(img.getdata()) == [(0, 255), (4, 0), (255, 255)]


@pytest.mark.parametrize("color_type,channels,mode", [(2, 3, "RGB"), (6, 4, "RGBA"), (4, 2, "RGBA")])
def test_16bit_colour_pngs_are_8_bits_within_one(color_type, channels, mode):
    # Pillow opens them already reduced to 8 bits (each sample's high byte): within 1 of the exact scaling.
    samples = np.zeros((2, 256, channels), np.uint16)
    samples[:, :, 0] = GRADIENT16
    samples[:, :, -1] = 30000 if channels in (2, 4) else GRADIENT16[::-1]
    img = images.decode_image(raw_png(256, 2, 16, color_type, rows(samples)), "f", 10_000)
    assert img.mode == mode
    got = np.asarray(img, np.int16)[0]
    assert np.abs(got[:, 0] - scaled(GRADIENT16)).max() <= 1
    assert np.abs(got[:, -1] - scaled(samples[0, :, -1])).max() <= 1


def test_16bit_mask_reads_dark_as_black():
    # Keep (dark, 3000 of 65535) on the right, repaint (60000) on the left: Pillow's convert made both white.
    samples = np.full((8, 8), 3000, np.uint16)
    samples[:, :4] = 60000
    mask = images.decode_image(raw_png(8, 8, 16, 0, rows(samples[:, :, None])), "mask_image.data", 100)
    binary = masks.prepare_mask(mask, (8, 8), (8, 8), "resize", invert=False)
    assert np.array_equal(np.asarray(binary)[0], [255] * 4 + [0] * 4)


# --- the rest -----------------------------------------------------------------------------------


def test_transparent_input_is_composited_over_white():
    rgba = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    assert images.to_rgb(rgba).getpixel((0, 0)) == (255, 255, 255)


def test_fit_crop_keeps_aspect_and_resize_stretches():
    wide = Image.new("RGB", (200, 100))
    assert images.fit_image(wide, 64, 64, "crop").size == (64, 64)
    assert images.fit_image(wide, 64, 64, "resize").size == (64, 64)
    assert images.round8(101) == 96 and images.round8(3) == 8


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_encode_embeds_infotext_readable_back(fmt):
    text = "a fox\nSteps: 3, Seed: 1, Size: 8x8 ünïcode"
    data = images.encode_image(Image.new("RGB", (8, 8)), OUTPUT_FORMATS[fmt.lower()], text, 90)
    assert Image.open(io.BytesIO(data)).format == fmt
    assert read_infotext(data) == text  # the client's reader, as the gateway and CLI read it


def _gradient(size=(64, 32)) -> Image.Image:
    width, height = size
    rng = np.random.default_rng(3)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def test_fit_fill_fits_inside_centres_and_stretches_the_edge_rows_outwards():
    source = _gradient((64, 32))  # wider than the square it is fitted to: borders above and below
    out = np.asarray(images.fit_image(source, 64, 64, "fill"), dtype=np.int16)
    inner = np.asarray(source, dtype=np.int16)  # 64 wide already: placed unscaled at rows 16..48
    assert out.shape == (64, 64, 3)
    assert np.array_equal(out[16:48], inner)
    # Every border row is the image's own edge row stretched outwards (A1111's resize and fill).
    assert (np.abs(out[:16] - out[15:16]) <= 1).all() and (np.abs(out[48:] - out[48:49]) <= 1).all()
    assert np.abs(out[0] - inner[0]).max() <= 40 and np.abs(out[0] - inner[-1]).mean() > 20


def test_fit_fill_of_a_taller_image_fills_left_and_right_and_keeps_masks_grey():
    source = _gradient((32, 64)).convert("L")
    out = images.fit_image(source, 64, 64, "fill", resample=Image.BILINEAR)
    assert out.mode == "L" and out.size == (64, 64)
    values = np.asarray(out, dtype=np.int16)
    assert np.array_equal(values[:, 16:48], np.asarray(source, dtype=np.int16))
    assert (np.abs(values[:, :16] - values[:, 15:16]) <= 1).all()


def test_fit_fill_composites_transparency_over_white_and_latent_stretches_like_resize():
    rgba = Image.new("RGBA", (32, 16), (0, 0, 0, 0))
    assert images.fit_image(rgba, 32, 32, "fill").getpixel((16, 16)) == (255, 255, 255)
    source = _gradient((48, 32))
    assert np.array_equal(np.asarray(images.fit_image(source, 64, 64, "latent")),
                          np.asarray(images.fit_image(source, 64, 64, "resize")))
