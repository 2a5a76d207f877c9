"""Pixelation with up to 8 blocks across each face region (DeepPrivacy2's pixelation8).

Blocks are never under 10 px (dp2.generation.classic.MIN_BLOCK_PX).
"""
from dp2.config import LazyCall as L
from dp2.generation.classic import Pixelate

from .gaussian import anonymizer, detector  # noqa: F401

anonymizer.face.generator = L(Pixelate)(blocks=8)
