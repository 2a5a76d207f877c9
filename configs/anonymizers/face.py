"""Realistic faces with the FDF256 generator and DSFD, as DeepPrivacy2's configs/anonymizers/face.py."""
from dp2.anonymizer import Anonymizer
from dp2.config import LazyCall as L
from dp2.stages import FaceCropStage

from ..detectors.dsfd import detector
from ..fdf.stylegan import generator

anonymizer = L(Anonymizer)(
    detector="${detector}",
    face=L(FaceCropStage)(generator="${generator}", expansion="simple", batch_size=None, feather_px=0),
    device=None,
)
