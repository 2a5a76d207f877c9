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




class SquareDetector:
    """Test detector: the bright square of a synthetic frame is the "face", unless the frame carries
    a miss flag (a bright 8x8 patch in the bottom-left corner), which simulates a detector miss."""

    def __init__(self, *, score_threshold: float = 0.5) -> None:
        self.score_threshold = score_threshold

    def __call__(self, image):
        import torch

        from dp2.structures import FaceDetections

        h, w = image.shape[1:]
        size_hw = (int(h), int(w))
        if image[:, h - 8:, :8].float().mean() > 200:
            return FaceDetections.empty(size_hw)
        bright = (image[:, : h - 8].float().mean(dim=0) > 230).nonzero()
        if len(bright) == 0:
            return FaceDetections.empty(size_hw)
        y0, x0 = bright.min(dim=0).values.tolist()
        y1, x1 = (bright.max(dim=0).values + 1).tolist()
        return FaceDetections(boxes_xyxy=torch.tensor([[x0, y0, x1, y1]]), scores=torch.ones(1), image_size_hw=size_hw)


def moving_square_frames(n: int = 30, h: int = 64, w: int = 96, misses=(5, 11, 12, 20)):
    """Frames with a 12x12 white square moving right; frames in ``misses`` carry the miss flag."""
    frames = []
    for i in range(n):
        image = np.full((h, w, 3), 60, np.uint8)
        x = 4 + 2 * i
        image[20:32, x:x + 12] = 255
        if i in misses:
            image[h - 8:, :8] = 250
        frames.append(image)
    return frames
