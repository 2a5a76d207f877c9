"""Face box expansion vs the original DP2 (functions/face_box_expansion, 300 cases)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from dp2.ops.face_boxes import expand_face_boxes, expand_face_boxes_fdf128, expand_face_boxes_simple


@pytest.fixture(scope="module")
def data(golden):
    arrays, _ = golden("face_box_expansion")
    return arrays


def test_golden_simple(data):
    out = expand_face_boxes_simple(torch.from_numpy(data["box"]))
    assert out.dtype == torch.int64
    np.testing.assert_array_equal(out.numpy(), data["simple_out"])
    assert len(out) == 300


def test_golden_fdf128(data):
    boxes = torch.from_numpy(data["box"])
    rows = [expand_face_boxes(boxes[i:i + 1], tuple(data["imshape"][i].tolist()), "fdf128")
            for i in range(len(boxes))]
    np.testing.assert_array_equal(torch.cat(rows).numpy(), data["fdf128_out"])


def test_golden_fdf128_fallback_cases_are_simple_07(data):
    fallback = data["fdf128_fallback"]
    assert fallback.sum() == 28
    expected = expand_face_boxes_simple(torch.from_numpy(data["box"][fallback]), 0.7).numpy()
    np.testing.assert_array_equal(expected, data["fdf128_out"][fallback])


@pytest.mark.parametrize("method", ["simple", "fdf128"])
def test_empty(method):
    out = expand_face_boxes(torch.zeros((0, 4), dtype=torch.int64), (50, 50), method)
    assert out.shape == (0, 4) and out.dtype == torch.int64


@pytest.mark.parametrize(
    "box, expected",
    [
        # w=20, h=30: centre (20, 35), side floor(42 / 2) * 2.
        ([10, 20, 30, 50], [-1, 14, 41, 56]),
        # odd sizes: w // 2 and side // 2 are floored.
        ([0, 0, 5, 5], [-1, -1, 5, 5]),
        # fully outside the image: not clipped.
        ([-30, -30, -10, -10], [-34, -34, -6, -6]),
    ],
)
def test_simple_hand_computed(box, expected):
    assert expand_face_boxes_simple(torch.tensor([box])).tolist() == [expected]


@pytest.mark.parametrize(
    "box, size_hw, expected",
    [
        # width grown 20 -> 30 centred, then +10 each side.
        ([40, 40, 60, 70], (100, 100), [25, 30, 75, 80]),
        # touching the top-left corner: clamped at 0.
        ([0, 0, 20, 10], (100, 100), [0, 0, 34, 34]),
        # touching the bottom-right corner: shifted back inside.
        ([80, 90, 100, 100], (100, 100), [66, 66, 100, 100]),
        # growth capped by (H - side) // 2.
        ([0, 0, 20, 20], (24, 100), [0, 0, 24, 24]),
        # partly outside: the original asserts, fallback simple 0.7.
        ([-5, 0, 15, 20], (100, 100), [-12, -7, 22, 27]),
        ([90, 90, 110, 100], (100, 100), [83, 78, 117, 112]),
        # a side longer than min(H, W): fallback.
        ([0, 0, 30, 10], (20, 100), [-10, -20, 40, 30]),
    ],
)
def test_fdf128_hand_computed(box, size_hw, expected):
    assert expand_face_boxes_fdf128(torch.tensor([box]), size_hw).tolist() == [expected]


def test_convention_outputs_are_square():
    boxes = torch.tensor([[3, 4, 17, 40], [50, 10, 90, 21]])
    for method in ("simple", "fdf128"):
        out = expand_face_boxes(boxes, (60, 100), method)
        assert torch.equal(out[:, 2] - out[:, 0], out[:, 3] - out[:, 1])


def test_errors():
    with pytest.raises(ValueError, match="method"):
        expand_face_boxes(torch.zeros((0, 4), dtype=torch.int64), (5, 5), "nope")
    with pytest.raises(ValueError, match=r"\[N, 4\]"):
        expand_face_boxes_simple(torch.zeros((3, 5), dtype=torch.int64))
