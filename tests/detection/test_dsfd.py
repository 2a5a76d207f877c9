"""DSFD face detector: DP2's pre/post-processing, lazy loading through the weights manager."""
from __future__ import annotations

import warnings

import pytest
import torch

import dp2.detection.dsfd as dsfd
from dp2.detection.dsfd import DSFDFaceDetector, postprocess_dsfd, preprocess_dsfd
from dp2.structures import FaceDetections
from dp2.weights import WeightsError


def _post(raw, size_hw=(10, 20), thr=0.3, iou=0.3) -> FaceDetections:
    return postprocess_dsfd(torch.tensor(raw, dtype=torch.float32).reshape(-1, 5), size_hw,
                            score_threshold=thr, nms_iou_threshold=iou)


# ----------------------------------------------------------------------------- pre-processing

def test_preprocess_subtracts_rgb_mean_and_flips_to_bgr():
    image = torch.zeros(3, 2, 3, dtype=torch.uint8)
    image[0], image[1], image[2] = 10, 20, 255  # R, G, B
    x = preprocess_dsfd(image)
    assert x.shape == (1, 3, 2, 3) and x.dtype == torch.float32
    assert x[0, 0].unique().tolist() == [255 - 104]  # B
    assert x[0, 1].unique().tolist() == [20 - 117]  # G
    assert x[0, 2].unique().tolist() == [10 - 123]  # R


# ---------------------------------------------------------------------------- post-processing

@pytest.mark.parametrize("raw, thr, boxes, scores", [
    # nothing at all / nothing above the threshold
    ([], 0.3, [], []),
    ([[0.1, 0.1, 0.5, 0.5, 0.29]], 0.3, [], []),
    # the threshold is inclusive (score >= threshold)
    ([[0.1, 0.1, 0.5, 0.5, 0.5]], 0.5, [[2, 1, 10, 5]], [0.5]),
    # x scales by W=20, y by H=10
    ([[0.25, 0.5, 0.75, 1.0, 0.9]], 0.3, [[5, 5, 15, 10]], [0.9]),
    # clamped to [0, 1] after NMS: boxes stay inside the image
    ([[-0.3, -0.2, 1.4, 0.5, 0.8]], 0.3, [[0, 0, 20, 5]], [0.8]),
    # round() is half-to-even: 0.125*20 = 2.5 -> 2, 0.175*20 = 3.5 -> 4, 0.45*10 = 4.5 -> 4
    ([[0.125, 0.45, 0.175, 0.65, 0.6]], 0.3, [[2, 4, 4, 6]], [0.6]),
    # NMS: the lower-scored overlapping box goes, a separate one stays; output by score
    ([[0.1, 0.1, 0.5, 0.5, 0.6], [0.11, 0.1, 0.5, 0.5, 0.9], [0.6, 0.6, 0.9, 0.9, 0.7]], 0.3,
     [[2, 1, 10, 5], [12, 6, 18, 9]], [0.9, 0.7]),
    # IoU of these two is 1/3 > 0.3: suppressed
    ([[0.0, 0.0, 0.5, 1.0, 0.9], [0.25, 0.0, 0.75, 1.0, 0.8]], 0.3, [[0, 0, 10, 10]], [0.9]),
    # NaN rows (untrained network) are dropped
    ([[float("nan"), 0.1, 0.5, 0.5, 0.9], [0.1, 0.1, 0.5, 0.5, 0.4]], 0.3, [[2, 1, 10, 5]], [0.4]),
])
def test_postprocess_table(raw, thr, boxes, scores):
    dets = _post(raw, thr=thr)
    assert isinstance(dets, FaceDetections)
    assert dets.boxes_xyxy.dtype == torch.int64 and dets.scores.dtype == torch.float32
    assert dets.boxes_xyxy.tolist() == boxes
    assert dets.scores.tolist() == pytest.approx(scores)
    assert dets.image_size_hw == (10, 20) and dets.landmarks is None


def test_postprocess_nms_runs_on_unclipped_boxes():
    # Both boxes clamp to the same [0, 0, 10, 10] pixels but barely overlap before clamping,
    # so DP2 (NMS first, clamp after) keeps both.
    raw = [[-2.0, 0.0, 0.5, 1.0, 0.9], [0.0, 0.0, 3.0, 1.0, 0.8]]
    dets = _post(raw, size_hw=(10, 10))
    assert dets.boxes_xyxy.tolist() == [[0, 0, 5, 10], [0, 0, 10, 10]]


def test_postprocess_nms_threshold_is_used():
    raw = [[0.0, 0.0, 0.5, 1.0, 0.9], [0.25, 0.0, 0.75, 1.0, 0.8]]  # IoU 1/3
    assert len(_post(raw, iou=0.3)) == 1
    assert len(_post(raw, iou=0.5)) == 2


def test_postprocess_accepts_batch_of_one_and_rejects_bad_shapes():
    raw = torch.tensor([[[0.1, 0.1, 0.5, 0.5, 0.9]]])
    assert len(postprocess_dsfd(raw, (8, 8), score_threshold=0.3, nms_iou_threshold=0.3)) == 1
    with pytest.raises(ValueError, match="one image"):
        postprocess_dsfd(raw.repeat(2, 1, 1), (8, 8), score_threshold=0.3, nms_iou_threshold=0.3)
    with pytest.raises(ValueError, match=r"\[P, 5\]"):
        postprocess_dsfd(torch.zeros(3, 4), (8, 8), score_threshold=0.3, nms_iou_threshold=0.3)


# --------------------------------------------------------------- detector with a stand-in network

class FakeNet(torch.nn.Module):
    """Returns fixed raw output and records what it was given."""

    def __init__(self, raw: torch.Tensor) -> None:
        super().__init__()
        self.raw = raw
        self.calls: list[tuple] = []

    def forward(self, x, confidence_threshold, nms_threshold):
        self.calls.append((x.clone(), confidence_threshold, nms_threshold))
        return self.raw[None]


def _detector_with(raw, **kwargs) -> tuple[DSFDFaceDetector, FakeNet]:
    det = DSFDFaceDetector(device="cpu", download=False, **kwargs)
    net = FakeNet(torch.tensor(raw, dtype=torch.float32))
    det._model = net
    return det, net


def test_detector_feeds_dp2_input_and_postprocesses():
    det, net = _detector_with([[0.1, 0.2, 0.5, 0.6, 0.9], [0.6, 0.6, 0.9, 0.9, 0.2]])
    image = torch.randint(0, 256, (3, 10, 20), dtype=torch.uint8)
    dets = det(image)
    (x, _, _), = net.calls
    torch.testing.assert_close(x, preprocess_dsfd(image), rtol=0, atol=0)
    assert dets.boxes_xyxy.tolist() == [[2, 2, 10, 6]]
    assert dets.scores.tolist() == pytest.approx([0.9])
    assert dets.image_size_hw == (10, 20) and dets.boxes_xyxy.device.type == "cpu"


def test_detector_reads_score_threshold_at_call_time():
    det, _ = _detector_with([[0.1, 0.2, 0.5, 0.6, 0.9], [0.6, 0.6, 0.9, 0.9, 0.2]])
    image = torch.zeros(3, 10, 20, dtype=torch.uint8)
    assert len(det(image)) == 1
    det.score_threshold = 0.1  # what --dst does
    assert len(det(image)) == 2
    det.score_threshold = 0.95
    assert len(det(image)) == 0


@pytest.mark.parametrize("value", [-0.1, 1.5])
def test_score_threshold_is_validated(value):
    with pytest.raises(ValueError, match="score_threshold"):
        DSFDFaceDetector(score_threshold=value)
    det = DSFDFaceDetector()
    with pytest.raises(ValueError, match="score_threshold"):
        det.score_threshold = value


@pytest.mark.parametrize("image, error", [
    (torch.zeros(3, 8, 8), ValueError),  # float
    (torch.zeros(8, 8, 3, dtype=torch.uint8), ValueError),  # HWC
    ("image.png", TypeError),
])
def test_detector_rejects_bad_images(image, error):
    det, _ = _detector_with([])
    with pytest.raises(error):
        det(image)


def test_empty_image_gives_empty_detections_without_loading(tmp_path):
    det = DSFDFaceDetector(weights_dir=tmp_path, download=False, device="cpu")
    dets = det(torch.zeros(3, 0, 16, dtype=torch.uint8))
    assert len(dets) == 0 and dets.image_size_hw == (0, 16) and det._model is None


def test_construction_is_lazy_and_missing_weights_fail_on_first_call(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.delenv("DP2_WEIGHTS_DIR", raising=False)
    det = DSFDFaceDetector(weights_dir=tmp_path, download=False, device="cpu")  # must not touch files
    assert det._model is None
    with pytest.raises(WeightsError, match="WIDERFace_DSFD_RES152.pth"):
        det(torch.zeros(3, 8, 8, dtype=torch.uint8))


@pytest.mark.parametrize("name", [dsfd.DSFD_WEIGHTS.filename, dsfd.DSFD_WEIGHTS_LOKE_NAME.filename])
def test_weights_are_found_under_either_dp2_name(name, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    hub = tmp_path / "torch_home" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    (hub / name).write_bytes(b"stand-in")
    assert dsfd.find_dsfd_weights(tmp_path / "elsewhere", download=False) == hub / name


def test_weight_spec_names_the_dp2_file_and_mirrors():
    spec = dsfd.DSFD_WEIGHTS
    assert spec.filename == "WIDERFace_DSFD_RES152.pth"
    assert any("huggingface.co/spaces/haakohu/deep_privacy2_face" in u for u in spec.urls)
    assert any(u.startswith("https://api.loke.aws.unit.no/") for u in spec.urls)


def test_default_device():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert DSFDFaceDetector().device.type == expected


# ------------------------------------------------------------- the real network, random weights

@pytest.fixture(scope="module")
def random_dsfd(tmp_path_factory):
    """A random-init DSFD state dict saved as WIDERFace_DSFD_RES152.pth; returns (dir, network)."""
    torch.manual_seed(0)
    net = dsfd.build_dsfd_network()
    # Zero the last BN of every residual block (torchvision's zero_init_residual): with the
    # default init, 50 residual blocks in eval mode overflow to inf/NaN.
    for name, module in net.named_modules():
        if name.endswith(".bn3"):
            torch.nn.init.zeros_(module.weight)
    folder = tmp_path_factory.mktemp("dsfd_weights")
    torch.save(net.state_dict(), folder / dsfd.DSFD_WEIGHTS.filename)
    return folder, net


@pytest.mark.slow
def test_random_weights_load_and_match_face_detection_package(random_dsfd, monkeypatch, tmp_path):
    from face_detection.base import Detector
    from face_detection.dsfd.detect import DSFDDetector

    folder, net = random_dsfd
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    # the network as loaded (optimize=False); test_accel.py holds the optimized default to it
    det = DSFDFaceDetector(weights_dir=folder, download=False, device="cpu", score_threshold=0.3, optimize=False)
    gen = torch.Generator().manual_seed(1)
    image = torch.randint(0, 256, (3, 48, 64), dtype=torch.uint8, generator=gen)
    dets = det(image)

    # the loaded network is the saved one
    loaded = det.network.state_dict()
    assert all(torch.equal(loaded[key], value) for key, value in net.state_dict().items())
    assert isinstance(dets, FaceDetections) and len(dets) > 0
    assert dets.boxes_xyxy.dtype == torch.int64 and dets.scores.dtype == torch.float32
    assert dets.boxes_xyxy.shape == (len(dets), 4) and dets.image_size_hw == (48, 64)
    b = dets.boxes_xyxy
    assert (b[:, 0] >= 0).all() and (b[:, 1] >= 0).all() and (b[:, 2] <= 64).all() and (b[:, 3] <= 48).all()
    assert (dets.scores >= 0.3).all() and (dets.scores[:-1] >= dets.scores[1:]).all()

    # DP2's path: the package's own Detector._batched_detect on (im - mean), clip_boxes=True,
    # then boxes[:, :4] scaled by W/H and round().long().
    ref = DSFDDetector.__new__(DSFDDetector)
    Detector.__init__(ref, confidence_threshold=0.3, nms_iou_threshold=0.3, device=torch.device("cpu"),
                      max_resolution=None, fp16_inference=False, clip_boxes=True)
    ref.net = det.network
    mean = torch.tensor([123.0, 117.0, 104.0]).view(3, 1, 1)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the package's torch.cuda.amp.autocast is deprecated
        out = ref._batched_detect((image.float() - mean)[None])[0]
    expected = out[:, :4].clone()
    expected[:, [0, 2]] *= 64
    expected[:, [1, 3]] *= 48
    assert torch.equal(dets.boxes_xyxy, expected.round().long())
    torch.testing.assert_close(dets.scores, out[:, 4])

