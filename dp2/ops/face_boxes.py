"""Face box expansion with DeepPrivacy2's exact integer arithmetic.

A face detector box is grown into the square region that the face generator sees.
DP2 has two rules (``expand_bbox`` in the original code):

* ``"simple"`` (``face.py``, FDF256): a square of side ``1.4 * max(w, h)`` around the
  box centre. It may leave the image; the crop is zero-padded there.
* ``"fdf128"`` (``face_fdf128.py``, DeepPrivacy1): the FDF dataset rule. Make the box
  square, then grow it by 35 % while keeping it inside the image. When that is not
  possible (the original raises ``AssertionError``) it falls back to the simple rule
  with 70 %.

Convention: boxes are int64 ``[N, 4]`` ``(x0, y0, x1, y1)``, half-open, in pixels of an
image of size ``size_hw = (H, W)``. All arithmetic reproduces the original's float
(``float64``) floor divisions and ``int`` truncations, so results match it bit for bit.
"""
from __future__ import annotations

import torch

__all__ = ["expand_face_boxes", "expand_face_boxes_fdf128", "expand_face_boxes_simple"]


def _check_boxes(boxes_xyxy: torch.Tensor) -> None:
    if not isinstance(boxes_xyxy, torch.Tensor):
        raise TypeError(f"boxes_xyxy must be a torch.Tensor, got {type(boxes_xyxy).__name__}")
    if boxes_xyxy.ndim != 2 or boxes_xyxy.shape[1] != 4:
        raise ValueError(f"boxes_xyxy must have shape [N, 4], got {list(boxes_xyxy.shape)}")


def expand_face_boxes_simple(boxes_xyxy: torch.Tensor, percentage: float = 0.4) -> torch.Tensor:
    """Grow face boxes into squares of side ``(1 + percentage) * max(w, h)`` (DP2 ``expand_bbox_simple``).

    Args:
        boxes_xyxy: int64 [N, 4] face boxes (may extend outside the image).
        percentage: relative growth of the longer side; 0.4 for FDF256, 0.7 for the FDF128 fallback.

    Returns:
        int64 [N, 4] square boxes; they are not clipped to the image.

    Convention:
        With ``w = x1 - x0`` and ``h = y1 - y0`` as floats, the centre is
        ``c = x0 + w // 2`` and the box is ``[c - s // 2, c + s // 2)`` with
        ``s = max(w, h) * (1 + percentage)``; ``//`` is float floor division, so the side is
        always even and boxes with an odd width or height are not exactly centred.

    >>> expand_face_boxes_simple(torch.tensor([[10, 20, 30, 50]]))
    tensor([[-1, 14, 41, 56]])
    """
    _check_boxes(boxes_xyxy)
    b = boxes_xyxy.to(torch.float64)
    w = b[:, 2] - b[:, 0]
    h = b[:, 3] - b[:, 1]
    # int(x0) is exact here: the inputs are integers.
    xc = b[:, 0] + torch.floor(w / 2)
    yc = b[:, 1] + torch.floor(h / 2)
    half = torch.floor(torch.maximum(w, h) * (1 + percentage) / 2)
    out = torch.stack([xc - half, yc - half, xc + half, yc + half], dim=1)  # [N, 4]
    return out.to(torch.int64)


def _square_inside(x0: float, y0: float, w: float, h: float, H: int, W: int):
    """FDF "quadratic" step: grow the shorter side to the longer one.

    Expects a box inside the image. Returns ``(x0, y0, side)``, or None where the original
    asserts (a side longer than ``min(H, W)``); the result then lies inside the image.
    """
    if w > min(H, W) or h > min(H, W):
        return None
    if h != w:
        # Grow the shorter side symmetrically (floor of half the difference before),
        # clamp at 0, and shift back in from the far border. The original's "longer than
        # the image" branch is unreachable after the check above.
        if h < w:
            y0 = max(0.0, y0 - (w - h) // 2)
            h = w
        else:
            x0 = max(0.0, x0 - (h - w) // 2)
            w = h
        x0 = min(x0, W - w)
        y0 = min(y0, H - h)
    return x0, y0, w


def _fdf128_one(box: list[int], H: int, W: int, percentage: float):
    x0, y0, x1, y1 = (float(v) for v in box)
    # The original only succeeds for boxes inside the image: every partly-outside box in the
    # golden data (15 of 300, on all four sides) takes the fallback.
    if x0 < 0 or y0 < 0 or x1 > W or y1 > H:
        return None
    squared = _square_inside(x0, y0, x1 - x0, y1 - y0, H, W)
    if squared is None:
        return None
    x0, y0, side = squared
    # The caps compare the height with W and the width with H (crossed in the original);
    # harmless, since the box is square here.
    grow = min(int(side * percentage), (H - side) // 2, (W - side) // 2)
    if grow > 0:
        side_new = side + 2 * grow
        y0 = min(max(0.0, y0 - grow), H - side_new)
        x0 = min(max(0.0, x0 - grow), W - side_new)
        side = side_new
    return [int(x0), int(y0), int(x0 + side), int(y0 + side)]


def expand_face_boxes_fdf128(boxes_xyxy: torch.Tensor, size_hw: tuple[int, int],
                             percentage: float = 0.35, fallback_percentage: float = 0.7) -> torch.Tensor:
    """Grow face boxes with the FDF128 rule (DP2 ``expand_bbox(..., simple_expand=False)``).

    A box inside the image is made square by growing its shorter side (centred, clamped at the
    top/left border and shifted back in from the bottom/right one), then every side grows by
    ``min(int(side * percentage), (H - side) // 2, (W - side) // 2)`` pixels while the box stays
    inside the image. If the box is partly outside the image or a side is longer than
    ``min(H, W)`` (the cases where the original raises ``AssertionError``) the result is
    ``expand_face_boxes_simple(box, fallback_percentage)``, which may leave the image.
    (That every partly-outside box falls back is what all 15 such boxes in the golden data
    do; DSFD clips its boxes, so DP2 never sees them in practice.)

    Args:
        boxes_xyxy: int64 [N, 4] face boxes.
        size_hw: (H, W) of the image.
        percentage: growth of each side relative to the square's side (0.35 in DP2).
        fallback_percentage: percentage of the simple-rule fallback (0.7 in DP2).

    Returns:
        int64 [N, 4] square boxes (inside the image unless the fallback was used).

    >>> expand_face_boxes_fdf128(torch.tensor([[40, 40, 60, 70]]), (100, 100))
    tensor([[25, 30, 75, 80]])
    >>> expand_face_boxes_fdf128(torch.tensor([[-5, 0, 15, 20]]), (100, 100))  # falls back
    tensor([[-12,  -7,  22,  27]])
    """
    _check_boxes(boxes_xyxy)
    H, W = int(size_hw[0]), int(size_hw[1])
    rows = []
    for box in boxes_xyxy.tolist():
        out = _fdf128_one(box, H, W, percentage)
        if out is None:
            out = expand_face_boxes_simple(torch.tensor([box], dtype=torch.int64), fallback_percentage)[0].tolist()
        rows.append(out)
    return torch.tensor(rows, dtype=torch.int64, device=boxes_xyxy.device).reshape(-1, 4)


def expand_face_boxes(boxes_xyxy: torch.Tensor, size_hw: tuple[int, int], method: str = "simple") -> torch.Tensor:
    """Expand face boxes with the rule a DP2 face config uses.

    Args:
        boxes_xyxy: int64 [N, 4] face boxes.
        size_hw: (H, W) of the image (only used by ``"fdf128"``).
        method: ``"simple"`` (0.4, FDF256 / ``face.py``) or ``"fdf128"`` (FDF128 and DeepPrivacy1).

    Returns:
        int64 [N, 4] square expanded boxes.

    Raises:
        ValueError: for an unknown ``method``.

    >>> expand_face_boxes(torch.zeros((0, 4), dtype=torch.int64), (10, 10), "fdf128").shape
    torch.Size([0, 4])
    """
    if method == "simple":
        return expand_face_boxes_simple(boxes_xyxy, 0.4)
    if method == "fdf128":
        return expand_face_boxes_fdf128(boxes_xyxy, size_hw)
    raise ValueError(f"method must be 'simple' or 'fdf128', got {method!r}")
