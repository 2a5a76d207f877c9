"""Realistic faces with the FDF128 generator (DeepPrivacy2's configs/anonymizers/face_fdf128.py)."""
from .face import anonymizer, detector  # noqa: F401
from ..fdf.stylegan_fdf128 import generator  # noqa: F401

anonymizer.face.expansion = "fdf128"
