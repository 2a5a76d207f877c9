"""Run the doctested examples of the body-pipeline ops (also collected by --doctest-modules)."""
from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["dp2.ops.body_boxes", "dp2.ops.body_masks", "dp2.ops.cse", "dp2.ops.face_body_dedup", "dp2.ops.body_crop"]


@pytest.mark.parametrize("name", MODULES)
def test_body_ops_doctests(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
