"""Shared fixtures: paths to ../shared, tiny generated media, a fake-detector config."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
CONFORMANCE = SHARED / "conformance"
CORPUS = SHARED / "corpus"

torch.set_num_threads(min(2, torch.get_num_threads()))
os.environ.setdefault("DP2_NO_PROGRESS", "1")


def pytest_collection_modifyitems(config, items):
    weights_dir = os.environ.get("DP2_WEIGHTS_DIR")
    if weights_dir and Path(weights_dir).is_dir() and any(Path(weights_dir).iterdir()):
        return
    skip = pytest.mark.skip(reason="real weights absent: set DP2_WEIGHTS_DIR to a folder with the official files")
    for item in items:
        if "weights" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def corpus() -> Path:
    if not CORPUS.is_dir():
        pytest.skip("../shared/corpus not found: real-media tests need it")
    return CORPUS


@pytest.fixture
def conformance() -> Path:
    if not CONFORMANCE.is_dir():
        pytest.skip("../shared/conformance not found: golden data absent")
    return CONFORMANCE


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


@pytest.fixture
def fixed_config(tmp_path) -> Path:
    """A config whose detector always reports one face at (20, 16)-(44, 40); black mask-out."""
    path = tmp_path / "fixed_config.py"
    path.write_text(FIXED_CONFIG.format(generator="MaskOut", args="fill='black'", boxes=[[20, 16, 44, 40]]))
    return path
