"""The preprocessors against sd-webui-controlnet's recipes, written out here from its source
(scripts/preprocessor/model_free_preprocessors.py, scripts/preprocessor/legacy/processor.py, scripts/utils.py
resize_image_with_pad, annotator/shuffle), on small drawn images."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from PIL import Image

from imagegen.v1 import imagegen_pb2 as pb
from services.core.errors import InvalidArgument
from services.core.imaging import preprocessors
from services.core.imaging.control_fit import fit_map, pixel_perfect_resolution

NAMES = ["none", "tile_resample", "lineart_standard", "canny", "invert", "threshold", "shuffle",
         "scribble_xdog", "blur_gaussian"]


def drawing(width=150, height=100) -> np.ndarray:
    """A horizontal gradient with a dark circle, a light box and a thin line: edges of several strengths."""
    x = np.linspace(30, 220, width, dtype=np.float32)
    img = np.repeat(np.repeat(x[None, :, None], height, axis=0), 3, axis=2).astype(np.uint8)
    img[:, :, 1] = np.linspace(0, 255, height, dtype=np.float32)[:, None].astype(np.uint8)
    cv2.circle(img, (width // 3, height // 2), height // 4, (20, 10, 40), -1)
    cv2.rectangle(img, (width // 2, height // 5), (width, height // 2), (250, 240, 230), -1)  # to the border
    cv2.line(img, (5, height - 1), (width - 1, height // 3), (0, 0, 0), 1)
    return img


def image(arr: np.ndarray) -> Image.Image:
    return Image.fromarray(arr)


def unit(name: str, **fields) -> pb.ControlUnit:
    return pb.ControlUnit(preprocessor=name, **fields)


def detected(name: str, img: np.ndarray, seed: int = 0, **fields) -> np.ndarray:
    return np.asarray(preprocessors.detect(unit(name, **fields), image(img), seed))


# The extension's resolution rule: the short side to the resolution (cubic up, area down, numpy rounding),
# then edge padding to multiples of 64; the padding is cut off again.
def resized_padded(img: np.ndarray, res: int):
    h, w = img.shape[:2]
    k = res / min(h, w)
    th, tw = int(np.round(h * k)), int(np.round(w * k))
    small = cv2.resize(img, (tw, th), interpolation=cv2.INTER_CUBIC if k > 1 else cv2.INTER_AREA)
    ph, pw = math.ceil(th / 64) * 64 - th, math.ceil(tw / 64) * 64 - tw
    return np.pad(small, [[0, ph], [0, pw], [0, 0]], mode="edge"), th, tw


def rgb(gray: np.ndarray) -> np.ndarray:
    return np.stack([gray] * 3, axis=2)


# -- the list and the parameters ------------------------------------------------------------------------


def test_infos_list_none_first_in_the_extensions_order_with_its_sliders():
    infos = {info.name: info for info in preprocessors.infos()}
    assert list(infos) == NAMES
    assert infos["none"].params == [] and infos["invert"].params == [] and infos["shuffle"].params == []
    canny = [(p.field, p.label, p.default_value, p.min, p.max, p.step) for p in infos["canny"].params]
    assert canny == [("processor_res", "Resolution", 512, 64, 2048, 8),
                     ("threshold_a", "Low Threshold", 100, 1, 255, 1),
                     ("threshold_b", "High Threshold", 200, 1, 255, 1)]

    def first(name):
        p = infos[name].params[-1]
        return p.field, p.label, p.default_value, p.min, p.max, pytest.approx(p.step)

    assert first("blur_gaussian") == ("threshold_a", "Sigma", 9, pytest.approx(0.01), 64, 0.01)
    assert first("scribble_xdog") == ("threshold_a", "XDoG Threshold", 32, 1, 64, 0.01)
    assert first("threshold") == ("threshold_a", "Binarization Threshold", 127, 0, 255, 0.01)
    assert first("tile_resample") == ("threshold_a", "Down Sampling Rate", 1, 1, 8, 0.01)
    assert [p.field for p in infos["lineart_standard"].params] == ["processor_res"]
    assert infos["invert"].label == "invert (from white bg & black line)"
    assert infos["lineart_standard"].label == "lineart_standard (from white bg & black line)"
    assert infos["canny"].label == "canny"


@pytest.mark.parametrize("fields,field", [
    ({"threshold_a": 0}, "params.control[0].threshold_a"),
    ({"threshold_a": 256}, "params.control[0].threshold_a"),
    ({"threshold_b": 300}, "params.control[0].threshold_b"),
    ({"threshold_a": float("nan")}, "params.control[0].threshold_a"),
    ({"processor_res": 32}, "params.control[0].processor_res"),
    ({"processor_res": 4096}, "params.control[0].processor_res"),
    ({"resize_mode": pb.FIT_MODE_LATENT}, "params.control[0].resize_mode"),
])
def test_out_of_range_values_are_refused_naming_the_field(fields, field):
    with pytest.raises(InvalidArgument) as err:
        preprocessors.check(unit("canny", **fields), "params.control[0]")
    assert err.value.message.startswith(field + ":")


def test_unknown_preprocessor_is_refused_naming_the_field():
    with pytest.raises(InvalidArgument) as err:
        preprocessors.check(unit("depth_midas"), "params.control[1]")
    assert err.value.message.startswith("params.control[1].preprocessor: unknown preprocessor 'depth_midas'")


def test_bounds_are_inclusive_and_unread_fields_are_ignored():
    preprocessors.check(unit("canny", threshold_a=1, threshold_b=255, processor_res=2048), "u")
    preprocessors.check(unit("blur_gaussian", threshold_a=0.01), "u")  # the float32 of 0.01 is the minimum
    preprocessors.check(unit("invert", processor_res=5, threshold_a=-1), "u")  # invert reads none of them
    with pytest.raises(InvalidArgument):
        preprocessors.check(unit("blur_gaussian", threshold_a=0.009), "u")


def test_defaults_apply_when_unset():
    img = drawing()
    assert np.array_equal(detected("canny", img), detected("canny", img, processor_res=512, threshold_a=100,
                                                            threshold_b=200))
    assert not np.array_equal(detected("canny", img), detected("canny", img, threshold_a=10, threshold_b=20))


@pytest.mark.parametrize("long,short", [("invert (from white bg & black line)", "invert"),
                                        ("lineart_standard (from white bg & black line)", "lineart_standard"),
                                        ("", "none")])
def test_display_names_stand_for_the_module(long, short):
    assert preprocessors.short_name(long) == short
    preprocessors.check(unit(long), "u")
    img = drawing()
    assert np.array_equal(detected(long, img), detected(short, img))


# -- each recipe ------------------------------------------------------------------------------------------


def test_canny_is_cv2_canny_on_the_padded_resized_image():
    img = drawing()
    padded, th, tw = resized_padded(img, 200)
    assert padded.shape == (256, 320, 3)
    expected = rgb(cv2.Canny(padded, 50, 150))[:th, :tw]
    got = detected("canny", img, processor_res=200, threshold_a=50, threshold_b=150)
    assert got.shape == (200, 300, 3)
    assert np.array_equal(got, expected)
    assert 0 < np.count_nonzero(got) < got.size / 4  # there are edges, not everything is one


def test_canny_enlarges_with_cubic_and_uses_whole_thresholds():
    img = drawing(60, 45)
    padded, th, tw = resized_padded(img, 200)
    assert np.array_equal(detected("canny", img, processor_res=200, threshold_a=80.7, threshold_b=160.2),
                          rgb(cv2.Canny(padded, 80, 160))[:th, :tw])


def test_none_keeps_the_image_and_grey_becomes_rgb():
    img = drawing()
    assert np.array_equal(detected("none", img), img)
    gray = img[:, :, 0].copy()
    assert np.array_equal(np.asarray(preprocessors.detect(unit("none"), Image.fromarray(gray), 0)), rgb(gray))


def test_transparency_is_composited_over_white_as_hwc3():
    rgba = np.dstack([drawing(), np.tile(np.linspace(0, 255, 150).astype(np.uint8), (100, 1))])
    alpha = rgba[:, :, 3:4].astype(np.float32) / 255.0
    expected = rgba[:, :, :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha)
    expected = expected.clip(0, 255).astype(np.uint8)
    assert np.array_equal(np.asarray(preprocessors.detect(unit("none"), Image.fromarray(rgba, "RGBA"), 0)),
                          expected)


def test_invert_at_the_images_own_size():
    img = drawing()
    assert np.array_equal(detected("invert", img, processor_res=64), 255 - img)


def test_blur_gaussian_blurs_the_resized_image_without_padding():
    img = drawing()
    padded, th, tw = resized_padded(img, 128)
    expected = cv2.GaussianBlur(np.ascontiguousarray(padded[:th, :tw]), (0, 0), 3.5)
    assert np.array_equal(detected("blur_gaussian", img, processor_res=128, threshold_a=3.5), expected)


def test_scribble_xdog_thresholds_the_difference_of_gaussians():
    img = drawing()
    padded, th, tw = resized_padded(img, 192)
    f = padded.astype(np.float32)
    dog = (255 - np.min(cv2.GaussianBlur(f, (0, 0), 5.0) - cv2.GaussianBlur(f, (0, 0), 0.5), axis=2))
    dog = dog.clip(0, 255).astype(np.uint8)
    expected = rgb(np.where(2 * (255 - dog) > 20, 255, 0).astype(np.uint8))[:th, :tw]
    got = detected("scribble_xdog", img, processor_res=192, threshold_a=20)
    assert np.array_equal(got, expected) and 0 < np.count_nonzero(got)


def test_threshold_keeps_pixels_whose_every_channel_is_above_it():
    img = drawing()
    padded, th, tw = resized_padded(img, 128)
    expected = rgb(np.where(padded.min(axis=2) > 100, 255, 0).astype(np.uint8))[:th, :tw]
    got = detected("threshold", img, processor_res=128, threshold_a=100)
    assert np.array_equal(got, expected) and 0 < np.count_nonzero(got) < got.size


def test_lineart_standard_normalises_the_dark_line_intensity():
    img = drawing()
    padded, th, tw = resized_padded(img, 160)
    f = padded.astype(np.float32)
    line = np.min(cv2.GaussianBlur(f, (0, 0), 6.0) - f, axis=2).clip(0, 255)
    line = line / max(16, np.median(line[line > 8])) * 127
    expected = rgb(line.clip(0, 255).astype(np.uint8))[:th, :tw]
    got = detected("lineart_standard", img, processor_res=160)
    assert np.array_equal(got, expected)
    assert np.count_nonzero(got) > 0


def test_lineart_standard_of_a_flat_image_is_black():
    flat = np.full((64, 64, 3), 128, dtype=np.uint8)
    assert not detected("lineart_standard", flat, processor_res=64).any()


def test_tile_resample_downsamples_by_the_rate_with_area():
    img = drawing()
    got = detected("tile_resample", img, threshold_a=2.5)
    assert np.array_equal(got, cv2.resize(img, (60, 40), interpolation=cv2.INTER_AREA))
    assert np.array_equal(detected("tile_resample", img, threshold_a=1.05), img)  # under 1.1: kept


def shuffle_recipe(img: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    h, w = img.shape[:2]

    def noise():
        grid = rng.uniform(0, 1, size=(h // 256 + 2, w // 256 + 2, 1))
        big = cv2.resize(grid, (w + 512, h + 512), interpolation=cv2.INTER_CUBIC)[256:256 + h, 256:256 + w]
        return ((big - big.min()) / (big - big.min()).max())[:, :, None]

    flow = np.concatenate([noise() * (w - 1), noise() * (h - 1)], axis=2).astype(np.float32)
    return cv2.remap(img, flow, None, cv2.INTER_LINEAR)


def test_shuffle_works_at_512_and_is_seeded():
    img = drawing()
    padded, th, tw = resized_padded(img, 512)
    got = detected("shuffle", img, seed=5, processor_res=64)  # its resolution is not a parameter
    assert got.shape == (512, 768, 3)
    assert np.array_equal(got, shuffle_recipe(np.ascontiguousarray(padded[:th, :tw]), 5))
    assert np.array_equal(got, detected("shuffle", img, seed=5))
    assert not np.array_equal(got, detected("shuffle", img, seed=6))


# -- the output size: Pixel Perfect and the resize modes ---------------------------------------------------


def test_pixel_perfect_resolution_follows_the_output():
    # A 300x200 image for a 512x768 output: covering it takes the short side to 768, fitting inside to 341.
    assert pixel_perfect_resolution(200, 300, 768, 512, "crop") == 768
    assert pixel_perfect_resolution(200, 300, 768, 512, "resize") == 768
    assert pixel_perfect_resolution(200, 300, 768, 512, "fill") == 341
    assert pixel_perfect_resolution(2, 10000, 64, 64, "fill") == 1  # never 0


@pytest.mark.parametrize("mode,fit", [("crop", pb.FIT_MODE_CROP), ("fill", pb.FIT_MODE_FILL),
                                      ("resize", pb.FIT_MODE_RESIZE)])
def test_pixel_perfect_detects_at_that_resolution_then_fits(mode, fit):
    img = drawing(90, 60)
    res = pixel_perfect_resolution(60, 90, 128, 96, mode)
    got = preprocessors.control_image(unit("canny", resize_mode=fit, pixel_perfect=True, processor_res=512),
                                      image(img), 96, 128, 0)
    assert got.size == (96, 128)
    assert np.array_equal(np.asarray(got), fit_map(detected("canny", img, processor_res=res), 96, 128, mode))


def test_without_pixel_perfect_the_units_resolution_is_used():
    img = drawing(90, 60)
    got = preprocessors.control_image(unit("canny", resize_mode=pb.FIT_MODE_RESIZE, processor_res=64),
                                      image(img), 96, 128, 0)
    expected = fit_map(detected("canny", img, processor_res=64), 96, 128, "resize")
    assert np.array_equal(np.asarray(got), expected)


def thirds(width=300, height=100) -> np.ndarray:
    """Red | green | blue columns, the middle twice as wide as each side."""
    img = np.zeros((height, width, 3), dtype=np.uint8)
    img[:, : width // 4] = (255, 0, 0)
    img[:, width // 4: 3 * width // 4] = (0, 255, 0)
    img[:, 3 * width // 4:] = (0, 0, 255)
    return img


def fitted(img: np.ndarray, width: int, height: int, fit: int) -> np.ndarray:
    out = preprocessors.control_image(unit("none", resize_mode=fit), image(img), width, height, 0)
    assert out.size == (width, height)
    return np.asarray(out)


def test_crop_and_resize_is_the_default_and_keeps_the_centre():
    out = fitted(thirds(), 100, 100, pb.FIT_MODE_UNSPECIFIED)
    assert (out == (0, 255, 0)).all()  # the 300x100 image's centre 100x100 is all green
    assert np.array_equal(out, fitted(thirds(), 100, 100, pb.FIT_MODE_CROP))


def test_just_resize_stretches():
    out = fitted(thirds(), 100, 100, pb.FIT_MODE_RESIZE)
    assert (out[:, :20] == (255, 0, 0)).all() and (out[:, 30:70] == (0, 255, 0)).all()
    assert (out[:, 80:] == (0, 0, 255)).all()


def test_resize_and_fill_centres_it_on_the_median_border_colour():
    img = np.full((50, 100, 3), (10, 20, 30), dtype=np.uint8)
    img[20:30, 40:60] = (200, 100, 0)
    out = fitted(img, 100, 100, pb.FIT_MODE_FILL)
    assert (out[:25] == (10, 20, 30)).all() and (out[75:] == (10, 20, 30)).all()
    assert np.array_equal(out[25:75], img)


def test_detect_ignores_the_resize_mode_and_keeps_its_own_size():
    img = drawing()
    plain = preprocessors.detect(unit("canny", processor_res=128), image(img), 0)
    fill = preprocessors.detect(unit("canny", processor_res=128, resize_mode=pb.FIT_MODE_FILL),
                                image(img), 0)
    assert plain.size == fill.size == (192, 128)


def test_pixel_perfect_ignores_the_units_resolution():
    preprocessors.check(unit("canny", pixel_perfect=True, processor_res=10), "u")
    with pytest.raises(InvalidArgument):
        preprocessors.check(unit("canny", processor_res=10), "u")
    img = drawing()  # with no output size to follow, detect works at the default
    assert np.array_equal(detected("canny", img, pixel_perfect=True, processor_res=10),
                          detected("canny", img))


def test_an_elongated_image_works_at_a_bounded_resolution():
    strip = np.tile(np.linspace(0, 255, 2000).astype(np.uint8)[None, :, None], (4, 1, 3))
    got = detected("threshold", strip, processor_res=2048)  # its short side at 2048 would be 2048x1024000
    assert got.shape[0] * got.shape[1] <= preprocessors.MAX_WORK_PIXELS
    assert got.shape[0] == int(4 * (preprocessors.MAX_WORK_PIXELS / 8000) ** 0.5)
