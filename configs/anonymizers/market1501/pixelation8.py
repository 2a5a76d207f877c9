"""DeepPrivacy2's market1501/pixelation8.py: market1501/person.py with every person pixelated,
8 blocks along its longer side."""
from dp2.config import LazyCall as L
from dp2.generation.classic import Pixelate
from dp2.stages import MaskFilterStage

from .person import anonymizer, detector  # noqa: F401

anonymizer.person = L(MaskFilterStage)(generator=L(Pixelate)(blocks=8), dilation=0.02)
anonymizer.cse_person = L(MaskFilterStage)(generator=L(Pixelate)(blocks=8), dilation=0.02)
