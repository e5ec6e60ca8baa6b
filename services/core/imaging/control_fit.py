"""A control map fitted to the output size as sd-webui-controlnet fits it, and its "Pixel Perfect" resolution.

The resize modes: "resize" (Just Resize) stretches; "crop" (Crop and Resize) scales to cover and keeps
the centre; "fill" (Resize and Fill) scales to fit inside, centred on the median colour of the map's
border. Every scaling is the extension's "high quality" one: nearest for maps of a few colours
(segmentations), area when shrinking, cubic when enlarging, and black-and-white maps re-binarised
(Otsu) after, thin edges thinned back to one pixel.
"""

from __future__ import annotations

import cv2
import numpy as np

from .annotators import hwc3


def _round(x: float) -> int:
    return int(np.round(x))  # numpy's rounding (half to even), as the extension's


def pixel_perfect_resolution(height: int, width: int, target_height: int, target_width: int,
                             mode: str) -> int:
    """The preprocessor resolution that makes the map's short side land on the output at 1:1."""
    k_h, k_w = target_height / float(height), target_width / float(width)
    k = min(k_h, k_w) if mode == "fill" else max(k_h, k_w)
    # At least 1: an extreme aspect ratio fitted inside a small output would round to 0.
    return max(1, _round(k * float(min(height, width))))


def fit_map(detected: np.ndarray, width: int, height: int, mode: str) -> np.ndarray:
    """The map at width x height by the resize mode ("resize", "crop" or "fill"), HxWx3 uint8."""
    detected = hwc3(detected)
    if mode == "resize":
        return high_quality_resize(detected, width, height)
    old_h, old_w = float(detected.shape[0]), float(detected.shape[1])
    k_h, k_w = height / old_h, width / old_w
    if mode == "fill":
        k = min(k_h, k_w)
        borders = np.concatenate([detected[0], detected[-1], detected[:, 0], detected[:, -1]], axis=0)
        background = np.tile(np.median(borders, axis=0).astype(np.uint8)[None, None], [height, width, 1])
        scaled = high_quality_resize(detected, _round(old_w * k), _round(old_h * k))
        new_h, new_w = scaled.shape[:2]
        top, left = max(0, (height - new_h) // 2), max(0, (width - new_w) // 2)
        background[top: top + new_h, left: left + new_w] = scaled
        return background
    k = max(k_h, k_w)
    scaled = high_quality_resize(detected, _round(old_w * k), _round(old_h * k))
    new_h, new_w = scaled.shape[:2]
    top, left = max(0, (new_h - height) // 2), max(0, (new_w - width) // 2)
    return np.ascontiguousarray(scaled[top: top + height, left: left + width])


def _color_count(x: np.ndarray) -> int:
    """How many distinct colours an RGB map has: each packed into one integer, sorted, the changes counted
    (np.unique takes seconds on a large map, numpy 2.4's hashing path; a sort takes milliseconds)."""
    packed = (x[:, :, 0].astype(np.uint32) << 16) | (x[:, :, 1].astype(np.uint32) << 8) | x[:, :, 2]
    ordered = np.sort(packed, axis=None)
    return 1 + int(np.count_nonzero(ordered[1:] != ordered[:-1]))


def high_quality_resize(x: np.ndarray, width: int, height: int) -> np.ndarray:
    """The extension's resize of control maps (binary, few-colour and one-pixel-edge maps kept so)."""
    if x.shape[0] == height and x.shape[1] == width:
        return x
    smaller = width * height < x.shape[0] * x.shape[1]
    bigger = width * height > x.shape[0] * x.shape[1]
    colors = _color_count(x)
    binary = colors == 2 and np.min(x) < 16 and np.max(x) > 240
    one_pixel_edge = False
    if binary:
        kernel = np.ones((3, 3), dtype=np.uint8)
        opened = cv2.dilate(cv2.erode(x, kernel, iterations=1), kernel, iterations=1)
        # Mostly thin strokes (what an opening removes): edges, thinned again after scaling.
        one_pixel_edge = np.count_nonzero(opened < x) * 2 > np.count_nonzero(x > 127)
    if 2 < colors < 200:
        interpolation = cv2.INTER_NEAREST
    elif smaller:
        interpolation = cv2.INTER_AREA
    else:
        interpolation = cv2.INTER_CUBIC
    y = cv2.resize(x, (width, height), interpolation=interpolation)
    if not binary:
        return y
    y = np.mean(y.astype(np.float32), axis=2).clip(0, 255).astype(np.uint8)
    if one_pixel_edge:
        y = _peaks(y)
        _, y = cv2.threshold(y, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        y = thin(y, prune=bigger)
    else:
        _, y = cv2.threshold(y, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return np.stack([y] * 3, axis=2)


# Non-maximum suppression along the four directions: a pixel stays where it is the maximum of its
# 3-pixel line in any of them.
_LINES = [np.array(k, dtype=np.uint8) for k in (
    [[0, 0, 0], [1, 1, 1], [0, 0, 0]], [[0, 1, 0], [0, 1, 0], [0, 1, 0]],
    [[1, 0, 0], [0, 1, 0], [0, 0, 1]], [[0, 0, 1], [0, 1, 0], [1, 0, 0]])]


def _peaks(x: np.ndarray) -> np.ndarray:
    y = np.zeros_like(x)
    for line in _LINES:
        np.putmask(y, cv2.dilate(x, kernel=line) == x, x)
    return y


def _rotations(*kernels: list) -> list[np.ndarray]:
    raw = [np.array(k, dtype=np.int32) for k in kernels]
    return [np.rot90(k, k=turns, axes=(0, 1)) for turns in range(4) for k in raw]


# Hit-or-miss patterns (1 = set, -1 = clear, 0 = either) of Lvmin Zhang's edge thinning: a pixel on
# the outer side of a stroke thicker than one pixel, and (pruning) the last pixel of a one-pixel spur.
_THINNING = _rotations([[-1, -1, -1], [0, 1, 0], [1, 1, 1]], [[0, -1, -1], [1, 1, -1], [0, 1, 0]])
_PRUNING = _rotations([[-1, -1, -1], [-1, 1, -1], [0, 0, -1]], [[-1, -1, -1], [-1, 1, -1], [-1, 0, 0]])


def _remove(x: np.ndarray, patterns: list[np.ndarray]) -> bool:
    """Clear, pattern after pattern, the pixels each matches; whether any was cleared."""
    changed = False
    for pattern in patterns:
        hits = np.where(cv2.morphologyEx(x, cv2.MORPH_HITMISS, pattern) > 127)
        x[hits] = 0
        changed = changed or hits[0].shape[0] > 0
    return changed


def thin(x: np.ndarray, prune: bool = True) -> np.ndarray:
    """Strokes of a binary map thinned to one pixel (at most 32 passes), spurs pruned once if asked."""
    for _ in range(32):
        if not _remove(x, _THINNING):
            break
    if prune:
        _remove(x, _PRUNING)
    return x
