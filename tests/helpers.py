"""Helpers shared by tests (imported as ``helpers``; ``conftest`` is ambiguous with nested folders)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from dp2.detection.fixed import FixedFaceDetector

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


class FastModeSquareDetector(SquareDetector):
    """:class:`SquareDetector` with a fast mode; counts full and fast calls (class-wide, for CLI tests)."""

    calls = {"full": 0, "fast": 0}

    def __call__(self, image):
        self.calls["full"] += 1
        return super().__call__(image)

    def detect_fast(self, image):
        self.calls["fast"] += 1
        return super().__call__(image)


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


# --- Ray tests: detectors that misbehave like real workers do (imported by workers as helpers.*) ---

WORKER_HAZARD_CONFIG = """
from dp2.anonymizer import Anonymizer
from dp2.stages import RegionFilterStage
from dp2.config import LazyCall as L
from dp2.generation.classic import MaskOut
from helpers import {detector}

detector = L({detector})(boxes=[[20, 16, 44, 40]], {args})
anonymizer = L(Anonymizer)(detector="${{detector}}",
                           face=L(RegionFilterStage)(generator=L(MaskOut)(fill='black'), mask_scale=1.3))
"""


class DyingDetector(FixedFaceDetector):
    """FixedFaceDetector's boxes, but the process dies (``os._exit``, like a segfault or an OOM kill)
    on an image of ``die_on_size_hw``: once when ``once_marker`` is given (the file records that it
    happened), on every such image without it."""

    def __init__(self, *, die_on_size_hw, once_marker=None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.die_on_size_hw = tuple(die_on_size_hw)
        self.once_marker = once_marker

    def __call__(self, image):
        import os

        if tuple(image.shape[1:]) == self.die_on_size_hw:
            if self.once_marker is None:
                os._exit(1)
            try:
                os.close(os.open(self.once_marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                pass
            else:
                os._exit(1)
        return super().__call__(image)


class SlowDetector(FixedFaceDetector):
    """FixedFaceDetector's boxes after ``delay_s`` per frame (so that a run can be killed midway)."""

    def __init__(self, *, delay_s: float, **kwargs) -> None:
        super().__init__(**kwargs)
        self.delay_s = delay_s

    def __call__(self, image):
        import time

        time.sleep(self.delay_s)
        return super().__call__(image)


class ChattyFixedDetector(FixedFaceDetector):
    """:class:`FixedFaceDetector` that logs a warning on every frame and takes a moment: for the
    pseudo-terminal test that log lines land above progress bars, never inside them."""

    def __call__(self, image):
        import logging
        import time

        logging.getLogger("dp2.tests").warning("chatty detector saw a %dx%d frame", image.shape[2], image.shape[1])
        time.sleep(0.12)
        return super().__call__(image)
