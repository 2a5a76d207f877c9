"""Helpers shared by tests (imported as ``helpers``; ``conftest`` is ambiguous with nested folders)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
CONFORMANCE = SHARED / "conformance"
CORPUS = SHARED / "corpus"


def make_image(h: int = 64, w: int = 80, seed: int = 0) -> np.ndarray:
    """A structured RGB uint8 test image (gradients plus noise)."""
    rng = np.random.RandomState(seed)
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([x * 255 / max(w - 1, 1), y * 255 / max(h - 1, 1), (x + y) % 64 * 4], axis=2)
    img = img + rng.randint(-20, 20, size=img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


FIXED_CONFIG = """
from dp2.anonymizer import Anonymizer
from dp2.stages import RegionFilterStage
from dp2.config import LazyCall as L
from dp2.detection.fixed import FixedFaceDetector
from dp2.generation.classic import {generator}

detector = L(FixedFaceDetector)(boxes={boxes})
anonymizer = L(Anonymizer)(detector="${{detector}}",
                           face=L(RegionFilterStage)(generator=L({generator})({args}), mask_scale=1.3))
"""


