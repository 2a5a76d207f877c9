"""Pixelation with up to 16 blocks across each face region (DeepPrivacy2's pixelation16).

Blocks are never under 10 px (dp2.generation.classic.MIN_BLOCK_PX), so small faces get fewer,
larger blocks instead of sub-pixel ones that change nothing.
"""
from dp2.config import LazyCall as L
from dp2.generation.classic import Pixelate

from .gaussian import anonymizer, detector  # noqa: F401

anonymizer.face.generator = L(Pixelate)(blocks=16)
