"""DeepPrivacy2's FB_cse_mask.py: CSE persons plus the no-CSE generator for the others.

(In DeepPrivacy2 this behaved exactly like FB_cse.py because unmatched persons were dropped;
here FB_cse.py already renders them, so both files are the same pipeline.)
"""
from .FB_cse import anonymizer, detector  # noqa: F401
