"""The gateway's masks: brush layers to a binary mask, and the editor's (image, mask) for inpaint."""

import pytest
from PIL import Image

from gateway_ui.masks import editor_inputs, painted_mask


def layer(box=None, size=(8, 8), alpha=255):
    """A transparent brush layer with `box` painted (in any colour) at `alpha`."""
    img = Image.new("RGBA", size, (0, 0, 0, 0))
    if box is not None:
        img.paste((200, 30, 30, alpha), box)
    return img


def test_painted_mask_is_the_union_of_the_layers_alpha_binarized():
    mask = painted_mask([layer((0, 0, 2, 8)), None, layer((6, 0, 8, 8), alpha=40)])
    assert mask.mode == "L" and mask.size == (8, 8)
    assert set(mask.getdata()) == {0, 255}
    assert mask.getpixel((0, 0)) == 255 and mask.getpixel((7, 0)) == 255  # faint paint counts
    assert mask.getpixel((4, 0)) == 0


def test_nothing_painted_is_none():
    assert painted_mask([]) is None and painted_mask(None) is None and painted_mask([None]) is None
    assert painted_mask([layer(), layer()]) is None


def test_uploaded_mask_wins_over_painting():
    background, uploaded = Image.new("RGB", (8, 8)), Image.new("L", (8, 8), 255)
    image, mask = editor_inputs({"background": background, "layers": [layer((0, 0, 2, 2))]}, uploaded)
    assert image is background and mask is uploaded


def test_painting_is_the_mask_without_an_upload():
    background = Image.new("RGB", (8, 8))
    image, mask = editor_inputs({"background": background, "layers": [layer((0, 0, 2, 2))]}, None)
    assert image is background and mask.getpixel((1, 1)) == 255 and mask.getpixel((5, 5)) == 0


@pytest.mark.parametrize("editor", [None, {}, {"background": None, "layers": [layer((0, 0, 2, 2))]}])
def test_no_background_asks_for_an_image(editor):
    with pytest.raises(ValueError, match="upload an image"):
        editor_inputs(editor, Image.new("L", (8, 8), 255))


def test_nothing_painted_and_no_upload_asks_for_a_mask():
    with pytest.raises(ValueError, match="paint over the part"):
        editor_inputs({"background": Image.new("RGB", (8, 8)), "layers": [layer()]}, None)


def test_a_stroke_of_the_tabs_half_transparent_brush_is_masked_in_full():
    from gateway_ui.tabs import BRUSH

    _colour, opacity = BRUSH
    assert 0 < opacity < 1  # semi-transparent: the image shows through the stroke
    mask = painted_mask([layer((2, 2, 6, 6), alpha=round(255 * opacity))])
    assert mask.getpixel((3, 3)) == 255 and mask.getpixel((0, 0)) == 0
