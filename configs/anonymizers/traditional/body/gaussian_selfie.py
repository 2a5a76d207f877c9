"""Offline body blur with MediaPipe's selfie segmentation model (needs `pip install .[selfie]` and the
model file; see dp2/detection/selfie.py). Semantic masks: weak on crowds and small people."""
from dp2.config import LazyCall as L
from dp2.detection.selfie import SelfiePersonSegmenter

from .gaussian import anonymizer, detector  # noqa: F401

detector.person_detector = L(SelfiePersonSegmenter)()
