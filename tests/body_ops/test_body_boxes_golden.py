"""Person box chain (dp2.ops.body_boxes) vs the original DP2 (functions/body_preprocess)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from dp2.ops.body_boxes import (expand_axis, expand_axises_by_percentage, expand_bbox_to_ratio, expand_box,
                                expand_person_boxes, include_box, masks_to_boxes)
from body_ops_fixtures import body_golden, _one_torch_thread  # noqa: F401 (pytest fixtures)


N_IMAGES = 28


@pytest.fixture(scope="module")
def data(body_golden):
    return body_golden("functions/body_preprocess")


def test_golden_counts(data):
    arrays, sidecar = data
    assert len(sidecar["images"]) == N_IMAGES
    assert sum(im["n_in"] for im in sidecar["images"]) == 69
    assert sum(im["n_out"] for im in sidecar["images"]) == 41


@pytest.mark.parametrize("k", range(N_IMAGES))
def test_golden_intermediates(data, k):
    arrays, _ = data
    seg = torch.from_numpy(arrays[f"seg_{k}"])
    imshape = tuple(seg.shape[1:])
    np.testing.assert_array_equal(masks_to_boxes(seg).numpy(), arrays[f"box_masks_to_boxes_{k}"])
    for i in range(seg.shape[0]):
        # Each step is fed the golden output of the previous one, so a failure points at one step.
        b0 = arrays[f"box_masks_to_boxes_{k}"][i]
        b1 = arrays[f"box_after_axis_expansion_{k}"][i]
        b2 = arrays[f"box_after_ratio_{k}"][i]
        b3 = arrays[f"box_expanded_{k}"][i]
        assert list(expand_axises_by_percentage(b0, imshape, 0.1)) == b1.tolist()
        assert list(expand_bbox_to_ratio(b1, imshape, 288 / 160)) == b2.tolist()
        assert list(expand_box(b2, imshape, seg[i], 0.3)) == b3.tolist()
        assert include_box(b3, imshape) == bool(arrays[f"included_{k}"][i])


@pytest.mark.parametrize("k", range(N_IMAGES))
def test_golden_composed(data, k):
    arrays, _ = data
    boxes, keep = expand_person_boxes(torch.from_numpy(arrays[f"seg_{k}"]))
    assert boxes.dtype == torch.int64 and keep.dtype == torch.bool
    np.testing.assert_array_equal(boxes.numpy(), arrays[f"box_expanded_{k}"])
    np.testing.assert_array_equal(keep.numpy(), arrays[f"included_{k}"])


# ---------------------------------------------------------------- hand-made cases

def _masks(h, w, *rects):
    m = torch.zeros((len(rects), h, w), dtype=torch.bool)
    for i, (x0, y0, x1, y1) in enumerate(rects):
        m[i, y0:y1, x0:x1] = True
    return m


@pytest.mark.parametrize("rect", [(0, 0, 6, 4), (0, 0, 1, 1), (5, 3, 6, 4), (2, 1, 4, 3), (0, 2, 6, 3)],
                         ids=["whole", "top-left", "bottom-right", "inner", "full-row"])
def test_masks_to_boxes_half_open(rect):
    assert masks_to_boxes(_masks(4, 6, rect)).tolist() == [list(rect)]


def test_convention_masks_to_boxes_empty_mask_is_whole_image():
    # DP2 takes argmax of the row/column projections: an empty mask yields (0, 0, W, H).
    assert masks_to_boxes(torch.zeros((1, 4, 6), dtype=torch.bool)).tolist() == [[0, 0, 6, 4]]


def test_masks_to_boxes_zero_instances():
    out = masks_to_boxes(torch.zeros((0, 5, 7), dtype=torch.bool))
    assert out.shape == (0, 4) and out.dtype == torch.int64


@pytest.mark.parametrize(
    "args, expected",
    [
        ((10, 20, 10, 100), (10, 20)),      # already the target length
        ((10, 20, 15, 100), (8, 23)),       # odd growth: the extra pixel goes to the end
        ((2, 12, 20, 100), (0, 20)),        # would start at -3: shifted right
        ((85, 95, 20, 100), (80, 100)),     # would end at 100 + 1: shifted left
        ((0, 100, 100, 100), (0, 100)),     # touches both borders
        ((10, 90, 110, 100), (-5, 105)),    # out on both sides: kept
        ((2, 12, 120, 100), (-20, 100)),    # DP2 shifts right, then left: flush with the far side
        ((90, 100, 120, 100), (-20, 100)),  # longer than the image, out on the far side only
    ],
)
def test_expand_axis_table(args, expected):
    start, end = expand_axis(*args)
    assert (start, end) == expected and end - start == args[2]


def test_expand_axises_by_percentage_caps_at_image_size():
    # e = int(sqrt(100 * 20) * 0.1) = 4; the width 20 + 4 fits, the height 100 + 4 is capped at 100.
    assert expand_axises_by_percentage((5, 0, 25, 100), (100, 50)) == (3, 0, 27, 100)


@pytest.mark.parametrize(
    "box, expected",
    [
        ((10, 10, 30, 46), (10, 10, 30, 46)),  # exactly 1.8: unchanged
        ((10, 10, 30, 20), (10, 0, 30, 36)),   # too wide: height -> int(20 * 1.8) = 36, shifted inside
        ((40, 0, 50, 100), (18, 0, 73, 100)),  # too tall: width -> int(100 / 1.8) = 55 (truncated)
        ((0, 0, 7, 10), (0, 0, 7, 12)),        # height -> int(7 * 1.8) = int(12.6) = 12
    ],
)
def test_expand_bbox_to_ratio_table(box, expected):
    assert expand_bbox_to_ratio(box, (100, 100), 1.8) == expected


def test_expand_box_grows_when_mask_fills_the_box():
    # 150 mask px in a 10 x 18 box: 1 - 150/180 = 0.17 <= 0.3, so p = sqrt(150 / 0.7 / 180) = 1.0911.
    assert expand_box((40, 40, 50, 58), (100, 100), 150, 0.3) == (40, 39, 51, 59)
    mask = torch.zeros((100, 100), dtype=torch.bool)
    mask[40:55, 40:50] = True  # the same count as a mask
    assert expand_box((40, 40, 50, 58), (100, 100), mask, 0.3) == (40, 39, 51, 59)
    assert expand_box((40, 40, 50, 58), (100, 100), 120, 0.3) == (40, 40, 50, 58)  # 1 - 2/3 > 0.3


def test_expand_box_counts_mask_pixels_outside_the_box():
    mask = torch.zeros((100, 100), dtype=torch.bool)
    mask[0:5, 0:30] = True  # 150 px, none inside the box
    assert expand_box((40, 40, 50, 58), (100, 100), mask, 0.3) == (40, 39, 51, 59)


@pytest.mark.parametrize(
    "box, keep",
    [((0, 0, 32, 32), True), ((0, 0, 31, 33), False), ((-40, -40, -8, -8), True), ((0, 0, 1024, 1), True)],
    ids=["area-1024", "area-1023", "outside-image", "flat"],
)
def test_include_box_only_area_matters_with_dp2_settings(box, keep):
    assert include_box(box, (100, 100)) is keep


def test_include_box_other_filters():
    assert not include_box((0, 0, 40, 40), (100, 100), aspect_ratio_range=(0, 1.0))  # h / w == 1 is excluded
    assert not include_box((-30, 0, 10, 40), (100, 100), min_bbox_ratio_inside=0.5)  # 25 % inside


def test_expand_person_boxes_zero_persons():
    boxes, keep = expand_person_boxes(torch.zeros((0, 50, 40), dtype=torch.bool))
    assert boxes.shape == (0, 4) and boxes.dtype == torch.int64
    assert keep.shape == (0,) and keep.dtype == torch.bool


def test_expand_person_boxes_mask_touching_the_border():
    seg = _masks(120, 100, (0, 30, 25, 120))  # touches the left and bottom borders
    boxes, keep = expand_person_boxes(seg)
    x0, y0, x1, y1 = boxes[0].tolist()
    assert keep.tolist() == [True]
    assert x0 == 0 and y1 == 120  # grown and shifted back inside on one side each
    assert (y1 - y0) / (x1 - x0) == pytest.approx(1.8, abs=0.05)


def test_expand_person_boxes_union_with_extra_boxes():
    seg = _masks(200, 200, (80, 50, 120, 150))
    plain, _ = expand_person_boxes(seg)
    merged, _ = expand_person_boxes(seg, extra_boxes=torch.tensor([[60, 40, 110, 160]]))
    assert merged.tolist() != plain.tolist()
    x0, y0, x1, y1 = merged[0].tolist()
    assert x0 <= 60 and y0 <= 40 and x1 >= 120 and y1 >= 160


def test_expand_person_boxes_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"\[N, H, W\]"):
        expand_person_boxes(torch.zeros((4, 4), dtype=torch.bool))
    with pytest.raises(ValueError, match="extra_boxes"):
        expand_person_boxes(torch.zeros((1, 4, 4), dtype=torch.bool), extra_boxes=torch.zeros((2, 4)))
