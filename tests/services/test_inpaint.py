"""Inpainting masks: black keeps the input exactly, brush layers (alpha) work, sizes and inversion."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

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
