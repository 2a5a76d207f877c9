"""Paste a generated crop back into the image, as DeepPrivacy2's anonymizer does.

DP2 (``Anonymizer.anonymize_detections``) resizes the generator output back to the expanded
box with bicubic + antialias, resizes the crop's mask with nearest, drops the parts of both
that lie outside the image, and *replaces* the pixels whose mask is ``<= 0.5`` with
``round().clamp(0, 255)`` of the resized output. There is no blending; instances are pasted
one after the other, each crop being cut from the already-pasted image.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["paste_crop"]


def _feather_alpha(replace: torch.Tensor, feather_px: int) -> torch.Tensor:
    """1 on ``replace`` [1, h, w], falling linearly to 0 over ``feather_px`` pixels (chessboard distance)."""
    alpha = replace.clone()
    grown = replace[None]  # [1, 1, h, w]
    for k in range(1, feather_px + 1):
        grown = F.max_pool2d(grown, kernel_size=3, stride=1, padding=1)
        alpha = torch.maximum(alpha, grown[0] * (1.0 - k / (feather_px + 1)))
    return alpha


def paste_crop(image: torch.Tensor, generated_0_255: torch.Tensor, keep_mask: torch.Tensor, box_xyxy,
               feather_px: int = 0) -> torch.Tensor:
    """Paste one generated crop into ``image`` at ``box_xyxy`` (DP2's hard paste).

    Args:
        image: uint8 [3, H, W] RGB; not modified.
        generated_0_255: float [3, h, w] generator output mapped to [0, 255] (values outside
            are clamped), at the generator's resolution.
        keep_mask: [1, h, w] bool or float crop mask; 1/True = keep the image pixel,
            0/False = take the generated pixel.
        box_xyxy: integer ``(x0, y0, x1, y1)`` expanded box the crop was cut from; may extend
            past the image (that part is discarded).
        feather_px: 0 (default) is DP2's hard replacement. With ``k > 0`` the replaced region is
            kept and grown by ``k`` pixels (chessboard distance, inside the box) with a linear
            alpha ramp from the generated to the original pixels, so the seam is softened while
            every pixel farther than ``k`` from the replaced region stays untouched.

    Returns:
        A new uint8 [3, H, W] image.

    Raises:
        ValueError: on wrong shapes, an empty box or a negative ``feather_px``.

    Convention:
        Both tensors are resized to the full box size ``(y1 - y0, x1 - x0)``: output with
        bicubic + antialias (``align_corners=False``), mask with nearest; then the rows and
        columns outside ``[0, H) x [0, W)`` are dropped. Rounding is half to even.

    >>> img = torch.zeros((3, 4, 4), dtype=torch.uint8)
    >>> gen = torch.full((3, 2, 2), 100.5)
    >>> keep = torch.tensor([[[False, True], [True, True]]])
    >>> paste_crop(img, gen, keep, (-1, -1, 3, 3))[0]
    tensor([[100,   0,   0,   0],
            [  0,   0,   0,   0],
            [  0,   0,   0,   0],
            [  0,   0,   0,   0]], dtype=torch.uint8)
    """
    if image.dtype != torch.uint8 or image.ndim != 3:
        raise ValueError(f"image must be uint8 [C, H, W], got {image.dtype} {list(image.shape)}")
    if generated_0_255.ndim != 3 or generated_0_255.shape[0] != image.shape[0]:
        raise ValueError(f"generated_0_255 must be [{image.shape[0]}, h, w], got {list(generated_0_255.shape)}")
    if keep_mask.shape != (1, *generated_0_255.shape[1:]):
        raise ValueError(f"keep_mask must be [1, {generated_0_255.shape[1]}, {generated_0_255.shape[2]}], "
                         f"got {list(keep_mask.shape)}")
    if feather_px < 0:
        raise ValueError(f"feather_px must be >= 0, got {feather_px}")
    values = box_xyxy.tolist() if isinstance(box_xyxy, torch.Tensor) else list(box_xyxy)
    x0, y0, x1, y1 = (int(v) for v in values)
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"box must have positive width and height, got {values}")

    _, H, W = image.shape
    out = image.clone()
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, W), min(y1, H)
    if cx1 <= cx0 or cy1 <= cy0:
        return out
    size = (y1 - y0, x1 - x0)
    gen = F.interpolate(generated_0_255.to(torch.float32)[None], size=size, mode="bicubic",
                        align_corners=False, antialias=True)[0]
    mask = F.interpolate(keep_mask.to(torch.float32)[None], size=size, mode="nearest")[0]
    # Drop what lies outside the image: [C, cy1 - cy0, cx1 - cx0].
    inner = (slice(None), slice(cy0 - y0, cy1 - y0), slice(cx0 - x0, cx1 - x0))
    gen, mask = gen[inner], mask[inner]
    region = out[:, cy0:cy1, cx0:cx1]
    replace = mask <= 0.5  # [1, h, w]
    if feather_px == 0:
        pasted = torch.where(replace, gen.round().clamp(0, 255).to(torch.uint8), region)
    else:
        alpha = _feather_alpha(replace.to(torch.float32), feather_px)
        blended = (alpha * gen.clamp(0, 255) + (1 - alpha) * region.to(torch.float32)).round().clamp(0, 255)
        pasted = torch.where(alpha > 0, blended.to(torch.uint8), region)
    out[:, cy0:cy1, cx0:cx1] = pasted
    return out
