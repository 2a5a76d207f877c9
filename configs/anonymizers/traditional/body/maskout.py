"""Black silhouettes: every person's dilated mask filled with black."""
from dp2.config import LazyCall as L
from dp2.generation.classic import MaskOut

from .gaussian import anonymizer, detector  # noqa: F401

anonymizer.person.generator = L(MaskOut)(fill="black")
