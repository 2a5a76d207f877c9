"""Run the doctested examples of the face-pipeline ops."""
from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["dp2.ops.face_boxes", "dp2.ops.resize", "dp2.ops.face_crop", "dp2.ops.paste",
           "dp2.ops.dp1_keypoints", "dp2.generation.latents"]


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
