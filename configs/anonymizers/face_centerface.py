"""face.py with the bundled offline CenterFace detector: needs only the generator weights."""
from .face import anonymizer, generator  # noqa: F401
from ..detectors.centerface import detector  # noqa: F401
