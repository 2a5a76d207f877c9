"""Mask R-CNN v2 person detector: post-processing, weights plumbing and one small full forward (random weights)."""
from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

import dp2.detection.maskrcnn as mr
from dp2.detection.maskrcnn import (COCO_PERSON_LABEL, MaskRCNNPersonDetector, build_maskrcnn_v2, mask_boxes_xyxy,
                                    person_detections_from_output)
from dp2.structures import PersonDetections
from dp2.weights import WeightsError

SIZE_HW = (96, 128)


def _masks(boxes_xyxy, size_hw=(20, 30), inside=0.9, outside=0.1) -> torch.Tensor:
    """float [N, 1, H, W] probabilities: ``inside`` within each half-open box, ``outside`` elsewhere."""
    out = torch.full((len(boxes_xyxy), 1, *size_hw), outside)
    for i, (x0, y0, x1, y1) in enumerate(boxes_xyxy):
        out[i, 0, y0:y1, x0:x1] = inside
    return out


def _output(labels, scores, boxes, size_hw=(20, 30)) -> dict[str, torch.Tensor]:
    return {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor(labels, dtype=torch.int64),
            "scores": torch.tensor(scores, dtype=torch.float32),
            "masks": _masks(boxes, size_hw)}


# ------------------------------------------------------------------------------ pure post-processing

@pytest.mark.parametrize("box", [(0, 0, 1, 1), (3, 2, 9, 7), (25, 15, 30, 20), (0, 0, 30, 20)])
def test_mask_boxes_are_tight_and_half_open(box):
    masks = _masks([box]).squeeze(1) > 0.5
    assert mask_boxes_xyxy(masks).tolist() == [list(box)]
    assert mask_boxes_xyxy(masks).dtype == torch.int64


def test_mask_boxes_of_empty_inputs():
    assert mask_boxes_xyxy(torch.zeros(2, 5, 6, dtype=torch.bool)).tolist() == [[0, 0, 0, 0]] * 2
    assert mask_boxes_xyxy(torch.zeros(0, 5, 6, dtype=torch.bool)).shape == (0, 4)


def test_only_persons_above_the_score_threshold_are_kept():
    out = _output(labels=[1, 3, 1, 1, 1], scores=[0.95, 0.9, 0.8, 0.3, 0.2],
                  boxes=[[0, 0, 5, 5], [5, 5, 10, 10], [10, 2, 20, 18], [1, 1, 2, 2], [3, 3, 4, 4]])
    dets = person_detections_from_output(out, (20, 30), score_threshold=0.3)
    assert isinstance(dets, PersonDetections) and len(dets) == 2  # car dropped, 0.3 is not > 0.3
    assert dets.scores.tolist() == pytest.approx([0.95, 0.8])
    assert dets.scores.dtype == torch.float32
    assert dets.boxes_xyxy.tolist() == [[0, 0, 5, 5], [10, 2, 20, 18]]
    assert dets.masks.dtype == torch.bool and dets.masks.shape == (2, 20, 30)
    assert torch.equal(dets.boxes_xyxy, mask_boxes_xyxy(dets.masks))
    assert dets.image_size_hw == (20, 30)


def test_mask_threshold_is_inclusive_and_empty_masks_are_dropped():
    out = _output(labels=[1, 1], scores=[0.9, 0.8], boxes=[[2, 2, 8, 8], [10, 10, 12, 12]])
    out["masks"][0, 0, 2:8, 2:8] = 0.5
    out["masks"][1] = 0.49  # nothing reaches the threshold
    dets = person_detections_from_output(out, (20, 30), score_threshold=0.3, mask_threshold=0.5)
    assert len(dets) == 1 and dets.boxes_xyxy.tolist() == [[2, 2, 8, 8]] and int(dets.masks.sum()) == 36


def test_no_persons_gives_empty_detections():
    out = _output(labels=[3], scores=[0.99], boxes=[[0, 0, 5, 5]])
    dets = person_detections_from_output(out, (20, 30), score_threshold=0.3)
    assert len(dets) == 0 and dets.masks.shape == (0, 20, 30) and dets.boxes_xyxy.dtype == torch.int64
    none = {k: v[:0] for k, v in out.items()}
    assert len(person_detections_from_output(none, (20, 30), score_threshold=0.3)) == 0


def test_masks_must_be_at_image_resolution():
    with pytest.raises(ValueError, match="image resolution"):
        person_detections_from_output(_output([1], [0.9], [[0, 0, 5, 5]]), (21, 30), score_threshold=0.3)


# ------------------------------------------------------------------------------ model and weights

def test_weight_spec_is_torchvisions_file():
    spec = mr.MASKRCNN_V2_WEIGHTS
    assert spec.filename == "maskrcnn_resnet50_fpn_v2_coco-73cbd019.pth"
    assert spec.urls == ("https://download.pytorch.org/models/" + spec.filename,)
    assert spec.sha256.startswith("73cbd019") and spec.md5 is None


@pytest.fixture(scope="module")
def random_weights_dir(tmp_path_factory):
    """A folder holding a randomly initialised v2 state dict under the official file name."""
    torch.manual_seed(0)
    model = build_maskrcnn_v2()
    # torchvision's COCO_V1 metadata: 46,359,409 parameters; v2 uses plain BatchNorm (no FrozenBatchNorm2d)
    assert sum(p.numel() for p in model.parameters()) == 46_359_409
    assert not any(type(m).__name__ == "FrozenBatchNorm2d" for m in model.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules()) and not model.training
    folder = tmp_path_factory.mktemp("maskrcnn_weights")
    torch.save(model.state_dict(), folder / mr.MASKRCNN_V2_WEIGHTS.filename)
    return folder


@pytest.fixture
def isolated_weights(monkeypatch, tmp_path):
    monkeypatch.delenv("DP2_WEIGHTS_DIR", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))


def _force_heads(model: nn.Module, label: int) -> None:
    """Make a random model report every proposal as ``label`` with a full-box mask, on few proposals."""
    predictor = model.roi_heads.box_predictor
    predictor.cls_score.weight.zero_()
    predictor.cls_score.bias.fill_(-10.0)
    predictor.cls_score.bias[label] = 10.0
    mask_logits = model.roi_heads.mask_predictor.mask_fcn_logits
    mask_logits.weight.zero_()
    mask_logits.bias.fill_(5.0)
    model.rpn._pre_nms_top_n["testing"] = 20  # keep the CPU forward fast
    model.rpn._post_nms_top_n["testing"] = 10


def test_full_forward_with_random_weights(random_weights_dir, isolated_weights, monkeypatch):
    monkeypatch.setenv("DP2_VERIFY_WEIGHTS", "0")  # random weights cannot match the official sha256
    det = MaskRCNNPersonDetector(weights_dir=random_weights_dir, download=False, device="cpu",
                                 min_size=SIZE_HW[0], max_size=SIZE_HW[1])
    _force_heads(det.model, COCO_PERSON_LABEL)
    assert det.model.roi_heads.score_thresh == 0.3
    image = torch.randint(0, 256, (3, *SIZE_HW), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    dets = det(image)
    assert isinstance(dets, PersonDetections) and len(dets) > 0 and dets.image_size_hw == SIZE_HW
    assert dets.masks.dtype == torch.bool and dets.masks.shape == (len(dets), *SIZE_HW)
    assert dets.masks.flatten(1).any(dim=1).all()
    assert dets.boxes_xyxy.dtype == torch.int64 and torch.equal(dets.boxes_xyxy, mask_boxes_xyxy(dets.masks))
    assert dets.scores.dtype == torch.float32 and bool((dets.scores > 0.3).all())
    assert torch.equal(dets.scores, dets.scores.sort(descending=True).values)

    # the same network told that everything is a car finds no person
    _force_heads(det.model, 3)
    assert len(det(image)) == 0

    # a raised threshold reaches the box head
    det.score_threshold = 0.99
    assert det.model.roi_heads.score_thresh == 0.99


@torch.no_grad()
def test_masks_are_computed_for_persons_only_and_persons_are_unchanged():
    """keep_only_class_: the mask head sees the person detections only, which stay exactly those
    of the unfiltered model (boxes, scores, masks); the other classes are gone."""
    import copy

    torch.manual_seed(0)
    model = build_maskrcnn_v2(min_size=SIZE_HW[0], max_size=SIZE_HW[1])
    _force_heads(model, COCO_PERSON_LABEL)
    model.roi_heads.box_predictor.cls_score.bias[3] = 10.0  # every proposal is also a car (p ~0.5 each)
    model.roi_heads.box_predictor.bbox_pred.weight.mul_(1e-2)
    filtered = mr.keep_only_class_(copy.deepcopy(model))
    seen = {}

    def count(name):
        return lambda _m, args: seen.__setitem__(name, args[0].shape[0])

    model.roi_heads.mask_head.register_forward_pre_hook(count("all"))
    filtered.roi_heads.mask_head.register_forward_pre_hook(count("persons"))
    x = torch.rand(3, *SIZE_HW, generator=torch.Generator().manual_seed(1))
    ref, out = model([x])[0], filtered([x])[0]
    is_person = ref["labels"] == COCO_PERSON_LABEL
    assert 0 < int(is_person.sum()) < len(ref["labels"]), "the case needs both persons and cars"
    assert bool((out["labels"] == COCO_PERSON_LABEL).all())
    for key in ("boxes", "scores", "masks"):
        torch.testing.assert_close(out[key], ref[key][is_person], rtol=0, atol=1e-6)
    assert seen == {"all": len(ref["labels"]), "persons": int(is_person.sum())}


def test_random_weights_fail_the_sha256_check(random_weights_dir, isolated_weights, monkeypatch):
    monkeypatch.delenv("DP2_VERIFY_WEIGHTS", raising=False)
    det = MaskRCNNPersonDetector(weights_dir=random_weights_dir, download=False, device="cpu")
    with pytest.raises(WeightsError, match="sha256"):
        det(torch.zeros((3, 8, 8), dtype=torch.uint8))


def test_a_foreign_state_dict_is_rejected(tmp_path, isolated_weights, monkeypatch):
    monkeypatch.setattr(mr.MaskRCNNPersonDetector, "weight_spec",
                        dataclasses.replace(mr.MASKRCNN_V2_WEIGHTS, sha256=None))
    path = tmp_path / mr.MASKRCNN_V2_WEIGHTS.filename
    torch.save({"backbone.body.conv1.weight": torch.zeros(64, 3, 7, 7)}, path)
    det = MaskRCNNPersonDetector(weights_dir=tmp_path, download=False, device="cpu")
    with pytest.raises(WeightsError, match="not a Mask R-CNN"):
        det(torch.zeros((3, 8, 8), dtype=torch.uint8))


def test_empty_image_and_validation(tmp_path):
    det = MaskRCNNPersonDetector(weights_path=tmp_path / "missing.pth", download=False, device="cpu")
    dets = det(torch.zeros((3, 0, 7), dtype=torch.uint8))  # no weights needed
    assert len(dets) == 0 and dets.masks.shape == (0, 0, 7)
    with pytest.raises(ValueError, match="uint8"):
        det(torch.zeros((3, 8, 8)))
    with pytest.raises(ValueError, match="score_threshold"):
        MaskRCNNPersonDetector(score_threshold=1.5)
    with pytest.raises(ValueError, match="mask_threshold"):
        MaskRCNNPersonDetector(mask_threshold=0.0)
    with pytest.raises(ValueError, match="min_size"):
        MaskRCNNPersonDetector(min_size=900, max_size=800)
    assert "score_threshold=0.3" in repr(MaskRCNNPersonDetector())
