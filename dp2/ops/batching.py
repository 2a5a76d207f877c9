"""Which instances may share one generator call without changing the result."""
from __future__ import annotations

import torch

__all__ = ["plan_batches"]


def plan_batches(read_boxes_xyxy: torch.Tensor, write_boxes_xyxy: torch.Tensor, max_batch: int) -> list[list[int]]:
    """Group instances (in processing order) into batches that give the same pixels as one-by-one.

    DeepPrivacy2 crops every instance from the image that already holds the pastes of the
    instances before it. An instance may therefore join the current batch only if the region
    it reads does not intersect the region any earlier member of the batch writes.

    Convention: boxes are half-open xyxy; the order of the rows is the processing order.

    Args:
        read_boxes_xyxy: [N, 4] region each instance crops from.
        write_boxes_xyxy: [N, 4] region each instance's paste may change.
        max_batch: largest batch (>= 1).

    Returns:
        Consecutive index groups covering ``range(N)``.

    >>> read = torch.tensor([[0, 0, 10, 10], [20, 0, 30, 10], [5, 0, 25, 10]])
    >>> plan_batches(read, read, 8)
    [[0, 1], [2]]
    """
    if max_batch < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")
    groups: list[list[int]] = []
    current: list[int] = []
    for i in range(read_boxes_xyxy.shape[0]):
        r = read_boxes_xyxy[i]
        conflict = False
        for k in current:
            w = write_boxes_xyxy[k]
            if r[0] < w[2] and w[0] < r[2] and r[1] < w[3] and w[1] < r[3]:
                conflict = True
                break
        if current and (conflict or len(current) >= max_batch):
            groups.append(current)
            current = []
        current.append(i)
    if current:
        groups.append(current)
    return groups
