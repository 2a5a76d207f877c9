"""Classic anonymizers (blur, pixelation, mask-out) behind the generator contract.

They follow :class:`dp2.generation.base.Generator`: ``forward(img, mask)`` with
``img`` float [N, 3, H, W] in [-1, 1] and ``mask`` float [N, 1, H, W] (1 = keep,
0 = anonymize). Pixels with ``mask == 1`` are returned unchanged, so they double
as stand-ins for GANs in tests. Filter strength can be absolute (DeepPrivacy2's
dummy generators on 256x256 crops: ``GaussianBlur(sigma=7)``) or relative to
the size of the region to anonymize (``sigma_fraction``, ``blocks``), which is what
the native-resolution configs use so a 20 px face and a 400 px face are equally
unrecognisable. ``filter_uint8`` is the same filter on uint8 HWC pixels (NumPy/OpenCV),
the CPU fast path of :class:`dp2.stages.RegionFilterStage`.

**Floors: a classic filter must destroy identity whatever the face size.** Measured on
../shared/wider_dev (474 faces; ``score.py`` counts a face as covered when half of its box's
pixels changed by more than 12 levels) with dp2's default detections (``bench/wider_coverage.py``;
mask-out with the same detections: 125/168, 103/104, 112/115, 86/87 by size bucket <16, 16-32,
32-64, >=64 px):

* Pixelation with a fixed number of blocks per region leaves small faces as they were: 16
  blocks over a 13 px region are sub-pixel, and at 30-60 px the 3-4 px blocks keep features
  readable (``pixelation16`` covered 72, 39, 56, 42 faces before the floor). A block is now
  never smaller than ``MIN_BLOCK_PX`` (10 px; ``pixelation16``: 117, 93, 104, 64, at least 74%
  of mask-out in every bucket; a 6 px floor left 88/103 at 16-32 px and 52/86 at 64 px and up)
  nor than the region's side / ``blocks``, and ``blocks`` may not exceed ``MAX_BLOCKS`` (16:
  DeepPrivacy2's finest; Harmon's 1973 block portraits show famous faces stay recognisable at
  about 16 blocks across).
* Gaussian blur with sigma 0.15 x the region left low-contrast faces within 12 levels of the
  original (with the same detections: 112/168, 280/306 of 16 px and up); 0.5 x with half the
  region as context gave 117 and 288. The face default is sigma = 1.0 x the region's longer side
  over a context of one region around it, so the blur mixes the surroundings into the face (121
  and 298, within 3 faces of mask-out). The blur never drops below ``MIN_SIGMA_PX`` (4 px), and
  the face stage refuses ``sigma_fraction`` under ``FACE_MIN_SIGMA_FRACTION`` (0.25).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ..ops.region_filters import blur_uint8, pixelate_uint8
from .base import Generator

__all__ = ["GaussianBlur", "Pixelate", "MaskOut", "Identity", "MIN_SIGMA_PX", "MIN_SIGMA_FRACTION",
           "FACE_MIN_SIGMA_FRACTION", "MIN_BLOCK_PX", "MAX_BLOCKS"]


def _region_extent(mask: torch.Tensor) -> torch.Tensor:
    """Per-sample (height, width) of the bounding box of ``mask == 0``; [N, 2] float."""
    hole = mask[:, 0] < 0.5  # [N, H, W]
    rows = hole.any(dim=2)
    cols = hole.any(dim=1)
    heights = rows.sum(dim=1).clamp(min=1)
    widths = cols.sum(dim=1).clamp(min=1)
    return torch.stack([heights, widths], dim=1).float()


def _region_bbox(mask_hw: torch.Tensor) -> tuple[int, int, int, int] | None:
    """(y0, y1, x0, x1) half-open bounding box of ``mask_hw < 0.5`` or None if empty."""
    hole = mask_hw < 0.5
    rows = torch.nonzero(hole.any(dim=1)).flatten()
    cols = torch.nonzero(hole.any(dim=0)).flatten()
    if rows.numel() == 0:
        return None
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def _composite(img: torch.Tensor, filtered: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return img * mask + filtered * (1 - mask)


def gaussian_kernel1d(sigma: float, radius: int, device=None, dtype=torch.float32) -> torch.Tensor:
    x = torch.arange(-radius, radius + 1, device=device, dtype=dtype)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def gaussian_blur(img: torch.Tensor, sigma: float, kernel_size: int | None = None) -> torch.Tensor:
    """Separable Gaussian blur of a float [N, C, H, W] tensor with reflect padding.

    Args:
        img: float [N, C, H, W].
        sigma: standard deviation in pixels (> 0).
        kernel_size: odd kernel size; default ``2 * ceil(3 * sigma) + 1``, capped to the image.
    """
    n, c, h, w = img.shape
    if kernel_size is None:
        kernel_size = 2 * math.ceil(3 * sigma) + 1
    radius_y = min(kernel_size // 2, h - 1)
    radius_x = min(kernel_size // 2, w - 1)
    if img.device.type == "cpu" and img.dtype == torch.float32 and c <= 4:
        return _gaussian_blur_cv2(img, sigma, radius_y, radius_x)
    out = img
    if radius_x > 0:
        k = gaussian_kernel1d(sigma, radius_x, img.device, img.dtype).view(1, 1, 1, -1).repeat(c, 1, 1, 1)
        out = F.conv2d(F.pad(out, (radius_x, radius_x, 0, 0), mode="reflect"), k, groups=c)
    if radius_y > 0:
        k = gaussian_kernel1d(sigma, radius_y, img.device, img.dtype).view(1, 1, -1, 1).repeat(c, 1, 1, 1)
        out = F.conv2d(F.pad(out, (0, 0, radius_y, radius_y), mode="reflect"), k, groups=c)
    return out


def _gaussian_blur_cv2(img: torch.Tensor, sigma: float, radius_y: int, radius_x: int) -> torch.Tensor:
    """:func:`gaussian_blur` on the CPU with OpenCV: the same kernels and reflect padding (equal up to
    float rounding), without torch's per-call overhead (its first conv2d alone takes about a second)."""
    import cv2

    one = np.ones(1, dtype=np.float32)
    kx = gaussian_kernel1d(sigma, radius_x).numpy() if radius_x > 0 else one
    ky = gaussian_kernel1d(sigma, radius_y).numpy() if radius_y > 0 else one
    out = torch.empty_like(img)
    for i in range(img.shape[0]):
        hwc = np.ascontiguousarray(img[i].permute(1, 2, 0).numpy())
        blurred = cv2.sepFilter2D(hwc, cv2.CV_32F, kx, ky, borderType=cv2.BORDER_REFLECT_101)
        out[i] = torch.from_numpy(blurred.reshape(hwc.shape)).permute(2, 0, 1)
    return out


MIN_SIGMA_PX = 4.0
MIN_SIGMA_FRACTION = 0.05
FACE_MIN_SIGMA_FRACTION = 0.25
MIN_BLOCK_PX = 10.0
MAX_BLOCKS = 16


class GaussianBlur(Generator):
    """Gaussian blur of the region to anonymize.

    Args:
        sigma: absolute standard deviation in pixels (DeepPrivacy2's dummy generator: 7 with
            kernel ``min(21, W)``), or None to use ``sigma_fraction``; at least ``min_sigma_px``.
        sigma_fraction: standard deviation as a fraction of the region's longer side, at least
            ``MIN_SIGMA_FRACTION`` (a whole-body region: about a third of the face); the face stage
            (:class:`dp2.stages.RegionFilterStage`) requires ``FACE_MIN_SIGMA_FRACTION``.
        min_sigma_px: floor on the standard deviation in pixels (at least ``MIN_SIGMA_PX``),
            so small faces are blurred as hard as large ones.
        kernel_size: odd kernel size for absolute sigma (default 6 sigma + 1, capped to the crop).

    Raises:
        ValueError: a strength that would leave faces recognisable (see the module docstring).
    """

    def __init__(self, *, sigma: float | None = None, sigma_fraction: float = 1.0,
                 min_sigma_px: float = MIN_SIGMA_PX, kernel_size: int | None = None) -> None:
        super().__init__()
        if not min_sigma_px >= MIN_SIGMA_PX:  # also refuses NaN
            raise ValueError(f"min_sigma_px must be >= {MIN_SIGMA_PX} px (weaker blurs leave small faces "
                             f"recognisable), got {min_sigma_px}")
        if sigma is not None and not sigma >= min_sigma_px:
            raise ValueError(f"sigma must be >= min_sigma_px = {min_sigma_px} px (weaker blurs leave faces "
                             f"recognisable), got {sigma}")
        if not MIN_SIGMA_FRACTION <= sigma_fraction <= 10:
            raise ValueError(f"sigma_fraction must be in [{MIN_SIGMA_FRACTION}, 10] of the region's side "
                             f"(weaker blurs leave eyes and mouth visible), got {sigma_fraction}")
        self.sigma = sigma
        self.sigma_fraction = sigma_fraction
        self.min_sigma_px = float(min_sigma_px)
        self.kernel_size = kernel_size

    def extra_repr(self) -> str:
        return (f"sigma={self.sigma}, sigma_fraction={self.sigma_fraction}, min_sigma_px={self.min_sigma_px}, "
                f"kernel_size={self.kernel_size}")

    def region_sigma(self, region_side: float) -> float:
        """Standard deviation (px) used for a region whose longer side is ``region_side`` px."""
        if self.sigma is not None:
            return self.sigma
        return max(self.min_sigma_px, region_side * self.sigma_fraction)

    def _blur_one(self, img: torch.Tensor, sigma: float) -> torch.Tensor:
        # Large sigmas: blur a downscaled copy (same look, a fraction of the cost).
        _, _, h, w = img.shape
        factor = sigma / 4.0
        if self.sigma is None and factor > 2 and min(h, w) / factor >= 4:
            small_hw = (max(1, round(h / factor)), max(1, round(w / factor)))
            small = F.interpolate(img, size=small_hw, mode="area")
            small = gaussian_blur(small, sigma / factor)
            return F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
        return gaussian_blur(img, sigma, self.kernel_size)

    def forward(self, img, mask, latent=None, **conditions):
        if self.sigma is not None:
            kernel = self.kernel_size if self.kernel_size is not None else min(21, img.shape[-1] | 1)
            return _composite(img, gaussian_blur(img, self.sigma, kernel), mask)
        extents = _region_extent(mask)
        outs = [self._blur_one(img[i : i + 1], self.region_sigma(float(extents[i].max())))
                for i in range(img.shape[0])]
        return _composite(img, torch.cat(outs), mask)

    def filter_uint8(self, crop: np.ndarray, region_xyxy) -> np.ndarray:
        """The blur on a uint8 [H, W, 3] crop holding the region (float xyxy in crop pixels)."""
        side = max(region_xyxy[2] - region_xyxy[0], region_xyxy[3] - region_xyxy[1])
        return blur_uint8(crop, self.region_sigma(float(side)))


class Pixelate(Generator):
    """Pixelation (mosaic) of the region to anonymize.

    Args:
        blocks: number of blocks along the region's longer side (DeepPrivacy2: 8 or 16 over the
            crop), at most ``MAX_BLOCKS``; fewer where blocks would be under ``min_block_px``.
        min_block_px: floor on the block side in pixels (at least ``MIN_BLOCK_PX``).
        align_to_region: place the block grid on the region to anonymize (native-resolution use);
            if False, pixelate the whole crop to ``blocks x blocks`` like DeepPrivacy2's generator.

    Raises:
        ValueError: settings that would leave faces recognisable (see the module docstring).
    """

    def __init__(self, *, blocks: int = 8, min_block_px: float = MIN_BLOCK_PX, align_to_region: bool = True) -> None:
        super().__init__()
        if isinstance(blocks, bool) or not isinstance(blocks, int) or not 1 <= blocks <= MAX_BLOCKS:
            raise ValueError(f"blocks must be an integer in [1, {MAX_BLOCKS}] (finer mosaics leave faces "
                             f"recognisable), got {blocks!r}")
        if not min_block_px >= MIN_BLOCK_PX:
            raise ValueError(f"min_block_px must be >= {MIN_BLOCK_PX} px (smaller blocks leave small faces "
                             f"recognisable), got {min_block_px}")
        self.blocks = blocks
        self.min_block_px = float(min_block_px)
        self.align_to_region = align_to_region

    def extra_repr(self) -> str:
        return f"blocks={self.blocks}, min_block_px={self.min_block_px}, align_to_region={self.align_to_region}"

    def block_px(self, region_side: float) -> float:
        """Block side (px) for a region whose longer side is ``region_side`` px."""
        return max(self.min_block_px, region_side / self.blocks)

    def forward(self, img, mask, latent=None, **conditions):
        if not self.align_to_region:
            small = F.interpolate(img, size=(self.blocks, self.blocks), mode="bilinear", align_corners=True)
            return _composite(img, F.interpolate(small, size=img.shape[-2:], mode="bilinear", align_corners=True), mask)
        out = img.clone()
        for i in range(img.shape[0]):
            bbox = _region_bbox(mask[i, 0])
            if bbox is None:
                continue
            y0, y1, x0, x1 = bbox
            region = img[i : i + 1, :, y0:y1, x0:x1]
            h, w = region.shape[-2:]
            block = self.block_px(max(h, w))
            small_hw = (max(1, math.ceil(h / block - 1e-6)), max(1, math.ceil(w / block - 1e-6)))
            padded_hw = (round(small_hw[0] * block), round(small_hw[1] * block))
            padded = F.pad(region, (0, max(0, padded_hw[1] - w), 0, max(0, padded_hw[0] - h)), mode="replicate")
            small = F.interpolate(padded, size=small_hw, mode="area")
            out[i : i + 1, :, y0:y1, x0:x1] = F.interpolate(small, size=padded.shape[-2:], mode="nearest")[..., :h, :w]
        return _composite(img, out, mask)

    def filter_uint8(self, crop: np.ndarray, region_xyxy) -> np.ndarray:
        """The mosaic on a uint8 [H, W, 3] crop, blocks aligned to the region (float xyxy in crop pixels)."""
        side = max(region_xyxy[2] - region_xyxy[0], region_xyxy[3] - region_xyxy[1])
        return pixelate_uint8(crop, region_xyxy, self.block_px(float(side)))


class MaskOut(Generator):
    """Fill the region with a constant colour or noise.

    Args:
        fill: ``"black"`` (0), ``"grey"`` (what DeepPrivacy2's "constant" mask-out paints: 0 in
            [-1, 1], i.e. 128), ``"white"``, an (r, g, b) tuple in 0..255, or ``"noise"``.
        seed: seed for ``"noise"`` (deterministic output).
    """

    _NAMED = {"black": (0, 0, 0), "grey": (127.5, 127.5, 127.5), "gray": (127.5, 127.5, 127.5), "white": (255, 255, 255)}

    def __init__(self, *, fill: str | tuple[float, float, float] = "black", seed: int = 0) -> None:
        super().__init__()
        if isinstance(fill, str) and fill not in self._NAMED and fill != "noise":
            raise ValueError(f"fill must be one of {sorted(self._NAMED) + ['noise']} or an (r, g, b) tuple, got {fill!r}")
        if not isinstance(fill, str):
            if not (isinstance(fill, (list, tuple)) and len(fill) == 3
                    and all(isinstance(v, (int, float)) and 0 <= v <= 255 for v in fill)):
                raise ValueError(f"fill must be a name or an (r, g, b) tuple of values in 0..255, got {fill!r}")
        self.fill = tuple(fill) if isinstance(fill, (list, tuple)) else fill
        self.seed = seed

    def extra_repr(self) -> str:
        return f"fill={self.fill!r}"

    def forward(self, img, mask, latent=None, **conditions):
        if self.fill == "noise":
            gen = torch.Generator(device="cpu").manual_seed(self.seed)
            filled = (torch.rand(img.shape, generator=gen) * 2 - 1).to(img)
        else:
            rgb = self._NAMED[self.fill] if isinstance(self.fill, str) else self.fill
            value = torch.tensor(rgb, dtype=img.dtype, device=img.device).view(1, 3, 1, 1) / 127.5 - 1
            filled = value.expand_as(img)
        return _composite(img, filled, mask)

    def filter_uint8(self, crop: np.ndarray, region_xyxy) -> np.ndarray:
        """The fill on a uint8 [H, W, 3] crop (same values as :meth:`forward` after rounding)."""
        if self.fill == "noise":
            gen = torch.Generator(device="cpu").manual_seed(self.seed)
            noise = torch.rand((1, crop.shape[2], crop.shape[0], crop.shape[1]), generator=gen) * 2 - 1
            return ((noise[0].permute(1, 2, 0).numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8)
        rgb = self._NAMED[self.fill] if isinstance(self.fill, str) else self.fill
        # forward paints rgb / 127.5 - 1, which the stage maps back with round((v + 1) * 127.5).
        values = np.rint((np.asarray(rgb, np.float32) / np.float32(127.5) - 1 + 1) * np.float32(127.5))
        out = np.empty_like(crop)
        out[...] = values.clip(0, 255).astype(np.uint8)
        return out


class Identity(Generator):
    """Returns its input: for tests and for ``--vd``-style debugging."""

    def forward(self, img, mask, latent=None, **conditions):
        return img
