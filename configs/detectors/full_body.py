"""Persons from Mask R-CNN (torchvision v2) matched with DensePose CSE (pure PyTorch), as DP2's FB_cse.

Unlike DeepPrivacy2, persons without a CSE match are reported too (as persons without CSE), so
they are anonymized instead of leaked.
"""
from dp2.config import LazyCall as L
from dp2.detection.cse import CSEDetector
from dp2.detection.full_body import FullBodyDetector
from dp2.detection.maskrcnn import MaskRCNNPersonDetector

detector = L(FullBodyDetector)(
    person_detector=L(MaskRCNNPersonDetector)(score_threshold=0.3),
    cse_detector=L(CSEDetector)(score_threshold=0.3),
    face_detector=None,
    iou_combine_threshold=0.4,
    unmatched="persons",
    target_hw=(288, 160),
)
