"""Mask-out as DeepPrivacy2's "constant" mask-out paints it: mid-grey."""
from dp2.config import LazyCall as L
from dp2.generation.classic import MaskOut

from .gaussian import anonymizer, detector  # noqa: F401

anonymizer.face.generator = L(MaskOut)(fill="grey")
