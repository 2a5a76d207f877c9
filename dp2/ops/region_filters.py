"""Classic filters on uint8 HWC arrays with NumPy/OpenCV: the CPU fast path of the region stage.

The torch versions in :mod:`dp2.generation.classic` follow the generator contract (float
[N, 3, H, W] in [-1, 1]); these do the same on the image's own uint8 pixels, without
torch's per-call overhead, which on a 2-core CPU cost more than the filter itself
(about 8 ms per face for the float conversions alone). Everything here is pure:
arrays in, arrays out, no state.

Convention: regions are float ``(x0, y0, x1, y1)`` in crop pixels, pixel ``k`` spanning
``[k, k + 1)``; a pixel belongs to a region when its centre ``k + 0.5`` lies inside.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

__all__ = ["blur_uint8", "pixelate_uint8", "composite_uint8"]


def blur_uint8(crop: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of a uint8 [H, W, C] crop with reflect-101 borders.

    Sigmas above 3 px blur an area-downscaled copy (same look, a fraction of the cost:
    the kernel shrinks with the image) and upscale it bilinearly.

    >>> a = np.zeros((20, 20, 3), np.uint8); a[8:12, 8:12] = 255
    >>> b = blur_uint8(a, 2.0)
    >>> int(b[10, 10, 0]) < 255 and int(b[5, 10, 0]) > 0
    True
    """
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    h, w = crop.shape[:2]
    factor = sigma / 3.0
    if factor > 1.5 and min(h, w) / factor >= 2:
        small_wh = (max(1, round(w / factor)), max(1, round(h / factor)))
        small = cv2.resize(crop, small_wh, interpolation=cv2.INTER_AREA)
        small = cv2.GaussianBlur(small, (0, 0), sigma / factor, borderType=cv2.BORDER_REFLECT_101)
        out = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    else:
        radius = max(1, math.ceil(3 * sigma))
        # Reflect-101 padding needs the kernel radius below the side (as the torch blur caps it).
        kx, ky = (min(2 * radius + 1, 2 * n - 1) for n in (w, h))
        out = cv2.GaussianBlur(crop, (kx, ky), sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT_101)
    return out.reshape(crop.shape)


def pixelate_uint8(crop: np.ndarray, region_xyxy: tuple[float, float, float, float], block_px: float) -> np.ndarray:
    """Mosaic of the region's bounding pixels: blocks of ``block_px`` (at least 1) aligned to the region.

    Each block is the mean of its pixels; partial blocks at the far edges are means of
    what they cover. Pixels outside the region's bounding box are returned unchanged.

    >>> a = np.arange(64, dtype=np.uint8).reshape(8, 8, 1).repeat(3, 2)
    >>> b = pixelate_uint8(a, (0, 0, 8, 8), 4)
    >>> len(np.unique(b[..., 0]))
    4
    """
    out = crop.copy()
    h, w = crop.shape[:2]
    x0, y0, x1, y1 = _pixel_span(region_xyxy, h, w)
    if x1 <= x0 or y1 <= y0:
        return out
    block = max(1.0, float(block_px))
    region = crop[y0:y1, x0:x1]
    rh, rw = region.shape[:2]
    nh, nw = max(1, math.ceil(rh / block - 1e-6)), max(1, math.ceil(rw / block - 1e-6))
    # Pad to whole blocks by edge replication so partial blocks average only real pixels' values.
    ph, pw = round(nh * block), round(nw * block)
    padded = cv2.copyMakeBorder(region, 0, max(0, ph - rh), 0, max(0, pw - rw), cv2.BORDER_REPLICATE)
    small = cv2.resize(padded, (nw, nh), interpolation=cv2.INTER_AREA)
    big = cv2.resize(small, (padded.shape[1], padded.shape[0]), interpolation=cv2.INTER_NEAREST)
    out[y0:y1, x0:x1] = big.reshape(padded.shape)[:rh, :rw]
    return out


def composite_uint8(crop: np.ndarray, filtered: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``crop`` where ``alpha == 0``, ``filtered`` where it is 1, rounded blend between (uint8 [H, W, C])."""
    hard = (alpha == 0) | (alpha == 1)
    if bool(hard.all()):
        return np.where(alpha[..., None] > 0, filtered, crop)
    a = alpha[..., None]
    blended = crop.astype(np.float32) * (1 - a) + filtered.astype(np.float32) * a
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def _pixel_span(region_xyxy, h: int, w: int) -> tuple[int, int, int, int]:
    """Half-open pixel index span of the pixels whose centres lie in the region, clipped to [0, w) x [0, h)."""
    x0, y0, x1, y1 = (float(v) for v in region_xyxy)
    return (max(0, math.ceil(x0 - 0.5)), max(0, math.ceil(y0 - 0.5)),
            min(w, math.floor(x1 - 0.5) + 1), min(h, math.floor(y1 - 0.5) + 1))
