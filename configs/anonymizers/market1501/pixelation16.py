"""DeepPrivacy2's market1501/pixelation16.py: as pixelation8.py with 16 blocks."""
from .pixelation8 import anonymizer, detector  # noqa: F401

anonymizer.person.generator.blocks = 16
anonymizer.cse_person.generator.blocks = 16
