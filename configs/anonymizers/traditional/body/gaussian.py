"""Gaussian blur over every person's (dilated) Mask R-CNN mask, at the image's resolution."""
from dp2.anonymizer import Anonymizer
from dp2.config import LazyCall as L
from dp2.detection.full_body import FullBodyDetector
from dp2.detection.maskrcnn import MaskRCNNPersonDetector
from dp2.generation.classic import GaussianBlur
from dp2.stages import MaskFilterStage

detector = L(FullBodyDetector)(person_detector=L(MaskRCNNPersonDetector)(score_threshold=0.3))
anonymizer = L(Anonymizer)(
    detector="${detector}",
    person=L(MaskFilterStage)(generator=L(GaussianBlur)(sigma_fraction=0.05), dilation=0.02),
    device=None,
)
