"""DeepPrivacy2's market1501/blackout.py: market1501/person.py with every person filled in black.

DP2's "constant" mask-out painted mid-grey here (its issue #15, "Black Mask"); this fills black, as
the name says (``--opt anonymizer.person.generator.fill=grey`` and the same for ``cse_person`` give
DP2's grey).
"""
from dp2.config import LazyCall as L
from dp2.generation.classic import MaskOut
from dp2.stages import MaskFilterStage

from .person import anonymizer, detector  # noqa: F401

anonymizer.person = L(MaskFilterStage)(generator=L(MaskOut)(fill="black"), dilation=0.02)
anonymizer.cse_person = L(MaskFilterStage)(generator=L(MaskOut)(fill="black"), dilation=0.02)
