"""Moved to :mod:`dp2.structures.serialize` (the detections format sits below ``dp2.io``, which
reads and writes it); this name keeps old imports working."""
from ..structures.serialize import *  # noqa: F401,F403
from ..structures.serialize import __all__  # noqa: F401
