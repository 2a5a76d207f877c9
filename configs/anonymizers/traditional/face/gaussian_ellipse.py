"""Feathered elliptical blur (softer look; the ellipse still contains every detected box)."""
from .gaussian import anonymizer, detector  # noqa: F401

anonymizer.face.shape = "ellipse"
anonymizer.face.feather = 0.1
