"""Soft region masks inside a crop (pure functions)."""
from __future__ import annotations

import math

import torch

__all__ = ["region_alpha"]


def region_alpha(size_hw: tuple[int, int], region_xyxy: torch.Tensor | tuple[float, float, float, float],
                 shape: str = "box", feather_px: float = 0.0, device=None) -> torch.Tensor:
    """Alpha map that is 1 inside a region and falls to 0 over ``feather_px`` outside it.

    Feathering only grows outward: every pixel inside the region gets alpha 1, so a
    feathered mask never covers less than the hard one.

    Args:
        size_hw: (H, W) of the crop.
        region_xyxy: float (x0, y0, x1, y1) in crop pixels; pixel centres are at +0.5.
        shape: ``"box"`` (the rectangle) or ``"ellipse"`` (the ellipse through the midpoints of the
            rectangle's sides, grown to ``sqrt(2)`` x the rectangle so it still contains the
            rectangle's corners: the detected face box is always fully covered).
        feather_px: width of the soft edge in pixels (0 = hard edge).

    Returns:
        float32 [H, W] in [0, 1].
    """
    if shape not in ("box", "ellipse"):
        raise ValueError(f"shape must be 'box' or 'ellipse', got {shape!r}")
    h, w = size_hw
    x0, y0, x1, y1 = (float(v) for v in region_xyxy)
    ys = torch.arange(h, device=device, dtype=torch.float32).view(-1, 1) + 0.5
    xs = torch.arange(w, device=device, dtype=torch.float32).view(1, -1) + 0.5
    if shape == "box":
        dx = torch.clamp(torch.maximum(x0 - xs, xs - x1), min=0)
        dy = torch.clamp(torch.maximum(y0 - ys, ys - y1), min=0)
        dist = torch.maximum(dx, dy)  # 0 inside, pixels outside
    else:
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        ax, ay = max((x1 - x0) / 2 * math.sqrt(2), 0.5), max((y1 - y0) / 2 * math.sqrt(2), 0.5)
        r = torch.sqrt(((xs - cx) / ax) ** 2 + ((ys - cy) / ay) ** 2)
        dist = torch.clamp(r - 1, min=0) * min(ax, ay)  # approximately pixels outside the ellipse
    if feather_px <= 0:
        return (dist <= 0).float()
    return torch.clamp(1 - dist / feather_px, min=0, max=1)
