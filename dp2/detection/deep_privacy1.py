"""DeepPrivacy1 detector: DSFD faces plus 7 COCO keypoints per face from Keypoint R-CNN.

DeepPrivacy2's ``DeepPrivacy1Detector`` runs DSFD and Keypoint R-CNN, pairs each face with
the first unused person whose nose and eyes lie in the face box (``match_bbox_keypoint``,
:func:`dp2.ops.dp1_keypoints.match_face_keypoints`) and gives the DeepPrivacy1 generator
that person's first 7 keypoints (nose, left/right eye, left/right ear, left/right shoulder).

Faces without a matching skeleton (a profile, a face cut off at the shoulders, a missed
person) are *dropped* by DP2 and stay un-anonymised. Here they are kept by default
(``fallback="box_template"``) with keypoints synthesised from the face box
(:data:`FACE_BOX_KEYPOINT_TEMPLATE`); ``fallback="drop"`` reproduces DP2 exactly.

DP2 also ignores ``--dst`` for this detector (its config replaces the detector node);
here :attr:`DeepPrivacy1Detector.score_threshold` forwards to the face detector.
"""
from __future__ import annotations

import logging
from typing import Callable

import torch

from dp2.ops.dp1_keypoints import match_face_keypoints
from dp2.structures.detections import FaceDetections

__all__ = ["DP1_KEYPOINT_NAMES", "FACE_BOX_KEYPOINT_TEMPLATE", "DeepPrivacy1Detector", "assign_dp1_keypoints",
           "template_keypoints_from_boxes"]

logger = logging.getLogger(__name__)

#: The 7 keypoints DeepPrivacy1 conditions on: the first 7 COCO keypoints ("left" = the person's
#: left, which is the image's right for a face looking at the camera).
DP1_KEYPOINT_NAMES = ("nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder")

#: Where the 7 keypoints sit relative to a frontal face box, as (u, v): u = (x - x0) / w,
#: v = (y - y0) / h. Derived from typical geometry of a face-detector box (WIDER FACE style:
#: brow to chin, cheek to cheek): the eyes ~40 % down and ~19 % of the width either side of
#: the centre, the nose tip ~58 % down on the centre line (the usual 5-point alignment
#: templates), the ears at the box sides at about eye-to-nose height, and the shoulder
#: joints ~0.55 box heights below the chin, 2.2 box widths apart (adult shoulder width
#: ~2.2-2.5 head widths). Nose and eyes lie inside the box, so a template skeleton satisfies
#: DP2's own matching rule for its face.
FACE_BOX_KEYPOINT_TEMPLATE = torch.tensor([
    [0.50, 0.58],   # nose
    [0.69, 0.40],   # left eye (image right)
    [0.31, 0.40],   # right eye (image left)
    [0.98, 0.48],   # left ear
    [0.02, 0.48],   # right ear
    [1.60, 1.55],   # left shoulder
    [-0.60, 1.55],  # right shoulder
])

_FALLBACKS = ("box_template", "drop")


def template_keypoints_from_boxes(boxes_xyxy: torch.Tensor) -> torch.Tensor:
    """The 7 DeepPrivacy1 keypoints of a frontal face filling each box (:data:`FACE_BOX_KEYPOINT_TEMPLATE`).

    Args:
        boxes_xyxy: int or float [N, 4] face boxes in pixels.

    Returns:
        float32 [N, 7, 2] (x, y) pixels, on the boxes' device. Shoulders lie below and beside
        the box; the other points inside it.

    >>> template_keypoints_from_boxes(torch.tensor([[0, 0, 100, 100]]))[0, :3]
    tensor([[50., 58.],
            [69., 40.],
            [31., 40.]])
    """
    if boxes_xyxy.ndim != 2 or boxes_xyxy.shape[1] != 4:
        raise ValueError(f"boxes_xyxy must have shape [N, 4], got {list(boxes_xyxy.shape)}")
    b = boxes_xyxy.to(torch.float32)
    origin = b[:, None, :2]  # [N, 1, 2]
    size = (b[:, 2:] - b[:, :2])[:, None, :]  # [N, 1, 2] (w, h)
    return origin + FACE_BOX_KEYPOINT_TEMPLATE.to(b.device)[None] * size  # [N, 7, 2]


def assign_dp1_keypoints(faces: FaceDetections, keypoints_xy: torch.Tensor, *,
                         fallback: str = "box_template") -> tuple[FaceDetections, int]:
    """Give each face the 7 DeepPrivacy1 keypoints of its matching person (DP2 matching).

    Args:
        faces: detected faces (boxes in the order the face detector gave them).
        keypoints_xy: float [M, K>=7, 2] (x, y) person keypoints in COCO order, same image.
        fallback: what to do with faces that match no person: ``"box_template"`` keeps
            them with :func:`template_keypoints_from_boxes`; ``"drop"`` removes them (DP2).

    Returns:
        ``(faces_with_landmarks, num_unmatched)``: faces with ``landmarks`` float32
        [N', 7, 2] in the input face order (``box_template``: all faces; ``drop``: the
        matched ones), and how many faces matched no person.

    Raises:
        ValueError: unknown ``fallback`` or wrong shapes.

    >>> faces = FaceDetections(boxes_xyxy=torch.tensor([[0, 0, 10, 10], [20, 0, 30, 10]]),
    ...                        scores=torch.ones(2), image_size_hw=(40, 40))
    >>> person = torch.tensor([[[5., 5.], [7., 3.], [3., 3.], [9., 4.], [1., 4.], [15., 20.], [-5., 20.]]])
    >>> out, unmatched = assign_dp1_keypoints(faces, person)
    >>> unmatched, out.landmarks.shape, out.landmarks[0, 0].tolist()
    (1, torch.Size([2, 7, 2]), [5.0, 5.0])
    >>> len(assign_dp1_keypoints(faces, person, fallback="drop")[0])
    1
    """
    if fallback not in _FALLBACKS:
        raise ValueError(f"fallback must be one of {_FALLBACKS}, got {fallback!r}")
    if keypoints_xy.ndim != 3 or keypoints_xy.shape[1] < 7 or keypoints_xy.shape[2] < 2:
        raise ValueError(f"keypoints_xy must have shape [M, K>=7, 2], got {list(keypoints_xy.shape)}")
    boxes = faces.boxes_xyxy
    kps = keypoints_xy[:, :7, :2].to(device=boxes.device, dtype=torch.float32)  # [M, 7, 2]
    face_idx, person_idx = match_face_keypoints(boxes, kps)
    num_unmatched = len(faces) - int(face_idx.numel())
    if fallback == "drop":
        return _with_landmarks(faces[face_idx], kps[person_idx]), num_unmatched
    landmarks = template_keypoints_from_boxes(boxes)  # [N, 7, 2]
    landmarks[face_idx] = kps[person_idx]
    return _with_landmarks(faces, landmarks), num_unmatched


def _with_landmarks(faces: FaceDetections, landmarks: torch.Tensor) -> FaceDetections:
    return FaceDetections(boxes_xyxy=faces.boxes_xyxy, scores=faces.scores, image_size_hw=faces.image_size_hw,
                          landmarks=landmarks.reshape(len(faces), 7, 2))


class DeepPrivacy1Detector:
    """Faces with DeepPrivacy1 keypoints: a face detector plus a person keypoint detector.

    Args:
        face_detector: callable ``image uint8 [3, H, W] -> FaceDetections`` (DP2: DSFD,
            :class:`dp2.detection.dsfd.DSFDFaceDetector`).
        keypoint_detector: callable ``image -> PersonKeypoints`` (anything with
            ``keypoints_xy`` [M, K>=7, 2]) or ``image -> Tensor [M, K>=7, 2|3]`` (DP2:
            :class:`dp2.detection.keypoints.KeypointRCNNPersonDetector`).
        fallback: ``"box_template"`` (default) keeps faces that match no skeleton, with
            keypoints synthesised from the face box; ``"drop"`` leaves them out like DP2,
            which leaves those faces un-anonymised.

    Calling it returns :class:`FaceDetections` with ``landmarks`` float32 [N, 7, 2] (x, y
    pixels; COCO nose, left/right eye, left/right ear, left/right shoulder). The first run
    that meets unmatched faces logs a WARNING with their count, later ones log at DEBUG;
    :attr:`num_unmatched_faces` holds the running total.
    """

    def __init__(self, *, face_detector: Callable[[torch.Tensor], FaceDetections], keypoint_detector: Callable,
                 fallback: str = "box_template") -> None:
        if fallback not in _FALLBACKS:
            raise ValueError(f"fallback must be one of {_FALLBACKS}, got {fallback!r}")
        self.face_detector = face_detector
        self.keypoint_detector = keypoint_detector
        self.fallback = fallback
        self.num_unmatched_faces = 0
        self._warned = False

    @property
    def score_threshold(self) -> float:
        """The face detector's score threshold (``--dst``), read and written through."""
        return self.face_detector.score_threshold

    @score_threshold.setter
    def score_threshold(self, value: float) -> None:
        self.face_detector.score_threshold = value

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(face_detector={self.face_detector!r}, "
                f"keypoint_detector={self.keypoint_detector!r}, fallback={self.fallback!r})")

    def __call__(self, image: torch.Tensor) -> FaceDetections:
        """Detect faces and attach 7 keypoints to each.

        Args:
            image: uint8 [3, H, W] RGB.

        Returns:
            FaceDetections with ``landmarks`` [N, 7, 2], in the face detector's order.
        """
        faces = self.face_detector(image)
        if len(faces) == 0:  # the keypoint model is the expensive part; nothing to match
            return _with_landmarks(faces, torch.zeros((0, 7, 2), device=faces.boxes_xyxy.device))
        persons = self.keypoint_detector(image)
        keypoints_xy = persons.keypoints_xy if hasattr(persons, "keypoints_xy") else persons[..., :2]
        result, num_unmatched = assign_dp1_keypoints(faces, keypoints_xy, fallback=self.fallback)
        if num_unmatched:
            self._report_unmatched(num_unmatched, len(faces))
        return result

    def _report_unmatched(self, num_unmatched: int, num_faces: int) -> None:
        self.num_unmatched_faces += num_unmatched
        if self.fallback == "drop":
            message = ("%d of %d faces match no Keypoint R-CNN skeleton and are dropped (fallback='drop', as "
                       "DeepPrivacy2): they stay un-anonymised")
        else:
            message = ("%d of %d faces match no Keypoint R-CNN skeleton; using keypoints from a face-box "
                       "template for them (DeepPrivacy2 would leave them un-anonymised)")
        if not self._warned:
            self._warned = True
            logger.warning(message + ". Further cases are logged at DEBUG level.", num_unmatched, num_faces)
        else:
            logger.debug(message, num_unmatched, num_faces)
