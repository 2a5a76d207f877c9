"""Person crop masks and the full PersonDetection pre-processing vs DP2 (functions/body_preprocess)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dp2.ops.body_masks import (binary_dilation, dilated_boxes_from_masks, dilation_radius, disk,
                                person_crop_masks, preprocess_persons, remove_dilate_in_pad)
from body_ops_fixtures import body_golden, _one_torch_thread, device  # noqa: F401 (pytest fixtures)


N_IMAGES = 28
OUTPUTS = [("boxes", "out_boxes"), ("keep_mask", "out_mask"), ("maskrcnn_mask", "out_maskrcnn_mask"),
           ("dilated_boxes", "out_dilated_boxes"), ("segmentation", "out_segmentation")]


@pytest.fixture(scope="module")
def data(body_golden):
    return body_golden("functions/body_preprocess")


@pytest.mark.parametrize("k", range(N_IMAGES))
def test_golden_preprocess_persons(data, k):
    arrays, sidecar = data
    seg = torch.from_numpy(arrays[f"seg_{k}"])
    out = preprocess_persons(seg, tuple(seg.shape[1:]))
    assert len(out.boxes) == sidecar["images"][k]["n_out"]
    for field, key in OUTPUTS:
        got, expected = getattr(out, field).numpy(), arrays[f"{key}_{k}"]
        assert got.dtype == expected.dtype, field
        np.testing.assert_array_equal(got, expected, err_msg=field)
    # indices point back into the input, in the sorted order
    np.testing.assert_array_equal(seg[out.indices].numpy(), arrays[f"out_segmentation_{k}"])


def test_golden_crop_masks_in_input_order(data):
    """person_crop_masks on the golden boxes: same masks as DP2 before its area sort."""
    arrays, sidecar = data
    checked = 0
    for k in range(N_IMAGES):
        seg = torch.from_numpy(arrays[f"seg_{k}"])
        kept = torch.from_numpy(arrays[f"included_{k}"])
        boxes = torch.from_numpy(arrays[f"box_expanded_{k}"])[kept]
        keep_mask, maskrcnn_mask, dilated_boxes = person_crop_masks(seg[kept], boxes)
        np.testing.assert_array_equal(dilated_boxes.numpy(), arrays[f"out_dilated_boxes_{k}"])
        order = torch.argsort(seg[kept].sum(dim=(1, 2)))
        np.testing.assert_array_equal(keep_mask[order].numpy(), arrays[f"out_mask_{k}"])
        np.testing.assert_array_equal(maskrcnn_mask[order].numpy(), arrays[f"out_maskrcnn_mask_{k}"])
        checked += len(boxes)
    assert checked == 41


def test_golden_dilation_is_removed_in_the_padding_with_the_height_ratio(data):
    """The golden masks distinguish DP2's height-ratio quirk from the 'natural' width ratio."""
    arrays, _ = data
    differs = 0
    for k in range(N_IMAGES):
        boxes, masks = arrays[f"out_boxes_{k}"], arrays[f"out_mask_{k}"]
        seg = arrays[f"out_segmentation_{k}"]
        H, W = seg.shape[1:]
        for box, mask in zip(boxes.tolist(), masks):
            x0, y0, x1, y1 = box
            left_h = int(np.floor(max(-x0, 0) / (y1 - y0) * 288))
            left_w = int(np.floor(max(-x0, 0) / (x1 - x0) * 160))
            right_h = int(np.floor(max(x1 - W, 0) / (y1 - y0) * 288))
            right_w = int(np.floor(max(x1 - W, 0) / (x1 - x0) * 160))
            assert mask[0, :, :left_h].all() and mask[0, :, 160 - right_h:].all()
            if right_h != right_w:  # image 21: 25 columns cleared, not 26
                differs += 1
                assert not mask[0, :, 160 - right_w:].all()
    assert differs > 0


# ---------------------------------------------------------------- hand-made cases

def test_disk_matches_skimage():
    skm = pytest.importorskip("skimage.morphology")
    for r in range(7):
        np.testing.assert_array_equal(disk(r).numpy(), skm.disk(r).astype(np.uint8))


def test_convention_dilation_radius_is_4_for_fdh():
    assert dilation_radius((288, 160), 0.02) == 4
    assert disk(4).shape == (9, 9) and int(disk(4).sum()) == 49


def test_binary_dilation_equals_max_filter_and_keeps_borders_open():
    g = torch.Generator().manual_seed(0)
    m = torch.rand((3, 1, 40, 30), generator=g) > 0.97
    m[0, 0, 0, 0] = m[1, 0, -1, -1] = True  # corner pixels: the border acts as background
    k = disk(4)
    got = binary_dilation(m, k)
    # reference: OR of shifted copies
    ref = torch.zeros_like(m)
    padded = F.pad(m, (4, 4, 4, 4))
    for dy, dx in k.nonzero().tolist():
        ref |= padded[:, :, dy:dy + 40, dx:dx + 30]
    assert torch.equal(got, ref)


def test_remove_dilate_in_pad_uses_the_height_ratio_for_all_sides():
    mask = torch.ones((1, 288, 160), dtype=torch.bool)
    # box 100 x 180 px, 10 px left and 20 px bottom outside a 160 x 90 image
    out = remove_dilate_in_pad(mask, (-10, 0, 90, 180), (160, 90))
    left = 10 * 288 // 180  # 16 columns (the width ratio would give 16 as well: 10 * 160 // 100)
    bottom = 20 * 288 // 180  # 32 rows
    assert not out[0, :, :left].any() and out[0, :-bottom, left:].all() and not out[0, -bottom:].any()
    out = remove_dilate_in_pad(mask, (-30, 0, 90, 180), (180, 90))  # 30 px left: height ratio 48, width 40
    assert not out[0, :, :48].any() and out[0, :, 48:].all()
    assert torch.equal(remove_dilate_in_pad(mask, (0, 0, 90, 180), (180, 90)), mask)  # no padding: unchanged
    assert mask.all()  # input untouched


def test_dilated_boxes_from_masks_floor_division():
    m = torch.zeros((2, 1, 288, 160), dtype=torch.bool)
    m[0, 0, 1:283, 15:141] = True
    m[1, 0, :, :] = True
    boxes = torch.tensor([[79, 177, 113, 239], [-5, -9, 30, 54]])
    # 15 * 34 // 160 = 3, 141 * 34 // 160 = 29, 1 * 62 // 288 = 0, 283 * 62 // 288 = 60
    assert dilated_boxes_from_masks(m, boxes).tolist() == [[82, 177, 108, 237], [-5, -9, 30, 54]]


def test_preprocess_persons_zero_persons():
    out = preprocess_persons(torch.zeros((0, 60, 50), dtype=torch.bool))
    assert out.boxes.shape == (0, 4) and out.dilated_boxes.shape == (0, 4)
    assert out.keep_mask.shape == (0, 1, 288, 160) and out.keep_mask.dtype == torch.bool
    assert out.maskrcnn_mask.shape == (0, 1, 288, 160) and out.segmentation.shape == (0, 60, 50)
    assert out.indices.shape == (0,)


def test_preprocess_persons_all_filtered():
    seg = torch.zeros((2, 60, 50), dtype=torch.bool)
    seg[0, 1:4, 1:3] = True
    seg[1, 50:52, 40:41] = True
    out = preprocess_persons(seg)
    assert len(out.boxes) == 0 and out.keep_mask.shape == (0, 1, 288, 160)


def test_preprocess_persons_mask_touching_the_border(device):
    seg = torch.zeros((2, 150, 60), dtype=torch.bool, device=device)
    seg[0, 20:150, 0:40] = True   # left and bottom border; the 76 px wide box cannot fit in 60 px
    seg[1, 10:60, 40:55] = True   # small, inside
    out = preprocess_persons(seg)
    assert out.indices.tolist() == [1, 0]  # ascending area
    assert out.boxes.device.type == device.type
    x0, y0, x1, y1 = out.boxes[1].tolist()
    assert (x0, y0, x1, y1) == (-14, 13, 62, 150)
    keep = out.keep_mask[1, 0].cpu()
    pad_cols = (-x0) * 288 // (y1 - y0)
    assert keep[:, :pad_cols].all()  # no dilation inside the padding
    assert not keep[:, pad_cols].all()  # the person starts right there
    # keep_mask is the dilated person: it covers the undilated person (maskrcnn_mask False)
    assert (~keep | out.maskrcnn_mask[1, 0].cpu()).all() and (~keep).sum() > (~out.maskrcnn_mask[1, 0].cpu()).sum()
    # the dilated box never extends beyond the crop box
    dx0, dy0, dx1, dy1 = out.dilated_boxes[0].tolist()  # input order: person 0 first
    assert dx0 >= x0 and dy0 >= y0 and dx1 <= x1 and dy1 <= y1


def test_preprocess_persons_rejects_mismatched_imshape():
    with pytest.raises(ValueError, match="imshape_hw"):
        preprocess_persons(torch.zeros((1, 20, 10), dtype=torch.bool), (10, 20))
