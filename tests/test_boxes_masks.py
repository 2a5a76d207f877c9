import pytest
import torch

from dp2.ops.boxes import box_area, boxes_iou, clip_boxes, round_boxes_outward, scale_boxes
from dp2.ops.masks import region_alpha


@pytest.mark.parametrize("boxes, size_hw, expected", [
    (torch.zeros(0, 4, dtype=torch.int64), (10, 10), torch.zeros(0, 4, dtype=torch.int64)),
    (torch.tensor([[0, 0, 10, 10]]), (10, 10), torch.tensor([[0, 0, 10, 10]])),  # touching all edges
    (torch.tensor([[-5, -1, 15, 20]]), (10, 12), torch.tensor([[0, 0, 12, 10]])),  # sticking out
    (torch.tensor([[20, 20, 30, 30]]), (10, 10), torch.tensor([[10, 10, 10, 10]])),  # fully outside -> empty
])
def test_clip_boxes(boxes, size_hw, expected):
    out = clip_boxes(boxes, size_hw)
    assert torch.equal(out, expected)
    assert box_area(out).ge(0).all()


def test_scale_and_round_outward_always_contain_the_box():
    boxes = torch.tensor([[3, 7, 10, 20], [0, 0, 1, 1]])
    scaled = round_boxes_outward(scale_boxes(boxes, 1.3))
    assert (scaled[:, :2] <= boxes[:, :2]).all() and (scaled[:, 2:] >= boxes[:, 2:]).all()


def test_iou():
    a = torch.tensor([[0, 0, 10, 10]])
    b = torch.tensor([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 0, 0]])
    assert boxes_iou(a, b)[0].tolist() == pytest.approx([1.0, 1 / 3, 0.0, 0.0])


@pytest.mark.parametrize("shape", ["box", "ellipse"])
@pytest.mark.parametrize("feather", [0.0, 4.0])
def test_region_alpha_covers_the_whole_region(shape, feather):
    alpha = region_alpha((40, 50), (10.0, 8.0, 30.0, 28.0), shape, feather)
    # Every pixel whose centre lies in the rectangle is fully covered (for the ellipse too).
    assert torch.all(alpha[8:28, 10:30] == 1)
    assert alpha.min() >= 0 and alpha.max() <= 1
    assert alpha[0, 0] == 0


def test_region_alpha_hard_box_is_exact():
    alpha = region_alpha((6, 6), (1.0, 2.0, 4.0, 5.0), "box", 0)
    expected = torch.zeros(6, 6)
    expected[2:5, 1:4] = 1
    assert torch.equal(alpha, expected)
