"""A detector that returns the same boxes for every image (demos, tests, fixed cameras)."""
from __future__ import annotations

import torch

from ..ops.boxes import clip_boxes
from ..structures import FaceDetections

__all__ = ["FixedFaceDetector"]


class FixedFaceDetector:
    """Reports ``boxes`` (x0, y0, x1, y1 pixels; clipped to each image) as faces with score 1.

    Args:
        boxes: list of [x0, y0, x1, y1].
        score_threshold: accepted for config compatibility (``--dst``); all boxes have score 1.
    """

    def __init__(self, *, boxes: list[list[int]] = (), score_threshold: float = 0.5) -> None:
        self.boxes = torch.tensor([list(b) for b in boxes], dtype=torch.int64).reshape(-1, 4)
        self.score_threshold = score_threshold

    def __call__(self, image: torch.Tensor) -> FaceDetections:
        size_hw = (int(image.shape[1]), int(image.shape[2]))
        boxes = clip_boxes(self.boxes, size_hw)
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        boxes = boxes[keep]
        return FaceDetections(boxes_xyxy=boxes, scores=torch.ones(len(boxes)), image_size_hw=size_hw)
