"""paste_crop vs the original DP2 (functions/paste_back: 12 images, 16 instances pasted sequentially)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from dp2.ops.paste import paste_crop

N_CASES = 12


@pytest.fixture(scope="module")
def data(golden):
    return golden("paste_back")


@pytest.mark.parametrize("case", range(N_CASES))
def test_golden(data, case):
    arrays, sidecar = data
    info = sidecar["cases"][case]
    assert info["case"] == case
    image = torch.from_numpy(arrays[f"case{case}_input_image"])
    boxes = arrays[f"case{case}_expanded_boxes"]
    for j in range(info["n_instances"]):
        generated = torch.from_numpy(arrays[f"case{case}_inst{j}_G_out_0_255"][0])
        keep = torch.from_numpy(arrays[f"case{case}_inst{j}_crop_mask"][0]).bool()
        image = paste_crop(image, generated, keep, boxes[j].tolist())
    np.testing.assert_array_equal(image.numpy(), arrays[f"case{case}_output_image"])


def test_golden_instance_count(data):
    _, sidecar = data
    assert len(sidecar["cases"]) == N_CASES
    assert sum(c["n_instances"] for c in sidecar["cases"]) == 16


def _example(size_hw=(12, 10), box=(2, 3, 8, 9), seed=0):
    g = torch.Generator().manual_seed(seed)
    image = torch.randint(0, 256, (3, *size_hw), dtype=torch.uint8, generator=g)
    generated = torch.rand((3, 4, 4), generator=g) * 255
    keep = torch.ones((1, 4, 4), dtype=torch.bool)
    keep[:, 1:3, 1:3] = False
    return image, generated, keep, box


def test_hard_paste_hand_computed():
    image = torch.zeros((3, 4, 4), dtype=torch.uint8)
    generated = torch.full((3, 2, 2), 300.0)  # clamped to 255
    generated[:, 1, 1] = 2.5  # half to even -> 2
    keep = torch.tensor([[[False, True], [True, False]]])
    out = paste_crop(image, generated, keep, (1, 1, 3, 3))
    assert out[0].tolist() == [[0, 0, 0, 0], [0, 255, 0, 0], [0, 0, 2, 0], [0, 0, 0, 0]]


def test_float_and_bool_masks_agree_and_input_untouched():
    image, generated, keep, box = _example()
    before = image.clone()
    a = paste_crop(image, generated, keep, box)
    b = paste_crop(image, generated, keep.float(), box)
    assert torch.equal(a, b) and torch.equal(image, before)


@pytest.mark.parametrize("box", [(-3, -2, 3, 4), (6, 8, 14, 14), (-5, -5, 20, 20), (0, 0, 10, 12)])
def test_box_touching_or_leaving_the_image(box):
    image, generated, keep, _ = _example()
    out = paste_crop(image, generated, keep, box)
    assert out.shape == image.shape
    x0, y0, x1, y1 = box
    outside = torch.ones(image.shape[1:], dtype=torch.bool)
    outside[max(y0, 0):y1, max(x0, 0):x1] = False
    assert torch.equal(out[:, outside], image[:, outside])


def test_box_fully_outside_is_a_no_op():
    image, generated, keep, _ = _example()
    assert torch.equal(paste_crop(image, generated, keep, (20, 20, 26, 26)), image)


def test_all_keep_mask_is_a_no_op():
    image, generated, keep, box = _example()
    assert torch.equal(paste_crop(image, generated, torch.ones_like(keep), box), image)


@pytest.mark.parametrize("feather_px", [1, 2, 3])
def test_feather_only_touches_the_dilated_region(feather_px):
    image, generated, keep, box = _example(size_hw=(30, 30), box=(3, 5, 23, 25))
    hard = paste_crop(image, generated, keep, box)
    soft = paste_crop(image, generated, keep, box, feather_px=feather_px)
    replaced = (hard != image).any(0)
    # The region DP2 replaces: mask <= 0.5 after nearest resize (5x scale: rows 10..19, cols 8..17).
    region = torch.zeros((30, 30), dtype=torch.bool)
    region[10:20, 8:18] = True
    assert not (replaced & ~region).any()
    dilated = torch.nn.functional.max_pool2d(region[None, None].float(), 2 * feather_px + 1, 1, feather_px)[0, 0] > 0
    assert torch.equal(soft[:, ~dilated], image[:, ~dilated])  # untouched outside the dilation
    assert torch.equal(soft[:, region], hard[:, region])  # fully generated inside
    ring = dilated & ~region
    assert (soft[:, ring] != image[:, ring]).any()  # something was blended


def test_feather_zero_is_hard_paste():
    image, generated, keep, box = _example()
    assert torch.equal(paste_crop(image, generated, keep, box, feather_px=0), paste_crop(image, generated, keep, box))


def test_device(device):
    image, generated, keep, box = _example()
    out = paste_crop(image.to(device), generated.to(device), keep.to(device), box, feather_px=2)
    assert out.device.type == device.type and out.dtype == torch.uint8


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(box_xyxy=(3, 3, 3, 8)), "positive width"),
        (dict(feather_px=-1), "feather_px"),
        (dict(keep_mask=torch.ones((1, 3, 4))), "keep_mask"),
    ],
)
def test_errors(kwargs, match):
    image, generated, keep, box = _example()
    args = dict(image=image, generated_0_255=generated, keep_mask=keep, box_xyxy=box) | kwargs
    with pytest.raises(ValueError, match=match):
        paste_crop(**args)
