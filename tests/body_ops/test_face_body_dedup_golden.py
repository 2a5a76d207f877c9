"""faces_inside_bodies vs DP2's box1_inside_box2 (functions/face_body_dedup)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from dp2.ops.face_body_dedup import faces_inside_bodies
from body_ops_fixtures import body_golden, _one_torch_thread  # noqa: F401 (pytest fixtures)



def test_golden_face_body_dedup(body_golden):
    arrays, sidecar = body_golden("functions/face_body_dedup")
    assert len(sidecar["cases"]) == 120
    removed = 0
    for case in sidecar["cases"]:
        k = case["index"]
        out = faces_inside_bodies(torch.from_numpy(arrays[f"faces_{k}"]),
                                  torch.from_numpy(arrays[f"dilated_body_boxes_{k}"]))
        assert out.dtype == torch.bool
        np.testing.assert_array_equal(out.numpy(), arrays[f"face_removed_{k}"], err_msg=f"case {k}")
        assert int(out.sum()) == case["n_removed"]
        removed += int(out.sum())
    assert removed > 0


BODY = [10, 10, 40, 40]


@pytest.mark.parametrize(
    "face, removed",
    [
        ([11, 11, 39, 39], True),   # strictly inside
        ([10, 11, 39, 39], False),  # touches the left edge
        ([11, 10, 39, 39], False),  # top edge
        ([11, 11, 40, 39], False),  # right edge
        ([11, 11, 39, 40], False),  # bottom edge
        ([5, 5, 45, 45], False),    # contains the body
        ([30, 30, 50, 50], False),  # overlaps
    ],
)
def test_convention_strictly_inside(face, removed):
    assert faces_inside_bodies(torch.tensor([face]), torch.tensor([BODY])).tolist() == [removed]


def test_any_body_and_empty_inputs():
    faces = torch.tensor([[11, 11, 20, 20], [61, 61, 70, 70], [0, 0, 5, 5]])
    bodies = torch.tensor([BODY, [60, 60, 80, 80]])
    assert faces_inside_bodies(faces, bodies).tolist() == [True, True, False]
    assert faces_inside_bodies(faces, torch.zeros((0, 4), dtype=torch.int64)).tolist() == [False] * 3
    assert faces_inside_bodies(torch.zeros((0, 4), dtype=torch.int64), bodies).shape == (0,)
    with pytest.raises(ValueError, match=r"\[K, 4\]"):
        faces_inside_bodies(torch.zeros((2, 5)), bodies)
