"""Fixtures for the body-pipeline ops tests: golden data made with the original DP2.

Test modules import them (``from body_ops_fixtures import ...``); a ``conftest.py`` here would
clash with the other ``conftest`` modules under ``--doctest-modules``.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFORMANCE_DIR = REPO_ROOT.parent / "shared" / "conformance"

# Let `pytest tests/body_ops` import dp2 without an installed package.
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))


def _load(path: Path) -> tuple[dict[str, np.ndarray], dict]:
    with np.load(path.with_suffix(".npz")) as npz:
        arrays = {key: npz[key] for key in npz.files}
    return arrays, json.loads(path.with_suffix(".json").read_text())


@pytest.fixture(scope="session")
def body_golden():
    """``body_golden("functions/body_preprocess") -> (arrays, sidecar)``.

    Skips only when the whole conformance folder is absent; a missing file inside it fails.
    """
    cache: dict[str, tuple[dict[str, np.ndarray], dict]] = {}

    def load(name: str) -> tuple[dict[str, np.ndarray], dict]:
        if not CONFORMANCE_DIR.is_dir():
            pytest.skip("../shared/conformance not found: golden data absent")
        if name not in cache:
            cache[name] = _load(CONFORMANCE_DIR / name)
        return cache[name]

    return load


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """These ops work on small tensors; on the shared 2-core host, two intra-op threads spin
    against each other and run ~20x slower than one. Restored after each test."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(params=["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
def device(request) -> torch.device:
    return torch.device(request.param)
