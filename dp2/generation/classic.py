"""Classic anonymizers (blur, pixelation, mask-out) behind the generator contract.

They follow :class:`dp2.generation.base.Generator`: ``forward(img, mask)`` with
``img`` float [N, 3, H, W] in [-1, 1] and ``mask`` float [N, 1, H, W] (1 = keep,
0 = anonymize). Pixels with ``mask == 1`` are returned unchanged, so they double
as stand-ins for GANs in tests. Filter strength can be absolute (DeepPrivacy2's
dummy generators on 256x256 crops: ``GaussianBlur(sigma=7)``) or relative to
the size of the region to anonymize (``sigma_fraction``), which is what the
native-resolution configs use so a 20 px face and a 400 px face are equally
unrecognisable.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from .base import Generator

__all__ = ["GaussianBlur", "Pixelate", "MaskOut", "Identity"]


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


class GaussianBlur(Generator):
    """Gaussian blur of the region to anonymize.

    Args:
        sigma: absolute standard deviation in pixels (DeepPrivacy2's dummy generator: 7 with
            kernel ``min(21, W)``), or None to use ``sigma_fraction``.
        sigma_fraction: standard deviation as a fraction of the region's longer side.
        kernel_size: odd kernel size for absolute sigma (default 6 sigma + 1, capped to the crop).
    """

    def __init__(self, *, sigma: float | None = None, sigma_fraction: float = 0.15,
                 kernel_size: int | None = None) -> None:
        super().__init__()
        if sigma is not None and sigma <= 0:
            raise ValueError(f"sigma must be > 0, got {sigma}")
        if sigma_fraction <= 0:
            raise ValueError(f"sigma_fraction must be > 0, got {sigma_fraction}")
        self.sigma = sigma
        self.sigma_fraction = sigma_fraction
        self.kernel_size = kernel_size

    def extra_repr(self) -> str:
        return f"sigma={self.sigma}, sigma_fraction={self.sigma_fraction}, kernel_size={self.kernel_size}"

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
        outs = [
            self._blur_one(img[i : i + 1], max(1.0, float(extents[i].max()) * self.sigma_fraction))
            for i in range(img.shape[0])
        ]
        return _composite(img, torch.cat(outs), mask)


class Pixelate(Generator):
    """Pixelation (mosaic) of the region to anonymize.

    Args:
        blocks: number of blocks along the region's longer side (DeepPrivacy2: 8 or 16 over the crop).
        align_to_region: place the block grid on the region to anonymize (native-resolution use);
            if False, pixelate the whole crop to ``blocks x blocks`` like DeepPrivacy2's generator.
    """

    def __init__(self, *, blocks: int = 8, align_to_region: bool = True) -> None:
        super().__init__()
        if blocks < 1:
            raise ValueError(f"blocks must be >= 1, got {blocks}")
        self.blocks = blocks
        self.align_to_region = align_to_region

    def extra_repr(self) -> str:
        return f"blocks={self.blocks}, align_to_region={self.align_to_region}"

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
            scale = self.blocks / max(h, w)
            small_hw = (max(1, round(h * scale)), max(1, round(w * scale)))
            small = F.interpolate(region, size=small_hw, mode="area")
            out[i : i + 1, :, y0:y1, x0:x1] = F.interpolate(small, size=(h, w), mode="nearest")
        return _composite(img, out, mask)


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


class Identity(Generator):
    """Returns its input: for tests and for ``--vd``-style debugging."""

    def forward(self, img, mask, latent=None, **conditions):
        return img
