"""face_fdf128.py with the bundled offline CenterFace detector."""
from .face_fdf128 import anonymizer, generator  # noqa: F401
from ..detectors.centerface import detector  # noqa: F401
