from PIL import Image

from services.core.imaging import masks


def test_alpha_layer_is_the_mask_and_opaque_masks_use_luminance():
    layer = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    layer.paste((10, 10, 10, 255), (0, 0, 4, 8))
    gray = masks.mask_to_gray(layer)
    assert gray.getpixel((0, 0)) == 255 and gray.getpixel((7, 0)) == 0
    opaque = Image.new("RGBA", (8, 8), (255, 255, 255, 255))
    assert masks.mask_to_gray(opaque).getpixel((0, 0)) == 255


def test_prepare_mask_resizes_fits_inverts_and_binarizes():
    mask = Image.new("L", (10, 10), 0)
    mask.paste(200, (0, 0, 5, 10))
    out = masks.prepare_mask(mask, (20, 20), (16, 16), "resize", invert=False)
    assert out.size == (16, 16) and set(out.getdata()) == {0, 255}
    assert out.getpixel((0, 0)) == 255 and out.getpixel((15, 0)) == 0
    inverted = masks.prepare_mask(mask, (20, 20), (16, 16), "resize", invert=True)
    assert inverted.getpixel((0, 0)) == 0


def test_blend_over_keeps_the_original_exactly_where_the_mask_is_black():
    original = Image.new("RGB", (16, 16), (10, 20, 30))
    generated = Image.new("RGB", (16, 16), (200, 100, 50))
    mask = Image.new("L", (16, 16), 0)
    mask.paste(255, (0, 0, 8, 16))
    out = masks.blend_over(original, generated, mask, blur=0)
    assert all(out.getpixel((x, y)) == (10, 20, 30) for x in range(8, 16) for y in range(16))
    assert all(out.getpixel((x, y)) == (200, 100, 50) for x in range(8) for y in range(16))
    blurred = masks.blend_over(original, generated, mask, blur=2)
    assert blurred.getpixel((8, 8)) not in ((10, 20, 30), (200, 100, 50))  # the seam is softened
