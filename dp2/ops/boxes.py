"""Pure box arithmetic.

Convention: boxes are ``[N, 4]`` ``(x0, y0, x1, y1)`` in pixels, half-open
(``x1``, ``y1`` exclusive). Integer boxes are int64. Functions return new
tensors and never modify their inputs.
"""
from __future__ import annotations

import torch

__all__ = ["box_area", "clip_boxes", "scale_boxes", "round_boxes_outward", "expand_boxes_by_pixels", "boxes_iou"]


def box_area(boxes_xyxy: torch.Tensor) -> torch.Tensor:
    """Area of each box, 0 for empty boxes. Returns the input dtype, shape [N].

    >>> box_area(torch.tensor([[0, 0, 4, 3], [5, 5, 2, 2]]))
    tensor([12,  0])
    """
    w = (boxes_xyxy[:, 2] - boxes_xyxy[:, 0]).clamp(min=0)
    h = (boxes_xyxy[:, 3] - boxes_xyxy[:, 1]).clamp(min=0)
    return w * h


def clip_boxes(boxes_xyxy: torch.Tensor, size_hw: tuple[int, int]) -> torch.Tensor:
    """Clip boxes to an image of size ``(H, W)``.

    >>> clip_boxes(torch.tensor([[-5, 2, 12, 30]]), (20, 10))
    tensor([[ 0,  2, 10, 20]])
    """
    h, w = size_hw
    out = boxes_xyxy.clone()
    out[:, 0::2] = out[:, 0::2].clamp(0, w)
    out[:, 1::2] = out[:, 1::2].clamp(0, h)
    return out


def scale_boxes(boxes_xyxy: torch.Tensor, factor: float) -> torch.Tensor:
    """Scale width and height by ``factor`` about each box centre. Returns float32 boxes.

    >>> scale_boxes(torch.tensor([[10, 10, 20, 30]]), 2.0)
    tensor([[ 5.,  0., 25., 40.]])
    """
    b = boxes_xyxy.float()
    cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
    hw, hh = (b[:, 2] - b[:, 0]) * factor / 2, (b[:, 3] - b[:, 1]) * factor / 2
    return torch.stack([cx - hw, cy - hh, cx + hw, cy + hh], dim=1)


def round_boxes_outward(boxes_xyxy: torch.Tensor) -> torch.Tensor:
    """Smallest integer boxes that contain float boxes (floor the start, ceil the end).

    >>> round_boxes_outward(torch.tensor([[1.2, 0.5, 3.1, 4.0]]))
    tensor([[1, 0, 4, 4]])
    """
    b = boxes_xyxy.float()
    return torch.cat([b[:, :2].floor(), b[:, 2:].ceil()], dim=1).long()


def expand_boxes_by_pixels(boxes_xyxy: torch.Tensor, pixels: torch.Tensor | int) -> torch.Tensor:
    """Grow every side by ``pixels`` (a number or an [N] tensor).

    >>> expand_boxes_by_pixels(torch.tensor([[10, 10, 20, 20], [0, 0, 4, 4]]), torch.tensor([1, 2]))
    tensor([[ 9,  9, 21, 21],
            [-2, -2,  6,  6]])
    """
    p = torch.as_tensor(pixels, dtype=boxes_xyxy.dtype, device=boxes_xyxy.device).reshape(-1, 1)  # [N or 1, 1]
    return boxes_xyxy + p * torch.tensor([-1, -1, 1, 1], dtype=boxes_xyxy.dtype, device=boxes_xyxy.device)


def boxes_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU of [N, 4] and [M, 4] boxes, sized [N, M] float32."""
    a, b = a.float(), b.float()
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=2)
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-9), torch.zeros_like(inter))
