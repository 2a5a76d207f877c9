"""Pure tensor helpers for CenterFace: decode the four output maps, NMS, merging.

CenterFace (Xu et al., 2019) is an anchor-free detector with output stride 4.
For an input of ``[B, 3, H, W]`` it predicts, on an ``[h, w] = [H/4, W/4]`` grid:

* ``heatmap``  ``[B, 1, h, w]``: face-centre probability (already sigmoid-ed);
* ``scale``    ``[B, 2, h, w]``: ``log(size / 4)``, channel 0 = height, 1 = width;
* ``offset``   ``[B, 2, h, w]``: sub-cell centre offset in cells, channel 0 = y, 1 = x;
* ``landmarks`` ``[B, 10, h, w]``: five points as ``(y, x)`` pairs, each relative to
  the box's top-left corner in units of box height / width.

Everything here is torch-only, works on any device and has no hidden state.
"""
from __future__ import annotations

import torch

__all__ = ["STRIDE", "box_iou", "decode_centerface", "merge_detections", "nms"]

MERGE_MODES = ("union", "nms", "weighted")

STRIDE = 4  # input pixels per output cell


def decode_centerface(
    heatmap: torch.Tensor,
    scale: torch.Tensor,
    offset: torch.Tensor,
    landmarks: torch.Tensor,
    score_threshold: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Turn one image's CenterFace output maps into candidate boxes (before NMS).

    Every cell whose heatmap value is above ``score_threshold`` yields one box.
    Neighbouring cells of the same face yield overlapping boxes; run :func:`nms`.

    Convention: a cell ``(i, j)`` covers input pixels ``[4j, 4j + 4) x [4i, 4i + 4)``;
    the face centre is ``((j + offset_x + 0.5) * 4, (i + offset_y + 0.5) * 4)`` in the
    continuous pixel frame where pixel ``k`` spans ``[k, k + 1)``.

    Args:
        heatmap: float [1, 1, h, w] (or [1, h, w] / [h, w]) scores in [0, 1].
        scale: float [1, 2, h, w] log sizes (height, width).
        offset: float [1, 2, h, w] centre offsets (y, x) in cells.
        landmarks: float [1, 10, h, w] (y0, x0, y1, x1, ...) relative to the box.
        score_threshold: keep cells with ``heatmap > score_threshold``.

    Returns:
        boxes: float32 [N, 4] xyxy in input pixels (not clipped).
        scores: float32 [N].
        points: float32 [N, 5, 2] (x, y) landmarks in input pixels.
    """
    heat = heatmap.reshape(heatmap.shape[-2], heatmap.shape[-1]).float()  # [h, w]
    h, w = heat.shape
    for name, value, channels in (("scale", scale, 2), ("offset", offset, 2), ("landmarks", landmarks, 10)):
        if value.numel() != channels * h * w:
            raise ValueError(f"{name} must have shape [1, {channels}, {h}, {w}], got {list(value.shape)}")
    scale = scale.reshape(2, h, w).float()
    offset = offset.reshape(2, h, w).float()
    landmarks = landmarks.reshape(10, h, w).float()

    ii, jj = torch.nonzero(heat > score_threshold, as_tuple=True)
    scores = heat[ii, jj]
    box_h = torch.exp(scale[0, ii, jj]) * STRIDE
    box_w = torch.exp(scale[1, ii, jj]) * STRIDE
    cy = (ii.float() + offset[0, ii, jj] + 0.5) * STRIDE
    cx = (jj.float() + offset[1, ii, jj] + 0.5) * STRIDE
    x1 = cx - box_w / 2
    y1 = cy - box_h / 2
    boxes = torch.stack([x1, y1, x1 + box_w, y1 + box_h], dim=1)  # [N, 4]

    rel = landmarks[:, ii, jj].T.reshape(-1, 5, 2)  # [N, 5, (y, x)]
    points = torch.stack(
        [x1[:, None] + rel[..., 1] * box_w[:, None], y1[:, None] + rel[..., 0] * box_h[:, None]], dim=2
    )  # [N, 5, (x, y)]
    return boxes, scores, points


def box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU of float xyxy boxes: [N, 4] x [M, 4] -> [N, M] (0 where both are empty)."""
    area1 = (boxes1[:, 2] - boxes1[:, 0]).clamp(min=0) * (boxes1[:, 3] - boxes1[:, 1]).clamp(min=0)
    area2 = (boxes2[:, 2] - boxes2[:, 0]).clamp(min=0) * (boxes2[:, 3] - boxes2[:, 1]).clamp(min=0)
    lt = torch.maximum(boxes1[:, None, :2], boxes2[None, :, :2])
    rb = torch.minimum(boxes1[:, None, 2:], boxes2[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=2)
    union = area1[:, None] + area2[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(inter))


def _greedy_clusters(
    boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy NMS that also reports which kept box suppressed each box.

    Returns:
        keep: int64 [K] indices of kept boxes, by descending score.
        owner: int64 [N] index (into ``boxes``) of the kept box each box belongs to.
    """
    n = boxes.shape[0]
    order = torch.argsort(scores, descending=True, stable=True)
    sorted_boxes = boxes[order]
    device = boxes.device
    unassigned = torch.ones(n, dtype=torch.bool, device=device)
    owner_sorted = torch.empty(n, dtype=torch.int64, device=device)
    keep_sorted = []
    # One vectorised IoU row per kept box: O(K * N) instead of an [N, N] matrix.
    while True:
        pending = torch.nonzero(unassigned)
        if pending.numel() == 0:
            break
        i = int(pending[0, 0])
        members = unassigned & (box_iou(sorted_boxes[i : i + 1], sorted_boxes)[0] >= iou_threshold)
        members[i] = True
        owner_sorted[members] = i
        unassigned &= ~members
        keep_sorted.append(i)
    owner = torch.empty(n, dtype=torch.int64, device=device)
    owner[order] = order[owner_sorted]
    return order[torch.tensor(keep_sorted, dtype=torch.int64, device=device)], owner


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy non-maximum suppression.

    A box is dropped when its IoU with a higher-scoring kept box is ``>= iou_threshold``
    (ties in score keep the earlier box).

    Args:
        boxes: float [N, 4] xyxy.
        scores: float [N].
        iou_threshold: overlap at which the lower-scoring box is suppressed.

    Returns:
        int64 [K] indices into ``boxes`` of the kept boxes, by descending score.

    Example:
        >>> b = torch.tensor([[0., 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]])
        >>> nms(b, torch.tensor([0.9, 0.8, 0.7]), 0.5).tolist()
        [0, 2]
    """
    if boxes.shape[0] == 0:
        return torch.zeros((0,), dtype=torch.int64, device=boxes.device)
    keep, _ = _greedy_clusters(boxes, scores, iou_threshold)
    return keep


def merge_detections(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    points: torch.Tensor,
    iou_threshold: float,
    mode: str = "nms",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Merge overlapping candidates (one image, possibly several passes) into faces.

    Args:
        boxes: float [N, 4] xyxy.
        scores: float [N].
        points: float [N, 5, 2] landmarks.
        iou_threshold: candidates overlapping a stronger one at ``>= iou_threshold``
            belong to its face.
        mode: ``"union"`` gives each face the box enclosing all of its candidates (so a
            small high-score box never shrinks the region a larger overlapping candidate
            marks), with the strongest candidate's score and landmarks; ``"nms"`` keeps the
            strongest candidate of each face; ``"weighted"`` replaces its box and landmarks
            by the score-weighted mean of the face's candidates (box voting).

    Returns:
        boxes [K, 4], scores [K], points [K, 5, 2], by descending score.

    Example:
        >>> b = torch.tensor([[0., 0, 40, 44], [8, 8, 38, 38]])
        >>> p = torch.zeros(2, 5, 2)
        >>> merge_detections(b, torch.tensor([0.24, 0.49]), p, 0.3, "union")[0].tolist()
        [[0.0, 0.0, 40.0, 44.0]]
        >>> merge_detections(b, torch.tensor([0.24, 0.49]), p, 0.3, "nms")[0].tolist()
        [[8.0, 8.0, 38.0, 38.0]]
    """
    if mode not in MERGE_MODES:
        raise ValueError(f"mode must be one of {MERGE_MODES}, got {mode!r}")
    if boxes.shape[0] == 0:
        return boxes.reshape(0, 4), scores.reshape(0), points.reshape(0, 5, 2)
    keep, owner = _greedy_clusters(boxes, scores, iou_threshold)
    if mode == "nms":
        return boxes[keep], scores[keep], points[keep]
    if mode == "union":
        big = torch.finfo(boxes.dtype).max
        low = torch.full((boxes.shape[0], 2), big, dtype=boxes.dtype, device=boxes.device)
        high = torch.full((boxes.shape[0], 2), -big, dtype=boxes.dtype, device=boxes.device)
        low = low.scatter_reduce(0, owner[:, None].expand(-1, 2), boxes[:, :2], reduce="amin")
        high = high.scatter_reduce(0, owner[:, None].expand(-1, 2), boxes[:, 2:], reduce="amax")
        return torch.cat([low[keep], high[keep]], dim=1), scores[keep], points[keep]
    # Scatter each candidate's weighted coordinates onto its owner, then normalise.
    weights = scores.float()
    box_sum = torch.zeros_like(boxes).index_add_(0, owner, boxes * weights[:, None])
    point_sum = torch.zeros_like(points).index_add_(0, owner, points * weights[:, None, None])
    weight_sum = torch.zeros_like(weights).index_add_(0, owner, weights)
    denom = weight_sum[keep].clamp(min=1e-12)
    return box_sum[keep] / denom[:, None], scores[keep], point_sum[keep] / denom[:, None, None]
