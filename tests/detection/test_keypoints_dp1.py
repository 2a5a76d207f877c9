"""Keypoint R-CNN person keypoints and the DeepPrivacy1 detector (matching + box-template fallback)."""
from __future__ import annotations

import dataclasses
import logging

import pytest
import torch

import dp2.detection.keypoints as kp
from dp2.detection.deep_privacy1 import (FACE_BOX_KEYPOINT_TEMPLATE, DeepPrivacy1Detector, assign_dp1_keypoints,
                                         template_keypoints_from_boxes)
from dp2.detection.keypoints import KeypointRCNNPersonDetector, PersonKeypoints, build_keypoint_rcnn
from dp2.ops.dp1_keypoints import match_face_keypoints
from dp2.structures import FaceDetections


def _faces(boxes, size_hw=(100, 100)) -> FaceDetections:
    boxes = torch.tensor(boxes, dtype=torch.int64).reshape(-1, 4)
    return FaceDetections(boxes_xyxy=boxes, scores=torch.linspace(0.9, 0.5, len(boxes)), image_size_hw=size_hw)


def _person(nose, left_eye, right_eye, k=17, visibility=True) -> torch.Tensor:
    """[K, 3] keypoints: the given head points, the rest at distinct made-up positions."""
    out = torch.stack([torch.arange(k, dtype=torch.float32) + 200, torch.arange(k, dtype=torch.float32) + 300,
                       torch.ones(k)], dim=1)
    out[0, :2], out[1, :2], out[2, :2] = torch.tensor(nose), torch.tensor(left_eye), torch.tensor(right_eye)
    return out if visibility else out[:, :2]


# ------------------------------------------------------------------------------ box template

def test_template_is_the_documented_geometry():
    boxes = torch.tensor([[10, 20, 50, 80]])  # w 40, h 60
    kps = template_keypoints_from_boxes(boxes)
    assert kps.shape == (1, 7, 2) and kps.dtype == torch.float32
    expected = torch.tensor([10.0, 20.0]) + FACE_BOX_KEYPOINT_TEMPLATE * torch.tensor([40.0, 60.0])
    torch.testing.assert_close(kps[0], expected)


def test_template_points_sit_where_a_frontal_face_has_them():
    box = torch.tensor([[100, 100, 200, 220]])
    (nose, l_eye, r_eye, l_ear, r_ear, l_sh, r_sh), = template_keypoints_from_boxes(box).tolist()
    inside = lambda p: 100 <= p[0] <= 200 and 100 <= p[1] <= 220  # noqa: E731
    assert all(inside(p) for p in (nose, l_eye, r_eye, l_ear, r_ear))
    assert r_eye[0] < nose[0] < l_eye[0]  # the person's left eye is on the image's right
    assert l_eye[1] == r_eye[1] < nose[1]  # eyes level, above the nose tip
    assert r_ear[0] < r_eye[0] and l_ear[0] > l_eye[0]
    assert l_sh[1] > 220 and r_sh[1] > 220  # shoulders below the chin
    assert r_sh[0] < 100 and l_sh[0] > 200  # and wider than the face
    assert l_sh[0] - 150 == pytest.approx(150 - r_sh[0])  # symmetric about the box centre


def test_template_skeleton_satisfies_dp2_matching_for_its_own_face():
    boxes = torch.tensor([[0, 0, 30, 30], [50, 10, 70, 40], [5, 60, 25, 64]])
    face_idx, person_idx = match_face_keypoints(boxes, template_keypoints_from_boxes(boxes))
    assert face_idx.tolist() == [0, 1, 2] and person_idx.tolist() == [0, 1, 2]


# ------------------------------------------------------------------------------ assignment

def test_matched_faces_get_their_persons_first_7_keypoints():
    faces = _faces([[0, 0, 20, 20], [40, 0, 60, 20]])
    persons = torch.stack([_person([50, 10], [55, 5], [45, 5]), _person([10, 10], [15, 5], [5, 5])])
    out, unmatched = assign_dp1_keypoints(faces, persons[..., :2])
    assert unmatched == 0
    assert out.landmarks.shape == (2, 7, 2) and out.landmarks.dtype == torch.float32
    torch.testing.assert_close(out.landmarks[0], persons[1, :7, :2])
    torch.testing.assert_close(out.landmarks[1], persons[0, :7, :2])
    assert torch.equal(out.boxes_xyxy, faces.boxes_xyxy) and torch.equal(out.scores, faces.scores)


def test_unmatched_faces_get_template_keypoints_in_face_order():
    faces = _faces([[0, 0, 20, 20], [40, 0, 60, 20], [70, 70, 90, 90]])
    persons = _person([50, 10], [55, 5], [45, 5])[None]  # only face 1 has a skeleton
    out, unmatched = assign_dp1_keypoints(faces, persons)
    assert unmatched == 2 and len(out) == 3
    assert torch.equal(out.boxes_xyxy, faces.boxes_xyxy)
    torch.testing.assert_close(out.landmarks[1], persons[0, :7, :2])
    template = template_keypoints_from_boxes(faces.boxes_xyxy)
    torch.testing.assert_close(out.landmarks[[0, 2]], template[[0, 2]])
    for i in (0, 2):  # nose and eyes inside the box, all points near it
        x0, y0, x1, y1 = faces.boxes_xyxy[i].tolist()
        head = out.landmarks[i, :3]
        assert ((head[:, 0] >= x0) & (head[:, 0] <= x1) & (head[:, 1] >= y0) & (head[:, 1] <= y1)).all()
        assert (out.landmarks[i, :, 0] - (x0 + x1) / 2).abs().max() <= 2 * (x1 - x0)
        assert (out.landmarks[i, :, 1] - (y0 + y1) / 2).abs().max() <= 2 * (y1 - y0)


def test_drop_mode_reproduces_dp2():
    faces = _faces([[0, 0, 20, 20], [40, 0, 60, 20], [70, 70, 90, 90]])
    persons = torch.stack([_person([80, 80], [85, 75], [75, 75]), _person([50, 10], [55, 5], [45, 5])])
    out, unmatched = assign_dp1_keypoints(faces, persons, fallback="drop")
    assert unmatched == 1
    assert out.boxes_xyxy.tolist() == [[40, 0, 60, 20], [70, 70, 90, 90]]  # face order kept
    torch.testing.assert_close(out.scores, faces.scores[[1, 2]])
    torch.testing.assert_close(out.landmarks, persons[[1, 0], :7, :2])


def test_each_person_is_used_once():
    # two overlapping faces, one skeleton: the first face takes it, the second falls back
    faces = _faces([[0, 0, 40, 40], [5, 5, 45, 45]])
    persons = _person([20, 20], [25, 15], [15, 15])[None]
    out, unmatched = assign_dp1_keypoints(faces, persons)
    assert unmatched == 1
    torch.testing.assert_close(out.landmarks[0], persons[0, :7, :2])
    torch.testing.assert_close(out.landmarks[1], template_keypoints_from_boxes(faces.boxes_xyxy[1:])[0])


@pytest.mark.parametrize("fallback, expected_len", [("box_template", 2), ("drop", 0)])
def test_no_persons(fallback, expected_len):
    out, unmatched = assign_dp1_keypoints(_faces([[0, 0, 10, 10], [20, 20, 30, 30]]), torch.zeros(0, 17, 2),
                                          fallback=fallback)
    assert unmatched == 2 and len(out) == expected_len and out.landmarks.shape == (expected_len, 7, 2)


@pytest.mark.parametrize("fallback", ["box_template", "drop"])
def test_no_faces(fallback):
    out, unmatched = assign_dp1_keypoints(_faces([]), torch.zeros(3, 17, 2), fallback=fallback)
    assert unmatched == 0 and len(out) == 0 and out.landmarks.shape == (0, 7, 2)


def test_assignment_rejects_bad_input():
    with pytest.raises(ValueError, match="fallback"):
        assign_dp1_keypoints(_faces([]), torch.zeros(0, 17, 2), fallback="blur")
    with pytest.raises(ValueError, match="K>=7"):
        assign_dp1_keypoints(_faces([]), torch.zeros(2, 5, 2))


# ------------------------------------------------------------------------------ DP1 detector

class FakeFaces:
    def __init__(self, boxes, score_threshold=0.3):
        self.boxes = boxes
        self.score_threshold = score_threshold

    def __call__(self, image):
        return _faces(self.boxes, tuple(image.shape[1:]))


class FakePersons:
    def __init__(self, keypoints):
        self.keypoints = keypoints
        self.calls = 0

    def __call__(self, image):
        self.calls += 1
        return PersonKeypoints(keypoints=self.keypoints, scores=torch.ones(len(self.keypoints)),
                               image_size_hw=tuple(image.shape[1:]))


IMAGE = torch.zeros(3, 100, 100, dtype=torch.uint8)


def test_detector_combines_faces_and_keypoints(caplog):
    persons = FakePersons(_person([50, 10], [55, 5], [45, 5])[None])
    det = DeepPrivacy1Detector(face_detector=FakeFaces([[40, 0, 60, 20], [0, 50, 20, 70]]),
                               keypoint_detector=persons)
    with caplog.at_level(logging.DEBUG, logger="dp2.detection.deep_privacy1"):
        out = det(IMAGE)
        det(IMAGE)
    assert isinstance(out, FaceDetections) and len(out) == 2 and out.landmarks.shape == (2, 7, 2)
    torch.testing.assert_close(out.landmarks[0], persons.keypoints[0, :7, :2])
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "1 of 2 faces" in warnings[0].getMessage()
    assert "template" in warnings[0].getMessage()
    assert det.num_unmatched_faces == 2  # running total over both calls


def test_detector_drop_mode_warns_about_unanonymised_faces(caplog):
    det = DeepPrivacy1Detector(face_detector=FakeFaces([[0, 50, 20, 70]]),
                               keypoint_detector=FakePersons(torch.zeros(0, 17, 3)), fallback="drop")
    with caplog.at_level(logging.WARNING, logger="dp2.detection.deep_privacy1"):
        out = det(IMAGE)
    assert len(out) == 0 and out.landmarks.shape == (0, 7, 2)
    assert "un-anonymised" in caplog.text


def test_detector_skips_keypoints_when_no_faces():
    persons = FakePersons(torch.zeros(0, 17, 3))
    det = DeepPrivacy1Detector(face_detector=FakeFaces([]), keypoint_detector=persons)
    out = det(IMAGE)
    assert len(out) == 0 and out.landmarks.shape == (0, 7, 2) and persons.calls == 0


def test_detector_accepts_plain_keypoint_tensors():
    keypoints = _person([50, 10], [55, 5], [45, 5])[None]
    det = DeepPrivacy1Detector(face_detector=FakeFaces([[40, 0, 60, 20]]), keypoint_detector=lambda im: keypoints)
    torch.testing.assert_close(det(IMAGE).landmarks[0], keypoints[0, :7, :2])


def test_detector_score_threshold_forwards_to_face_detector():
    faces = FakeFaces([], score_threshold=0.3)
    det = DeepPrivacy1Detector(face_detector=faces, keypoint_detector=FakePersons(torch.zeros(0, 17, 3)))
    assert det.score_threshold == 0.3
    det.score_threshold = 0.6  # --dst, which DP2 ignores for this config
    assert faces.score_threshold == 0.6


def test_detector_rejects_unknown_fallback():
    with pytest.raises(ValueError, match="fallback"):
        DeepPrivacy1Detector(face_detector=FakeFaces([]), keypoint_detector=FakePersons(torch.zeros(0, 17, 3)),
                             fallback="ignore")


# ------------------------------------------------------------------------- Keypoint R-CNN

def test_build_matches_torchvision_coco_v1_layout():
    from torchvision.models.detection import keypointrcnn_resnet50_fpn
    from torchvision.ops import FrozenBatchNorm2d

    ours = build_keypoint_rcnn()
    tv = keypointrcnn_resnet50_fpn(weights=None, weights_backbone=None).state_dict()
    tv = {k: v.shape for k, v in tv.items() if not k.endswith("num_batches_tracked")}
    assert {k: v.shape for k, v in ours.state_dict().items()} == tv
    frozen = [m for m in ours.modules() if isinstance(m, FrozenBatchNorm2d)]
    assert frozen and all(m.eps == 0.0 for m in frozen)  # torchvision's overwrite_eps for COCO_V1
    assert not ours.training


class FakeRCNN(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.inputs = []

    def forward(self, images):
        self.inputs.append(images)
        keypoints = torch.arange(4 * 17 * 3, dtype=torch.float32).reshape(4, 17, 3)
        return [{"scores": torch.tensor([0.9, 0.5, 0.3, 0.1]), "keypoints": keypoints,
                 "boxes": torch.zeros(4, 4), "labels": torch.ones(4, dtype=torch.int64)}]


def test_keypoint_detector_input_and_score_filter():
    det = KeypointRCNNPersonDetector(device="cpu", download=False)
    det._model = FakeRCNN()
    image = torch.full((3, 6, 8), 51, dtype=torch.uint8)
    out = det(image)
    (x,), = det._model.inputs
    assert x.dtype == torch.float32 and x.shape == (3, 6, 8) and torch.allclose(x, torch.full_like(x, 0.2))
    assert isinstance(out, PersonKeypoints) and out.image_size_hw == (6, 8)
    assert out.keypoints.shape == (3, 17, 3) and out.scores.tolist() == pytest.approx([0.9, 0.5, 0.3])
    assert out.keypoints_xy.shape == (3, 17, 2)
    det.score_threshold = 0.6
    assert len(det(image)) == 1


def test_keypoint_detector_empty_image_and_validation(tmp_path):
    det = KeypointRCNNPersonDetector(weights_dir=tmp_path, download=False, device="cpu")
    out = det(torch.zeros(3, 0, 5, dtype=torch.uint8))
    assert len(out) == 0 and out.keypoints.shape == (0, 17, 3) and det._model is None
    with pytest.raises(ValueError, match="score_threshold"):
        det.score_threshold = 2.0
    with pytest.raises(ValueError):
        det(torch.zeros(3, 4, 4))


def test_keypoint_weight_spec_is_torchvisions_file():
    spec = kp.KEYPOINT_RCNN_WEIGHTS
    assert spec.filename == "keypointrcnn_resnet50_fpn_coco-fc266e95.pth"
    assert spec.urls == ("https://download.pytorch.org/models/" + spec.filename,)
    assert spec.sha256.startswith("fc266e95")  # torchvision's name carries the sha256 prefix


@pytest.mark.slow
def test_random_weights_load_through_weights_dir_env(tmp_path, monkeypatch):
    torch.manual_seed(0)
    model = build_keypoint_rcnn()
    torch.save(model.state_dict(), tmp_path / kp.KEYPOINT_RCNN_WEIGHTS.filename)
    # random weights cannot have the real file's sha256: accept the file by name here
    monkeypatch.setattr(kp.KeypointRCNNPersonDetector, "weight_spec",
                        dataclasses.replace(kp.KEYPOINT_RCNN_WEIGHTS, sha256=None))
    monkeypatch.setenv("DP2_WEIGHTS_DIR", str(tmp_path))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))

    det = KeypointRCNNPersonDetector(download=False, device="cpu")
    net = det.model
    loaded = net.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in model.state_dict().items())
    net.transform.min_size, net.transform.max_size = (64,), 64  # keep the CPU test fast

    image = torch.randint(0, 256, (3, 48, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        raw = net([image.float() / 255])[0]
    assert len(raw["scores"]) >= 2  # random heads still score many boxes above the model's 0.05
    det.score_threshold = float(raw["scores"].median())
    out = det(image)
    keep = raw["scores"] >= det.score_threshold
    assert 0 < keep.sum() < len(keep)
    assert out.keypoints.shape == (int(keep.sum()), 17, 3) and out.keypoints.dtype == torch.float32
    torch.testing.assert_close(out.keypoints, raw["keypoints"][keep])
    torch.testing.assert_close(out.scores, raw["scores"][keep])
