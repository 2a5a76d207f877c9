"""Faces (FDF256), persons without CSE (FDH no-CSE) and CSE persons (FDH CSE): DP2's FB_cse_mask_face.py.

Faces strictly inside a person's dilated box are left to the body generator.
"""
from dp2.config import LazyCall as L
from dp2.detection.dsfd import DSFDFaceDetector
from dp2.generation.build import load_pretrained_generator
from dp2.stages import FaceCropStage

from .FB_cse import anonymizer, detector  # noqa: F401

detector.face_detector = L(DSFDFaceDetector)(score_threshold=0.3, nms_iou_threshold=0.3)
anonymizer.face = L(FaceCropStage)(generator=L(load_pretrained_generator)(kind="fdf256"), expansion="simple")
