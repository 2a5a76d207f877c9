"""Persons with keypoints for TriA-GAN: DeepPrivacy2's ``MaskRCNNVitPose`` (FB_triagan).

1. Mask R-CNN person masks (:class:`dp2.detection.maskrcnn.MaskRCNNPersonDetector`);
2. DP2's body pre-processing (:func:`dp2.ops.body_masks.preprocess_persons`: expanded 288x160
   crop boxes, dilated masks, area filter, ascending-area order);
3. ViTPose keypoints (:class:`dp2.detection.vitpose.ViTPoseDetector`) in the tight box of each
   person's mask, visible when the heatmap maximum is at least ``keypoint_threshold`` (0.3).

DP2 runs ViTPose on every Mask R-CNN person before the area filter; here it runs on the persons
that are kept, in the same boxes, which gives the same keypoints for them (ViTPose treats each box
on its own) and spares a ViTPose-H pass per dropped person.

A person whose keypoints are all invisible is kept and anonymized like the others: TriA-GAN is
conditioned on the keypoints it is given and needs none of them visible (DP2 does the same).
"""
from __future__ import annotations

import logging
from typing import Callable

import torch

from ..ops.body_boxes import masks_to_boxes
from ..ops.body_masks import preprocess_persons
from ..structures import BodyDetections, Detections, PersonDetections
from .full_body import _aligned_dilated_boxes

__all__ = ["MaskRCNNVitPose", "keypoint_visibility"]

logger = logging.getLogger(__name__)


def keypoint_visibility(keypoints: torch.Tensor, threshold: float = 0.3) -> torch.Tensor:
    """Replace ViTPose confidences by 0/1 visibility (``confidence >= threshold``), as DP2 does.

    Args:
        keypoints: float [N, K, 3] ``(x, y, confidence)``.
        threshold: confidence at or above which a keypoint is visible.

    Returns:
        float32 [N, K, 3] ``(x, y, visible)``.

    >>> keypoint_visibility(torch.tensor([[[1.0, 2.0, 0.3], [3.0, 4.0, 0.29]]])).tolist()
    [[[1.0, 2.0, 1.0], [3.0, 4.0, 0.0]]]
    """
    out = keypoints.to(torch.float32).clone()
    out[..., 2] = (keypoints[..., 2] >= threshold).to(torch.float32)
    return out


class MaskRCNNVitPose:
    """Mask R-CNN persons with ViTPose keypoints, prepared for TriA-GAN.

    Args:
        person_detector: ``image -> PersonDetections`` (Mask R-CNN).
        keypoint_detector: ``(image, boxes_xyxy [N, 4]) -> keypoints [N, 17, 3]`` (x, y,
            confidence) in image pixels (ViTPose-H).
        target_hw: generator crop size.
        keypoint_threshold: ViTPose confidence for a visible keypoint (DP2: 0.3).
        score_threshold: forwarded to the person detector (``--dst``).
    """

    def __init__(self, *, person_detector: Callable, keypoint_detector: Callable,
                 target_hw: tuple[int, int] = (288, 160), keypoint_threshold: float = 0.3,
                 score_threshold: float | None = None) -> None:
        self.person_detector = person_detector
        self.keypoint_detector = keypoint_detector
        self.target_hw = (int(target_hw[0]), int(target_hw[1]))
        if not 0.0 <= float(keypoint_threshold) <= 1.0:
            raise ValueError(f"keypoint_threshold must be in [0, 1], got {keypoint_threshold}")
        self.keypoint_threshold = float(keypoint_threshold)
        if score_threshold is not None:
            self.score_threshold = score_threshold

    @property
    def score_threshold(self) -> float:
        return self.person_detector.score_threshold

    @score_threshold.setter
    def score_threshold(self, value: float) -> None:
        self.person_detector.score_threshold = value

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(person_detector={self.person_detector!r}, "
                f"keypoint_detector={self.keypoint_detector!r}, keypoint_threshold={self.keypoint_threshold})")

    def combine(self, image: torch.Tensor, persons: PersonDetections) -> Detections:
        """Pre-process ``persons`` of ``image`` and add their keypoints."""
        size_hw = (int(image.shape[1]), int(image.shape[2]))
        out = preprocess_persons(persons.masks, size_hw, self.target_hw)
        n = len(out.indices)
        if n:
            raw = self.keypoint_detector(image, masks_to_boxes(out.segmentation))
            if tuple(raw.shape) != (n, 17, 3):
                raise ValueError(f"keypoint detector returned shape {list(raw.shape)} for {n} persons")
            keypoints = keypoint_visibility(raw.cpu(), self.keypoint_threshold)
            hidden = int((keypoints[..., 2].sum(dim=1) == 0).sum())
            if hidden:
                logger.debug("%d person(s) without a visible keypoint (anonymized all the same)", hidden)
        else:
            keypoints = torch.zeros((0, 17, 3), dtype=torch.float32)
        bodies = BodyDetections(boxes_xyxy=out.boxes, scores=persons.scores[out.indices],
                                segmentation=out.segmentation, keep_mask=out.keep_mask,
                                maskrcnn_mask=out.maskrcnn_mask,
                                dilated_boxes=_aligned_dilated_boxes(out.dilated_boxes, out.indices),
                                image_size_hw=size_hw, keypoints=keypoints)
        return Detections(image_size_hw=size_hw, persons=bodies)

    def __call__(self, image: torch.Tensor) -> Detections:
        return self.combine(image, self.person_detector(image))
