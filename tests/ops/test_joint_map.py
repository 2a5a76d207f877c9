"""Keypoints in body crops and TriA-GAN's joint map (golden check in
tests/generation/test_triagan_conformance.py::test_joint_map_from_golden_keypoints)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from dp2.ops.joint_map import body_keypoint_conditions, draw_joint_map, keypoints_to_crops, line_pixels


def test_line_pixels_equal_pil_width_one_lines():
    Image = pytest.importorskip("PIL.Image")
    ImageDraw = pytest.importorskip("PIL.ImageDraw")
    rng = np.random.RandomState(0)
    for _ in range(2000):
        x0, y0, x1, y1 = (int(v) for v in rng.randint(-5, 30, size=4))
        im = Image.new("L", (24, 24), 0)
        ImageDraw.Draw(im).line([(x0, y0), (x1, y1)], fill=1, width=1)
        ours = np.zeros((24, 24), np.uint8)
        for x, y in line_pixels(x0, y0, x1, y1):
            if 0 <= x < 24 and 0 <= y < 24:
                ours[y, x] = 1
        assert (ours == np.array(im)).all(), (x0, y0, x1, y1)


def _skeleton() -> torch.Tensor:
    kp = torch.zeros(1, 17, 3)
    pts = {0: (0.5, 0.1), 1: (0.45, 0.08), 2: (0.55, 0.08), 3: (0.4, 0.1), 4: (0.6, 0.1), 5: (0.35, 0.25),
           6: (0.65, 0.25), 7: (0.3, 0.4), 8: (0.7, 0.4), 9: (0.28, 0.55), 10: (0.72, 0.55), 11: (0.4, 0.55),
           12: (0.6, 0.55), 13: (0.4, 0.75), 14: (0.6, 0.75), 15: (0.4, 0.95), 16: (0.6, 0.95)}
    for j, (x, y) in pts.items():
        kp[0, j] = torch.tensor([x, y, 1.0])
    return kp


def test_joint_map_categories_and_missing_keypoints():
    kp = _skeleton()
    jm = draw_joint_map(kp, (288, 160))
    assert jm.dtype == torch.uint8 and jm.shape == (1, 1, 288, 160)
    assert set(torch.unique(jm).tolist()) == {0, 1, 2, 3, 4, 5, 6}
    none = kp.clone()
    none[..., 2] = 0
    assert not draw_joint_map(none, (288, 160)).any()  # nothing visible: empty map, no error
    # One shoulder hidden: no neck, so no head-neck line and no neck-hip line.
    kp[0, 6, 2] = 0
    jm2 = draw_joint_map(kp, (288, 160))[0, 0]
    assert not (jm2[80:140, 78:82] == 4).any()  # the spine would run down x = 80


def test_head_joins_neck_from_mid_eye_when_nose_hidden():
    kp = _skeleton()
    kp[0, 0, 2] = 0  # nose hidden
    kp[0, 1:3, 2] = 0  # eyes hidden too: the mid-eye point is used all the same
    jm = draw_joint_map(kp, (288, 160))[0, 0]
    # mid-eye (80, 23) -> neck (80, 72): a vertical head line at x = 80
    assert (jm[24:70, 80] == 1).all()


def test_keypoints_to_crops_and_visibility():
    kp = torch.tensor([[[15.0, 30.0, 1.0], [5.0, 30.0, 1.0], [30.0, 60.0, 1.0], [20.0, 40.0, 0.0]]])
    rel = keypoints_to_crops(kp, torch.tensor([[10, 20, 30, 60]]))
    assert rel.tolist() == [[[0.25, 0.25, 1.0], [-0.25, 0.25, 0.0], [1.0, 1.0, 1.0], [0.5, 0.5, 0.0]]]


def test_body_keypoint_conditions_without_keypoints():
    bg = torch.ones(2, 1, 288, 160, dtype=torch.bool)
    c = body_keypoint_conditions(None, torch.tensor([[0, 0, 160, 288], [5, 5, 85, 149]]), bg, (288, 160))
    assert c["keypoints"].shape == (2, 17, 3) and not c["keypoints"][..., 2].any()
    assert c["joint_map"].shape == (2, 1, 288, 160) and not c["joint_map"].any()
    assert c["maskrcnn_mask"].dtype == torch.float32 and bool((c["maskrcnn_mask"] == 1).all())
