"""Inpainting masks: black keeps the input exactly, brush layers (alpha) work, sizes and inversion."""

from __future__ import annotations

import io

import grpc
import numpy as np
import pytest
from PIL import Image, ImageFile

from tests.conftest import box_mask, png, request_for


def pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.int16)


def brush_layer(size=(64, 64), box=(16, 16, 48, 48)) -> bytes:
    """What Gradio's ImageEditor gives: transparent canvas, strokes in some colour, opaque."""
    layer = Image.new("RGBA", size, (0, 0, 0, 0))
    layer.paste((20, 20, 20, 255), box)
    buf = io.BytesIO()
    layer.save(buf, format="PNG")
    return buf.getvalue()


def test_black_keeps_input_pixels_and_white_is_repainted(services):
    source = png()
    out = pixels(services["inpaint"].client.generate(request_for("inpaint", image=source, mask_blur=0)).images[0].data)
    src = pixels(source)
    keep = np.ones((64, 64), bool)
    keep[16:48, 16:48] = False
    assert np.array_equal(out[keep], src[keep])
    assert np.abs(out[~keep] - src[~keep]).mean() > 10


def test_alpha_brush_layer_is_the_mask(services):
    client = services["inpaint"].client
    by_alpha = client.generate(request_for("inpaint", mask=brush_layer())).images[0]
    by_grey = client.generate(request_for("inpaint", mask=box_mask())).images[0]
    assert pixels(by_alpha.data).tolist() == pixels(by_grey.data).tolist()


def test_mask_of_another_size_is_resized(services):
    client = services["inpaint"].client
    small = client.generate(request_for("inpaint", mask=box_mask((32, 32), (8, 8, 24, 24)))).images[0]
    full = client.generate(request_for("inpaint", mask=box_mask())).images[0]
    assert (small.width, small.height) == (64, 64)
    assert np.abs(pixels(small.data) - pixels(full.data)).mean() < 3


def test_invert_mask_repaints_the_other_part(services):
    source = png()
    out = pixels(services["inpaint"].client.generate(
        request_for("inpaint", image=source, mask_blur=0, invert_mask=True)).images[0].data)
    src = pixels(source)
    assert np.array_equal(out[16:48, 16:48], src[16:48, 16:48])
    assert np.abs(out[:8] - src[:8]).mean() > 10
    assert "Mask mode" in services["inpaint"].client.generate(
        request_for("inpaint", invert_mask=True)).images[0].infotext


def outside_box(size=64, box=(16, 16, 48, 48)) -> np.ndarray:
    keep = np.ones((size, size), bool)
    keep[box[1]:box[3], box[0]:box[2]] = False
    return keep


def test_mask_blur_never_changes_pixels_outside_the_mask(services):
    # mask_blur feathers the seam inside the painted area only: black = kept exactly, even at blur 64.
    source = png(seed=5)
    src, keep = pixels(source), outside_box()
    for blur in (4, 64):
        out = pixels(services["inpaint"].client.generate(
            request_for("inpaint", image=source, mask_blur=blur)).images[0].data)
        assert np.array_equal(out[keep], src[keep]), f"mask_blur {blur} changed pixels outside the mask"
        assert np.abs(out[~keep] - src[~keep]).mean() > 1  # ... and the inside was repainted


def test_opaque_rgba_mask_with_one_nearly_transparent_pixel_is_read_by_luminance(services):
    # Read from its alpha (all >= 254), this mask would repaint the whole image.
    mask = Image.open(io.BytesIO(box_mask())).convert("RGBA")
    mask.putpixel((0, 0), (0, 0, 0, 254))
    client = services["inpaint"].client
    source = png(seed=6)
    request = request_for("inpaint", image=source, mask=encode(mask), mask_blur=0)
    out = pixels(client.generate(request).images[0].data)
    keep = outside_box()
    assert np.array_equal(out[keep], pixels(source)[keep])


def test_16bit_mask_reads_black_as_black(services):
    # A 16-bit grey PNG mask: dark (1000 of 65535) = keep, 65535 = repaint (Pillow's convert made both white).
    mask = np.full((64, 64), 1000, np.uint16)
    mask[16:48, 16:48] = 65535
    source = png(seed=8)
    out = pixels(services["inpaint"].client.generate(
        request_for("inpaint", image=source, mask=encode(Image.fromarray(mask)), mask_blur=0)).images[0].data)
    keep = outside_box()
    assert np.array_equal(out[keep], pixels(source)[keep])
    assert np.abs(out[~keep] - pixels(source)[~keep]).mean() > 10


def test_jpeg_whose_header_claims_more_than_its_data_is_refused(services):
    # Data for 96x64, a frame header claiming 4000x3000: decoded, it was a mostly grey picture.
    rng = np.random.default_rng(9)
    data = bytearray(encode(Image.fromarray(rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = (3000).to_bytes(2, "big") + (4000).to_bytes(2, "big")
    for field, kwargs in (("init_image.data", {"image": bytes(data)}),
                          ("mask_image.data", {"mask": bytes(data)})):
        with pytest.raises(grpc.RpcError) as err:
            services["inpaint"].client.generate(request_for("inpaint", **kwargs))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert err.value.details().startswith(f"{field}: image is truncated"), err.value.details()


def test_pillow_is_not_set_to_load_truncated_images(services):
    # With the whole stack imported and models loaded, Pillow still refuses truncated files by itself.
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def encode(img: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()
