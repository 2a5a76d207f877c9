"""Shared fixtures: paths to ../shared, tiny generated media, a fake-detector config."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import CONFORMANCE, CORPUS, FIXED_CONFIG, REPO, make_image  # noqa: F401

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


@pytest.fixture
def fixed_config(tmp_path) -> Path:
    """A config whose detector always reports one face at (20, 16)-(44, 40); black mask-out."""
    path = tmp_path / "fixed_config.py"
    path.write_text(FIXED_CONFIG.format(generator="MaskOut", args="fill='black'", boxes=[[20, 16, 44, 40]]))
    return path
