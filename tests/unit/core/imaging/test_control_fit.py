"""Control maps fitted to the output as sd-webui-controlnet's detectmap_proc and high_quality_resize do."""

from __future__ import annotations

import cv2
import numpy as np

from services.core.imaging.control_fit import fit_map, high_quality_resize, thin


def photo(width=120, height=80, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_many_colours_shrink_with_area_and_enlarge_with_cubic():
    img = photo()
    assert np.array_equal(high_quality_resize(img, 60, 40),
                          cv2.resize(img, (60, 40), interpolation=cv2.INTER_AREA))
    assert np.array_equal(high_quality_resize(img, 240, 160),
                          cv2.resize(img, (240, 160), interpolation=cv2.INTER_CUBIC))


def test_a_few_colours_stay_those_colours():
    palette = np.array([(255, 0, 0), (0, 255, 0), (0, 0, 255), (9, 9, 9)], dtype=np.uint8)
    img = palette[np.random.default_rng(1).integers(0, 4, (40, 60))]
    out = high_quality_resize(img, 95, 63)
    assert np.array_equal(out, cv2.resize(img, (95, 63), interpolation=cv2.INTER_NEAREST))


def test_the_same_size_is_left_alone():
    img = photo()
    assert high_quality_resize(img, 120, 80) is img


def test_a_binary_map_of_blobs_stays_binary():
    img = np.zeros((40, 40, 3), dtype=np.uint8)
    cv2.circle(img, (20, 20), 12, (255, 255, 255), -1)
    out = high_quality_resize(img, 100, 100)
    assert set(np.unique(out)) == {0, 255}
    assert np.array_equal(out[:, :, 0], out[:, :, 2])
    assert out[50, 50, 0] == 255 and out[2, 2, 0] == 0


def test_one_pixel_edges_stay_one_pixel_when_enlarged():
    img = np.zeros((40, 40, 3), dtype=np.uint8)
    img[20, 5:35] = 255  # a one-pixel line
    out = high_quality_resize(img, 80, 80)[:, :, 0]
    assert set(np.unique(out)) == {0, 255}
    rows = np.nonzero(out[:, 40])[0]
    assert len(rows) == 1 and 38 <= rows[0] <= 42  # the line, still one pixel thick, where it was


def test_thinning_takes_a_thick_bar_to_one_pixel():
    bar = np.zeros((20, 40), dtype=np.uint8)
    bar[8:13, 5:35] = 255
    out = thin(bar.copy(), prune=False)
    assert (np.count_nonzero(out[:, 10:30], axis=0) == 1).all()


def test_fill_uses_the_median_of_the_border_truncated():
    img = np.zeros((20, 40, 3), dtype=np.uint8)
    img[0, :] = 100
    img[-1, :] = 101  # the border's median is 100.5 on each channel: the extension keeps 100
    img[1:-1, 0] = 101
    img[1:-1, -1] = 100
    img[5:15, 10:30] = photo(20, 10)
    out = fit_map(img, 40, 40, "fill")
    assert out.shape == (40, 40, 3) and (out[:10] == 100).all() and (out[30:] == 100).all()
    assert np.array_equal(out[10:30], img)


def test_crop_scales_to_cover_then_cuts_the_middle():
    img = photo(100, 50)
    out = fit_map(img, 60, 60, "crop")
    scaled = cv2.resize(img, (120, 60), interpolation=cv2.INTER_CUBIC)
    assert np.array_equal(out, scaled[:, 30:90])


def test_grey_maps_come_out_rgb():
    gray = np.random.default_rng(2).integers(0, 256, (30, 30), dtype=np.uint8)
    out = fit_map(gray, 30, 30, "resize")
    assert out.shape == (30, 30, 3) and np.array_equal(out[:, :, 1], gray)


def test_colours_are_counted_as_distinct_rgb_triples():
    from services.core.imaging.control_fit import _color_count

    img = photo(30, 20) // 64  # 4 levels per channel: up to 64 colours
    assert _color_count(img) == len(np.unique(img.reshape(-1, 3), axis=0))
    assert _color_count(np.zeros((5, 5, 3), dtype=np.uint8)) == 1
    swapped = np.array([[[1, 2, 3], [3, 2, 1]]], dtype=np.uint8)  # the same values, other channels
    assert _color_count(swapped) == 2
