"""sd-webui-controlnet's weight-free detectors, on HxWxC uint8 arrays (RGB), as the extension computes them.

Each takes the image, the resolution it works at (the short side), the unit's two parameters and the
request's seed, and returns its map. Which image a detector works on follows the extension exactly:
most resize to the resolution and pad to multiples of 64 (`resize_with_pad`); some drop the padding
before they run (blur, shuffle), the others after (edges computed on the padded image differ at the
border, so the order matters).
"""

from __future__ import annotations

import cv2
import numpy as np


def hwc3(x: np.ndarray) -> np.ndarray:
    """Three channels: grey repeated, alpha composited over white (in float, then truncated)."""
    if x.ndim == 2:
        x = x[:, :, None]
    channels = x.shape[2]
    if channels == 3:
        return x
    if channels == 1:
        return np.concatenate([x, x, x], axis=2)
    color = x[:, :, :3].astype(np.float32)
    alpha = x[:, :, 3:4].astype(np.float32) / 255.0
    return (color * alpha + 255.0 * (1.0 - alpha)).clip(0, 255).astype(np.uint8)


def _pad64(x: int) -> int:
    return int(np.ceil(float(x) / 64.0) * 64 - x)


class Padded:
    """An image resized so its short side is the resolution, then edge-padded to multiples of 64."""

    def __init__(self, img: np.ndarray, resolution: int):
        img = hwc3(img)
        height, width = img.shape[:2]
        k = float(resolution) / float(min(height, width))
        # Enlarging is cubic, shrinking is area-averaged.
        interpolation = cv2.INTER_CUBIC if k > 1 else cv2.INTER_AREA
        self.height = int(np.round(float(height) * k))
        self.width = int(np.round(float(width) * k))
        resized = cv2.resize(img, (self.width, self.height), interpolation=interpolation)
        pad = [[0, _pad64(self.height)], [0, _pad64(self.width)], [0, 0]]
        self.image = np.ascontiguousarray(np.pad(resized, pad, mode="edge"))

    def unpad(self, x: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(x[: self.height, : self.width])


def resize_with_pad(img: np.ndarray, resolution: int) -> Padded:
    return Padded(img, resolution)


def none(img, res, a, b, seed):
    return hwc3(img)


def canny(img, res, low, high, seed):
    padded = resize_with_pad(img, res)
    edges = cv2.Canny(padded.image, int(low), int(high))
    return padded.unpad(cv2.cvtColor(edges, cv2.COLOR_GRAY2RGB))


def invert(img, res, a, b, seed):
    return 255 - hwc3(img)


def blur_gaussian(img, res, sigma, b, seed):
    padded = resize_with_pad(img, res)
    return cv2.GaussianBlur(padded.unpad(padded.image), (0, 0), float(sigma))


def scribble_xdog(img, res, thr, b, seed):
    padded = resize_with_pad(img, res)
    x = padded.image.astype(np.float32)
    fine, coarse = cv2.GaussianBlur(x, (0, 0), 0.5), cv2.GaussianBlur(x, (0, 0), 5.0)
    dog = (255 - np.min(coarse - fine, axis=2)).clip(0, 255).astype(np.uint8)
    result = np.zeros_like(padded.image)
    result[2 * (255 - dog) > thr] = 255
    return padded.unpad(result)


def _noise_disk(rng: np.random.Generator, height: int, width: int, f: int) -> np.ndarray:
    """Smooth noise in 0..1: a coarse grid (one cell per f pixels) cubic-upscaled, cropped, normalised."""
    coarse = rng.uniform(low=0, high=1, size=(height // f + 2, width // f + 2, 1))
    noise = cv2.resize(coarse, (width + 2 * f, height + 2 * f), interpolation=cv2.INTER_CUBIC)
    noise = noise[f: f + height, f: f + width]
    noise -= np.min(noise)
    noise /= np.max(noise)
    return noise[:, :, None]


def shuffle(img, res, a, b, seed):
    padded = resize_with_pad(img, res)
    img = padded.unpad(padded.image)
    height, width = img.shape[:2]
    # The extension seeds numpy's global generator from the request; a Generator of our own gives the
    # same guarantee (same seed, same map) without touching global state.
    rng = np.random.default_rng(seed)
    x = _noise_disk(rng, height, width, 256) * float(width - 1)
    y = _noise_disk(rng, height, width, 256) * float(height - 1)
    flow = np.concatenate([x, y], axis=2).astype(np.float32)
    return cv2.remap(img, flow, None, cv2.INTER_LINEAR)


def tile_resample(img, res, rate, b, seed):
    img = hwc3(img)
    if rate < 1.1:  # the extension's cut-off: rates this close to 1 keep the image as it is
        return img
    height, width = img.shape[:2]
    size = (int(float(width) / float(rate)), int(float(height) / float(rate)))
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA)


def lineart_standard(img, res, a, b, seed):
    padded = resize_with_pad(img, res)
    x = padded.image.astype(np.float32)
    intensity = np.min(cv2.GaussianBlur(x, (0, 0), 6.0) - x, axis=2).clip(0, 255)
    strong = intensity[intensity > 8]
    # The median of no pixels is NaN, and the extension's max(16, NaN) is 16.
    intensity /= max(16, np.median(strong)) if strong.size else 16
    intensity *= 127
    return hwc3(padded.unpad(intensity.clip(0, 255).astype(np.uint8)))


def threshold(img, res, thr, b, seed):
    padded = resize_with_pad(img, res)
    result = np.zeros_like(padded.image)
    result[np.min(padded.image, axis=2) > thr] = 255
    return padded.unpad(result)
