"""Persons (Mask R-CNN), their CSE surface embeddings and faces, combined as DeepPrivacy2 does.

DeepPrivacy2's ``CSEPersonDetector`` (FB_cse, FB_cse_mask) keeps only Mask R-CNN persons that
match a CSE detection and silently drops the others: a privacy leak. Here an unmatched person
is always reported (as a person without CSE) unless ``unmatched="drop"`` asks for DP2's
behaviour. ``CSeMaskFaceDetector`` (FB_cse_mask_face) also detects faces and removes those
that lie strictly inside a person's dilated box; :class:`FullBodyDetector` with a
``face_detector`` does the same.
"""
from __future__ import annotations

import logging
from typing import Callable

import torch

from ..ops.body_masks import preprocess_persons
from ..ops.cse import combine_cse_maskrcnn, cse_person_preprocess
from ..ops.face_body_dedup import faces_inside_bodies
from ..structures import BodyDetections, Detections, FaceDetections, PersonDetections

__all__ = ["FullBodyDetector", "prepare_bodies"]

logger = logging.getLogger(__name__)


def _aligned_dilated_boxes(dilated_boxes: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """DP2 keeps dilated boxes in input order; reorder them like the other (area-sorted) fields."""
    kept_in_input_order = torch.sort(indices).values
    return dilated_boxes[torch.searchsorted(kept_in_input_order, indices)]


def prepare_bodies(masks: torch.Tensor, scores: torch.Tensor, image_size_hw: tuple[int, int], *,
                   target_hw: tuple[int, int] = (288, 160), cse=None, cse_boxes=None,
                   cse_E=None, cse_S=None, embed_map=None) -> BodyDetections:
    """DP2's body pre-processing for persons with (``cse`` given) or without CSE.

    Args:
        masks: bool [N, H, W] person masks (combined with the CSE mask for CSE persons).
        scores: float32 [N].
        image_size_hw: (H, W).
        target_hw: generator crop size.
        cse_boxes, cse_E, cse_S, embed_map: matched CSE outputs ([N, 4], [N, C, 112, 112],
            [N, 112, 112], [V, C]) for CSE persons.
    """
    if cse_boxes is not None:
        out = cse_person_preprocess(masks, cse_boxes, cse_E, cse_S, embed_map, target_hw)
        return BodyDetections(boxes_xyxy=out.boxes, scores=scores[out.indices], segmentation=out.segmentation,
                              keep_mask=out.keep_mask, maskrcnn_mask=out.maskrcnn_mask,
                              dilated_boxes=_aligned_dilated_boxes(out.dilated_boxes, out.indices),
                              image_size_hw=image_size_hw, vertices=out.vertices.long(),
                              embedding_mask=out.E_mask.bool(), embed_map=embed_map)
    out = preprocess_persons(masks, image_size_hw, target_hw)
    return BodyDetections(boxes_xyxy=out.boxes, scores=scores[out.indices], segmentation=out.segmentation,
                          keep_mask=out.keep_mask, maskrcnn_mask=out.maskrcnn_mask,
                          dilated_boxes=_aligned_dilated_boxes(out.dilated_boxes, out.indices),
                          image_size_hw=image_size_hw)


class FullBodyDetector:
    """Mask R-CNN persons, optionally matched with DensePose CSE, optionally with faces.

    Args:
        person_detector: ``image -> PersonDetections`` (Mask R-CNN).
        cse_detector: ``image -> CSEDetections`` or None (persons without CSE only).
        face_detector: ``image -> FaceDetections`` or None. Faces strictly inside a person's
            dilated box are dropped (the body generator replaces them).
        iou_combine_threshold: mask IoU for pairing a Mask R-CNN person with a CSE detection.
        unmatched: ``"persons"``: persons without a CSE match are reported as ``persons`` (never
            leaked); ``"drop"``: DeepPrivacy2's FB_cse behaviour (they stay un-anonymized!).
        target_hw: body generator crop size.
        score_threshold: forwarded to every sub-detector (``--dst``).
    """

    def __init__(self, *, person_detector: Callable, cse_detector: Callable | None = None,
                 face_detector: Callable | None = None, iou_combine_threshold: float = 0.4,
                 unmatched: str = "persons", target_hw: tuple[int, int] = (288, 160),
                 score_threshold: float | None = None) -> None:
        if unmatched not in ("persons", "drop"):
            raise ValueError(f"unmatched must be 'persons' or 'drop', got {unmatched!r}")
        self.person_detector = person_detector
        self.cse_detector = cse_detector
        self.face_detector = face_detector
        self.iou_combine_threshold = iou_combine_threshold
        self.unmatched = unmatched
        self.target_hw = tuple(target_hw)
        if score_threshold is not None:
            self.score_threshold = score_threshold

    @property
    def score_threshold(self) -> float:
        return self.person_detector.score_threshold

    @score_threshold.setter
    def score_threshold(self, value: float) -> None:
        for detector in (self.person_detector, self.cse_detector, self.face_detector):
            if detector is not None:
                detector.score_threshold = value

    def combine(self, image_size_hw: tuple[int, int], persons: PersonDetections, cse=None,
                faces: FaceDetections | None = None) -> Detections:
        """The pure part: pair, pre-process and de-duplicate given detector outputs."""
        cse_bodies = None
        unmatched = torch.arange(len(persons))
        if cse is not None:
            _, matches, combined = combine_cse_maskrcnn(persons.masks, cse.im_segmentation, self.iou_combine_threshold)
            i, j = matches[:, 0], matches[:, 1]
            cse_bodies = prepare_bodies(combined, persons.scores[i], image_size_hw, target_hw=self.target_hw,
                                        cse_boxes=cse.boxes_xyxy[j], cse_E=cse.E[j], cse_S=cse.S[j].long(),
                                        embed_map=cse.embed_map)
            matched = torch.zeros(len(persons), dtype=torch.bool)
            matched[i] = True
            unmatched = torch.nonzero(~matched).flatten()
        bodies = None
        if cse is None or self.unmatched == "persons":
            bodies = prepare_bodies(persons.masks[unmatched], persons.scores[unmatched], image_size_hw,
                                    target_hw=self.target_hw)
        elif len(unmatched):
            logger.warning("%d person(s) without a CSE match are NOT anonymized (unmatched='drop')", len(unmatched))
        if faces is not None:
            dilated = [b.dilated_boxes for b in (bodies, cse_bodies) if b is not None]
            if dilated:
                faces = faces[~faces_inside_bodies(faces.boxes_xyxy, torch.cat(dilated))]
        return Detections(image_size_hw=image_size_hw, faces=faces, persons=bodies, cse_persons=cse_bodies)

    def __call__(self, image: torch.Tensor) -> Detections:
        size_hw = (int(image.shape[1]), int(image.shape[2]))
        persons = self.person_detector(image)
        cse = self.cse_detector(image) if self.cse_detector is not None else None
        faces = self.face_detector(image) if self.face_detector is not None else None
        return self.combine(size_hw, persons, cse, faces)
