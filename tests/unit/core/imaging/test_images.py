import io

import pytest
from PIL import Image

from imagegen.v1.contract import OUTPUT_FORMATS
from services.core.errors import InvalidArgument
from services.core.imaging import images
from tests.conftest import png


def encode(img, fmt="PNG") -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


@pytest.mark.parametrize("data,problem", [
    (b"", "required"),
    (b"GIF89a-not-really", "not a readable image"),
    (png()[:100], "could not be decoded"),
])
def test_decode_refuses_bad_bytes(data, problem):
    with pytest.raises(InvalidArgument) as err:
        images.decode_image(data, "init_image.data", 10_000_000)
    assert err.value.field == "init_image.data" and problem in err.value.problem


def test_decode_refuses_oversized_image_from_its_header():
    data = encode(Image.new("1", (5000, 5000)))
    with pytest.raises(InvalidArgument) as err:
        images.decode_image(data, "mask_image.data", 4096 * 4096)
    assert "5000x5000" in err.value.problem


def test_decode_accepts_common_formats():
    for fmt in ("PNG", "JPEG", "WEBP", "BMP", "GIF"):
        img = images.decode_image(encode(Image.new("RGB", (20, 10), "red"), fmt), "f", 10_000)
        assert img.size == (20, 10)


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
    assert images.read_infotext(data) == text
