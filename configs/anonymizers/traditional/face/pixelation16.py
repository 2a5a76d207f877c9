"""Pixelation with 16 blocks across each face region (DeepPrivacy2's pixelation16)."""
from dp2.config import LazyCall as L
from dp2.generation.classic import Pixelate

from .gaussian import anonymizer, detector  # noqa: F401

anonymizer.face.generator = L(Pixelate)(blocks=16)
