"""Face crops vs the original DP2 (functions/face_detection_crop: 16 images, 35 faces x 3 configs)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from dp2.ops.face_crop import crop_faces, dp1_crop_keypoints, face_crop_mask, sort_by_area

CONFIGS = {  # name: (target, expansion method, uses keypoints)
    "face256": ((256, 256), "simple", False),
    "face128": ((128, 128), "fdf128", False),
    "dp1": ((128, 128), "fdf128", True),
}


@pytest.fixture(scope="module")
def data(golden):
    return golden("face_detection_crop")


@pytest.mark.parametrize("config", CONFIGS)
def test_golden(data, config):
    arrays, sidecar = data
    target, method, with_keypoints = CONFIGS[config]
    n_faces = n_images = 0
    for info in sidecar["images"]:
        k = info["index"]
        image = torch.from_numpy(arrays[f"image_{k}"])
        boxes = torch.from_numpy(arrays[f"boxes_{k}"])
        order = sort_by_area(boxes)
        np.testing.assert_array_equal(boxes[order].numpy(), arrays[f"{config}_{k}_sorted_boxes"])
        keypoints = torch.from_numpy(arrays[f"keypoints_{k}"])[order] if with_keypoints else None
        crops = crop_faces(image, boxes[order], target, method, keypoints)
        assert len(crops) == info["n_faces"]
        for j in range(len(crops)):
            prefix = f"{config}_{k}_{j}_"
            np.testing.assert_array_equal(crops.boxes_xyxy[j].numpy(), arrays[prefix + "expbox"], err_msg=prefix)
            np.testing.assert_array_equal(crops.keep_mask[j:j + 1].numpy().astype(np.uint8), arrays[prefix + "mask"],
                                          err_msg=prefix)
            if prefix + "img" in arrays:
                np.testing.assert_array_equal(crops.images[j:j + 1].numpy(), arrays[prefix + "img"], err_msg=prefix)
            if with_keypoints:
                np.testing.assert_array_equal(crops.keypoints[j:j + 1].numpy(), arrays[prefix + "keypoints"],
                                              err_msg=prefix)
            n_faces += 1
        n_images += 1
    assert (n_images, n_faces) == (16, 35)


def test_empty_faces():
    crops = crop_faces(torch.zeros((3, 20, 20), dtype=torch.uint8), torch.zeros((0, 4), dtype=torch.int64),
                       (32, 32), "fdf128", torch.zeros((0, 7, 2)))
    assert len(crops) == 0 and crops.images.shape == (0, 3, 32, 32) and crops.keypoints.shape == (0, 7, 3)


@pytest.mark.parametrize(
    "box, exp_box, side, hole_yx",
    [
        # scale 12 / 6 = 2: [2, 1, 5, 6] * 2 -> rows 2..11, cols 4..9.
        ([16, 90, 19, 95], [14, 89, 20, 95], 12, (slice(2, 12), slice(4, 10))),
        # box equal to the expanded box: everything synthesised.
        ([0, 0, 8, 8], [0, 0, 8, 8], 4, (slice(0, 4), slice(0, 4))),
        # box sticking out of the expanded box: clamped to the crop.
        ([-4, -4, 3, 3], [0, 0, 6, 6], 6, (slice(0, 3), slice(0, 3))),
        # scale 10 / 3: 1 * 3.33 = 3.33 -> 3 and 2 * 3.33 = 6.67 -> 6 (truncated).
        ([1, 1, 2, 2], [0, 0, 3, 3], 10, (slice(3, 6), slice(3, 6))),
    ],
)
def test_face_crop_mask_hand_computed(box, exp_box, side, hole_yx):
    mask = face_crop_mask(torch.tensor(box), torch.tensor(exp_box), (side, side))
    expected = torch.ones((1, side, side), dtype=torch.bool)
    expected[(slice(None), *hole_yx)] = False
    assert mask.dtype == torch.bool and torch.equal(mask, expected)


def test_dp1_keypoints_are_clamped_and_use_width():
    kps = torch.tensor([[[5.0, 5.0], [-3.0, 40.0], [25.0, 15.0]] + [[15.0, 15.0]] * 4])  # [1, 7, 2]
    out = dp1_crop_keypoints(kps, torch.tensor([[5, 5, 25, 45]]))  # width 20, height 40
    assert out.shape == (1, 7, 3)
    assert out[0, :3].tolist() == [[0.0, 0.0, 1.0], [0.0, 1.0, 1.0], [1.0, 0.5, 1.0]]


def test_sort_by_area_empty_and_order():
    assert sort_by_area(torch.zeros((0, 4), dtype=torch.int64)).tolist() == []
    boxes = torch.tensor([[0, 0, 9, 9], [0, 0, 1, 1], [0, 0, 3, 3]])
    assert sort_by_area(boxes).tolist() == [1, 2, 0]


def test_non_square_target_raises():
    with pytest.raises(ValueError, match="square"):
        crop_faces(torch.zeros((3, 8, 8), dtype=torch.uint8), torch.tensor([[1, 1, 4, 4]]), (16, 8))


def test_quirk_box_still_gives_target_size():
    # Expanded box [-6, -6, 22, 22] clips to 16x16 == target: DP2 would return a 28x28 crop.
    image = torch.randint(0, 255, (3, 16, 16), dtype=torch.uint8)
    crops = crop_faces(image, torch.tensor([[-2, -2, 18, 18]]), (16, 16), "simple")
    assert crops.boxes_xyxy.tolist() == [[-6, -6, 22, 22]]
    assert crops.images.shape == (1, 3, 16, 16)
