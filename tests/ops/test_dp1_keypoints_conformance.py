"""match_face_keypoints vs the original DP2 (functions/dp1_keypoint_match, 60 cases)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from dp2.ops.dp1_keypoints import match_face_keypoints

N_CASES = 60


@pytest.fixture(scope="module")
def data(golden):
    arrays, _ = golden("dp1_keypoint_match")
    return arrays


def test_golden(data):
    n_cases = len([k for k in data if k.startswith("face_boxes_")])
    assert n_cases == N_CASES
    for k in range(n_cases):
        faces = torch.from_numpy(data[f"face_boxes_{k}"])
        keypoints = torch.from_numpy(data[f"keypoints_{k}"])
        face_idx, person_idx = match_face_keypoints(faces, keypoints)
        # DP2 keeps exactly the matched faces, in face order, with their matched skeletons.
        np.testing.assert_array_equal(faces[face_idx].numpy(), data[f"out_boxes_{k}"], err_msg=f"case {k}")
        np.testing.assert_array_equal(keypoints[person_idx].numpy(), data[f"out_keypoints_{k}"], err_msg=f"case {k}")


def _skeleton(nose, left_eye, right_eye):
    return [nose, left_eye, right_eye] + [[0.0, 0.0]] * 4


@pytest.mark.parametrize(
    "faces, people, expected",
    [
        ([], [], ([], [])),
        ([[0, 0, 10, 10]], [], ([], [])),
        ([], [_skeleton([5, 5], [4, 4], [6, 4])], ([], [])),
        # inclusive on every side: points on x0, y0, x1 and y1 count.
        ([[0, 0, 10, 10]], [_skeleton([0, 0], [10, 10], [10, 0])], ([0], [0])),
        # one eye just outside: no match.
        ([[0, 0, 10, 10]], [_skeleton([5, 5], [4, 4], [10.01, 4])], ([], [])),
        # the first face takes the first person; the second face gets the next one that fits.
        ([[0, 0, 10, 10], [0, 0, 10, 10]],
         [_skeleton([5, 5], [4, 4], [6, 4]), _skeleton([6, 6], [5, 5], [7, 5])], ([0, 1], [0, 1])),
        # a used person is not reused; the unmatched face is reported by its absence.
        ([[0, 0, 10, 10], [0, 0, 10, 10]], [_skeleton([5, 5], [4, 4], [6, 4])], ([0], [0])),
        # a face skips people outside it.
        ([[20, 20, 30, 30]], [_skeleton([5, 5], [4, 4], [6, 4]), _skeleton([25, 25], [24, 24], [26, 24])],
         ([0], [1])),
    ],
)
def test_hand_computed(faces, people, expected):
    face_idx, person_idx = match_face_keypoints(torch.tensor(faces, dtype=torch.int64).reshape(-1, 4),
                                                torch.tensor(people, dtype=torch.float32).reshape(-1, 7, 2))
    assert (face_idx.tolist(), person_idx.tolist()) == expected
    assert face_idx.dtype == person_idx.dtype == torch.int64


def test_bad_shapes():
    with pytest.raises(ValueError, match="face_boxes_xyxy"):
        match_face_keypoints(torch.zeros((2, 3)), torch.zeros((1, 7, 2)))
    with pytest.raises(ValueError, match="keypoints_xy"):
        match_face_keypoints(torch.zeros((2, 4)), torch.zeros((1, 2, 2)))
