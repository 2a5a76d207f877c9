"""cut_pad_resize / crop_pad vs the original DP2 (functions/cut_pad_resize, 163 cases)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from dp2.ops.resize import crop_pad, cut_pad_resize

N_CASES = 163
SOURCE_PREFIX = {0: "image_", 1: "mask_", 2: "fimage_"}


@pytest.fixture(scope="module")
def data(golden):
    return golden("cut_pad_resize")


def test_golden_case_count(data):
    arrays, sidecar = data
    assert len(sidecar["cases"]) == N_CASES == len(arrays["case_box"])


@pytest.mark.parametrize("i", range(N_CASES))
def test_golden_case(data, i):
    arrays, sidecar = data
    case = sidecar["cases"][i]
    src = arrays[SOURCE_PREFIX[int(arrays["case_src_kind"][i])] + str(int(arrays["case_src_index"][i]))]
    out = cut_pad_resize(torch.from_numpy(src), arrays["case_box"][i].tolist(),
                         tuple(arrays["case_target"][i].tolist()), bool(arrays["case_fdf_resize"][i]))
    expected = arrays[f"out_{i:03d}"]
    assert list(out.shape) == case["out_shape"]
    assert out.numpy().dtype == expected.dtype
    # Integer, bool and float outputs are all exact: same torch / OpenCV calls as DP2.
    np.testing.assert_array_equal(out.numpy(), expected, err_msg=f"{case['group']} via {case['path']}")


def test_golden_quirk_cases_without_quirk_have_target_size(data):
    arrays, sidecar = data
    for i, case in enumerate(sidecar["cases"]):
        if case["group"] != "quirk_clipped_size_equals_target":
            continue
        src = arrays[SOURCE_PREFIX[int(arrays["case_src_kind"][i])] + str(int(arrays["case_src_index"][i]))]
        target = tuple(case["target"])
        out = cut_pad_resize(torch.from_numpy(src), case["box"], target, case["fdf_resize"], dp2_quirk=False)
        assert tuple(out.shape[1:]) == target and out.dtype == torch.from_numpy(src).dtype


IMG = torch.arange(1, 13, dtype=torch.uint8).reshape(1, 3, 4)  # rows 1..4, 5..8, 9..12


@pytest.mark.parametrize(
    "box, expected",
    [
        ((0, 0, 4, 3), IMG[0].tolist()),  # whole image, touching every border
        ((1, 1, 3, 2), [[6, 7]]),
        ((-1, -1, 1, 1), [[0, 0], [0, 1]]),  # top-left corner outside
        ((3, 2, 5, 4), [[12, 0], [0, 0]]),  # bottom-right corner outside
        ((5, 0, 7, 1), [[0, 0]]),  # fully outside
    ],
)
def test_crop_pad_hand_computed(box, expected):
    assert crop_pad(IMG, box)[0].tolist() == expected


def test_crop_pad_does_not_alias_input():
    out = crop_pad(IMG, (0, 0, 4, 3))
    out[0, 0, 0] = 99
    assert IMG[0, 0, 0] == 1


def test_nearest_when_smaller_in_both_dims():
    out = cut_pad_resize(IMG, (0, 0, 2, 2), (4, 4))
    assert out[0].tolist() == [[1, 1, 2, 2], [1, 1, 2, 2], [5, 5, 6, 6], [5, 5, 6, 6]]


def test_bool_mask_nearest_threshold():
    mask = torch.tensor([[[True, False], [False, True]]])
    out = cut_pad_resize(mask, (0, 0, 2, 2), (3, 5))
    assert out.dtype == torch.bool and out.shape == (1, 3, 5)
    assert out[0, 0].tolist() == [True, True, True, False, False]


def test_same_size_box_is_returned_unchanged():
    out = cut_pad_resize(IMG, (0, 0, 4, 3), (3, 4), fdf_resize=True)
    assert torch.equal(out, IMG)


@pytest.mark.parametrize("fdf_resize", [False, True])
def test_quirk_flag(fdf_resize):
    box = (-2, 0, 4, 3)  # clipped 3x4 == target, padded 3x6
    assert cut_pad_resize(IMG, box, (3, 4), fdf_resize).shape == (1, 3, 6)
    out = cut_pad_resize(IMG, box, (3, 4), fdf_resize, dp2_quirk=False)
    assert out.shape == (1, 3, 4) and out.dtype == torch.uint8


def test_fully_outside_box_gives_zeros():
    out = cut_pad_resize(IMG, (10, 10, 14, 14), (8, 8))
    assert out.shape == (1, 8, 8) and not out.any()


def test_float_field_keeps_dtype():
    field = torch.rand(2, 10, 10)
    assert cut_pad_resize(field, (0, 0, 10, 10), (16, 8)).dtype == torch.float32


def test_device(device):
    img = torch.randint(0, 255, (3, 20, 30), dtype=torch.uint8, device=device)
    for fdf in (False, True):
        for box in ((2, 3, 12, 13), (-5, -5, 40, 40)):
            out = cut_pad_resize(img, box, (16, 16), fdf)
            assert out.device == img.device and out.shape == (3, 16, 16) and out.dtype == torch.uint8


@pytest.mark.parametrize("box", [(0, 0, 0, 4), (3, 0, 1, 2)])
def test_empty_box_raises(box):
    with pytest.raises(ValueError, match="positive width and height"):
        cut_pad_resize(IMG, box, (4, 4))


def test_wrong_rank_raises():
    with pytest.raises(ValueError, match=r"\[C, H, W\]"):
        crop_pad(torch.zeros(4, 4), (0, 0, 2, 2))
