"""ViTPose (FB_triagan's keypoints) vs golden data made with the original DeepPrivacy2 code.

Golden data: ``../shared/conformance/detectors/vitpose_mini.*`` and ``manifests/vitpose_h.json``.
Crops, pads and the decode are exact; the backbone features are within 1e-6 and the heatmaps within
1.5e-7 of the golden ones (the sidecar's float64 rerun of the original moves heatmaps by 1.3e-7),
with identical argmax, so the keypoint coordinates are exact.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from dp2.detection.vitpose import (VITPOSE_H_WEIGHTS, ViTPoseDetector, build_vitpose, decode_heatmaps,
                                   vitpose_crops)
from dp2.weights import WeightsError

CONFORMANCE = Path(__file__).resolve().parents[2] / ".." / "shared" / "conformance"
MINI = CONFORMANCE / "detectors" / "vitpose_mini.pth"


@pytest.fixture(scope="module")
def golden() -> dict[str, torch.Tensor]:
    if not MINI.is_file():
        pytest.skip("../shared/conformance (ViTPose golden data) not found")
    torch.set_num_threads(min(2, torch.get_num_threads()))
    with np.load(CONFORMANCE / "detectors" / "vitpose_mini.npz") as data:
        return {k: torch.from_numpy(data[k]) for k in data.files}


@pytest.fixture(scope="module")
def detector(golden) -> ViTPoseDetector:
    return ViTPoseDetector(size="vit_mini", weights_path=MINI, device="cpu")


def test_crops_and_pads_are_exact(golden):
    crops, padded, pads = vitpose_crops(golden["image_uint8"], golden["boxes_ltrb"])
    assert torch.equal(pads, golden["pad_ltrb"])
    # Box 1 runs past the image bottom: its padded box does too (y 100..400 in a 300-px image).
    assert padded.tolist() == [[25, 50, 175, 250], [20, 100, 245, 400]]
    assert torch.equal(crops, golden["crops"])


def test_backbone_head_and_decode_match(golden, detector):
    model = detector.model
    with torch.inference_mode():
        features = model.backbone(golden["crops"])
        heatmaps = model.keypoint_head(golden["backbone_features"])
        full = model(golden["crops"])
    assert (features - golden["backbone_features"]).abs().max() <= 1e-5
    assert (heatmaps - golden["heatmaps"]).abs().max() <= 1e-6
    assert (full - golden["heatmaps"]).abs().max() <= 1e-6
    _, padded, _ = vitpose_crops(golden["image_uint8"], golden["boxes_ltrb"])
    assert torch.equal(decode_heatmaps(golden["heatmaps"], padded), golden["keypoints"])


def test_detector_end_to_end(golden, detector):
    keypoints = detector(golden["image_uint8"], golden["boxes_ltrb"])
    expected = golden["keypoints"]
    assert torch.equal(keypoints[..., :2], expected[..., :2])
    assert (keypoints[..., 2] - expected[..., 2]).abs().max() <= 1e-6
    vis = (keypoints[..., 2] >= 0.3).float()
    assert torch.equal(vis, golden["keypoints_vis03"][..., 2])
    assert detector(golden["image_uint8"], torch.zeros((0, 4), dtype=torch.int64)).shape == (0, 17, 3)


def test_padding_is_zeros_even_inside_the_image():
    img = torch.full((3, 60, 60), 200, dtype=torch.uint8)
    crops, padded, pads = vitpose_crops(img, torch.tensor([[20, 10, 30, 50]]))
    assert pads.tolist() == [[10, 10, 0, 0]] and padded.tolist() == [[10, 10, 40, 50]]
    black = (0 - torch.tensor([0.485, 0.456, 0.406]) * 255) / (torch.tensor([0.229, 0.224, 0.225]) * 255)
    assert torch.allclose(crops[0, :, 128, 0], black)   # padded column: black, not the grey image
    assert crops[0, 0, 128, 96] > 0                     # the box itself: the image


def test_odd_length_loses_a_pixel():
    # 21 x 40 box: length round(40 * 0.75) = 30 -> centre 10 + 10 -/+ 15, so x 5..35.
    _, padded, pads = vitpose_crops(torch.zeros((3, 60, 60), dtype=torch.uint8), torch.tensor([[10, 0, 31, 40]]))
    assert padded.tolist() == [[5, 0, 35, 40]] and pads.tolist() == [[5, 4, 0, 0]]


def test_full_size_layout_matches_manifest():
    path = CONFORMANCE / "manifests" / "vitpose_h.json"
    if not path.is_file():
        pytest.skip("../shared/conformance not found")
    manifest = json.loads(path.read_text())
    with torch.device("meta"):
        model = build_vitpose("vit_huge")
    sd = model.state_dict()
    assert [(k, list(v.shape)) for k, v in sd.items()] == [(e["key"], e["shape"]) for e in manifest["state_dict"]]
    params = dict(model.named_parameters())
    for e in manifest["state_dict"]:
        assert (e["kind"] == "parameter") == (e["key"] in params), e["key"]
    assert len(sd) == manifest["state_dict_keys"] == 403
    assert sum(p.numel() for p in model.parameters()) == manifest["num_parameters"] == 637_208_849
    assert manifest["weights_file"].startswith(VITPOSE_H_WEIGHTS.filename)


def test_wrong_checkpoint_is_refused(tmp_path, golden):
    state = torch.load(MINI, weights_only=True)["state_dict"]
    del state["backbone.last_norm.bias"]
    torch.save({"state_dict": state}, tmp_path / "broken.pth")
    det = ViTPoseDetector(size="vit_mini", weights_path=tmp_path / "broken.pth", device="cpu")
    with pytest.raises(WeightsError, match="last_norm.bias"):
        det(golden["image_uint8"], golden["boxes_ltrb"])
    with pytest.raises(WeightsError, match="no released weights"):
        ViTPoseDetector(size="vit_mini", device="cpu").weights_file()
    with pytest.raises(ValueError, match="size must be one of"):
        ViTPoseDetector(size="vit_giant")
