"""Mask-out with real black (DeepPrivacy2's "blackout" was grey, its issue #15)."""
from dp2.config import LazyCall as L
from dp2.generation.classic import MaskOut

from .gaussian import anonymizer, detector  # noqa: F401

anonymizer.face.generator = L(MaskOut)(fill="black")
