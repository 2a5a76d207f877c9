"""Shared fixtures for the ops tests: the golden conformance data made with the original DP2."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[2]
GOLDEN_DIR = REPO_ROOT.parent / "shared" / "conformance"

# Let `pytest tests/ops` import dp2 without an installed package.
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))


@pytest.fixture(scope="session")
def golden():
    """``golden(name) -> (arrays, sidecar)`` for ``functions/<name>.{npz,json}``.

    Skips the requesting test only when the whole golden folder is absent; a missing file
    inside it is an error.
    """
    cache: dict[str, tuple[dict[str, np.ndarray], dict]] = {}

    def load(name: str) -> tuple[dict[str, np.ndarray], dict]:
        if not GOLDEN_DIR.is_dir():
            pytest.skip("../shared/conformance not found: golden data absent")
        if name not in cache:
            folder = GOLDEN_DIR / "functions"
            with np.load(folder / f"{name}.npz") as npz:
                arrays = {key: npz[key] for key in npz.files}
            cache[name] = arrays, json.loads((folder / f"{name}.json").read_text())
        return cache[name]

    return load


@pytest.fixture(params=["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
def device(request) -> torch.device:
    return torch.device(request.param)
