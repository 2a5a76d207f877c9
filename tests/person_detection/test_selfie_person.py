"""Offline selfie person segmenter: component splitting, model lookup and a fake TFLite runtime."""
from __future__ import annotations

import importlib.util
import zipfile

import numpy as np
import pytest
import torch

import dp2.detection.selfie as selfie
from dp2.detection.selfie import (SELFIE_MODELS, SelfiePersonSegmenter, SelfieUnavailableError,
                                  person_detections_from_probability, read_selfie_model)
from dp2.structures import PersonDetections
from dp2.weights import WeightsError

GENERAL = "selfie_segmentation.tflite"


def _two_blobs(h=32, w=48) -> torch.Tensor:
    prob = torch.full((h, w), 0.1)
    prob[2:12, 3:9] = 0.9  # 60 px
    prob[15:30, 20:40] = 0.7  # 300 px
    prob[0, 47] = 0.95  # 1 px speck
    return prob


def test_components_become_detections_largest_first():
    dets = person_detections_from_probability(_two_blobs(), (32, 48), threshold=0.5, min_area=2)
    assert isinstance(dets, PersonDetections) and len(dets) == 2
    assert dets.boxes_xyxy.tolist() == [[20, 15, 40, 30], [3, 2, 9, 12]]
    assert dets.scores.tolist() == pytest.approx([0.7, 0.9])
    assert dets.masks.dtype == torch.bool and dets.masks.shape == (2, 32, 48)
    assert dets.masks.sum(dim=(1, 2)).tolist() == [300, 60]


def test_min_area_and_threshold():
    assert len(person_detections_from_probability(_two_blobs(), (32, 48), min_area=1)) == 3
    assert len(person_detections_from_probability(_two_blobs(), (32, 48), threshold=0.8, min_area=1)) == 2
    assert len(person_detections_from_probability(torch.zeros(8, 8), (32, 48))) == 0
    with pytest.raises(ValueError, match="threshold"):
        person_detections_from_probability(_two_blobs(), (32, 48), threshold=1.0)


def test_low_resolution_probability_is_resized_to_the_image():
    prob = torch.zeros(8, 8)
    prob[2:6, 2:6] = 1.0
    dets = person_detections_from_probability(prob, (64, 32), min_area=1)
    assert len(dets) == 1 and dets.masks.shape == (1, 64, 32)
    x0, y0, x1, y1 = dets.boxes_xyxy[0].tolist()
    assert 6 <= x0 <= 10 and 22 <= x1 <= 26 and 12 <= y0 <= 20 and 44 <= y1 <= 52


def test_diagonal_neighbours_are_one_component():
    prob = torch.zeros(6, 6)
    prob[1, 1] = prob[2, 2] = prob[3, 3] = 1.0
    assert len(person_detections_from_probability(prob, (6, 6), min_area=1)) == 1


# ------------------------------------------------------------------------------ model lookup

def _fake_tflite(payload: bytes = b"x" * 32) -> bytes:
    return b"\x1c\x00\x00\x00TFL3" + payload


def test_model_from_a_wheel_and_hash_check(tmp_path):
    wheel = tmp_path / "mediapipe-0.10.21-cp311-cp311-manylinux_2_28_x86_64.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("mediapipe/modules/selfie_segmentation/" + GENERAL, _fake_tflite())
    assert read_selfie_model(GENERAL, wheel, verify=False) == _fake_tflite()
    with pytest.raises(WeightsError, match="sha256"):
        read_selfie_model(GENERAL, wheel)
    with pytest.raises(WeightsError, match="does not contain"):
        read_selfie_model("selfie_segmentation_landscape.tflite", wheel, verify=False)


def test_plain_tflite_file_is_not_mistaken_for_a_zip(tmp_path):
    # models with metadata end in a zip of associated files: the TFL3 identifier decides
    path = tmp_path / GENERAL
    with zipfile.ZipFile(tmp_path / "tail.zip", "w") as archive:
        archive.writestr("labels.txt", "person")
    data = _fake_tflite() + (tmp_path / "tail.zip").read_bytes()
    path.write_bytes(data)
    assert zipfile.is_zipfile(path)
    assert read_selfie_model(GENERAL, path, verify=False) == data


def test_missing_model_or_runtime_raise_import_errors(tmp_path, monkeypatch):
    monkeypatch.setattr(selfie, "_installed_mediapipe_model", lambda name: None)
    with pytest.raises(ImportError, match="pip download --no-deps mediapipe==0.10.21"):
        read_selfie_model(GENERAL)
    with pytest.raises(SelfieUnavailableError, match="does not exist"):
        read_selfie_model(GENERAL, tmp_path / "nope.tflite")
    with pytest.raises(ValueError, match="unknown selfie model"):
        read_selfie_model("other.tflite")

    real_import = selfie.importlib.import_module

    def no_runtime(name, *args):
        if name.startswith(("ai_edge_litert", "tflite_runtime", "tensorflow")):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return real_import(name, *args)

    monkeypatch.setattr(selfie.importlib, "import_module", no_runtime)
    segmenter = SelfiePersonSegmenter(model_path=tmp_path / "nope.tflite")
    with pytest.raises(ImportError, match="ai-edge-litert"):
        segmenter(torch.zeros((3, 8, 8), dtype=torch.uint8))


class _FakeInterpreter:
    """Stands in for a TFLite interpreter: reports a person where the input is bright."""

    def __init__(self, model_content: bytes, num_threads: int | None = None):
        assert model_content.startswith(_fake_tflite()[:8])
        self.inputs = []

    def allocate_tensors(self):
        pass

    def get_input_details(self):
        return [{"index": 0, "shape": np.array([1, 256, 256, 3])}]

    def get_output_details(self):
        return [{"index": 1}]

    def set_tensor(self, index, value):
        assert index == 0 and value.dtype == np.float32 and value.shape == (1, 256, 256, 3)
        assert 0.0 <= value.min() and value.max() <= 1.0
        self.inputs.append(value)

    def invoke(self):
        self.output = (self.inputs[-1].mean(axis=3, keepdims=True) > 0.5).astype(np.float32)

    def get_tensor(self, index):
        return self.output


def test_segmenter_pipeline_with_a_fake_runtime(tmp_path, monkeypatch):
    path = tmp_path / GENERAL
    path.write_bytes(_fake_tflite())
    monkeypatch.setattr(selfie, "_tflite_interpreter_class", lambda: _FakeInterpreter)
    segmenter = SelfiePersonSegmenter(model_path=path, verify=False, min_area=1)
    image = torch.zeros((3, 60, 80), dtype=torch.uint8)
    image[:, 10:30, 5:25] = 255
    image[:, 40:55, 50:75] = 255
    dets = segmenter(image)
    assert len(dets) == 2 and dets.masks.shape == (2, 60, 80) and dets.image_size_hw == (60, 80)
    for got, want in zip(dets.boxes_xyxy.tolist(), [[5, 10, 25, 30], [50, 40, 75, 55]]):
        assert all(abs(g - w) <= 1 for g, w in zip(got, want)), (got, want)
    assert len(segmenter(torch.zeros((3, 60, 80), dtype=torch.uint8))) == 0
    assert len(segmenter(torch.zeros((3, 0, 80), dtype=torch.uint8))) == 0
    with pytest.raises(ValueError, match="threshold"):
        SelfiePersonSegmenter(threshold=0.0)


def test_a_runtime_that_cannot_load_the_model_is_reported(tmp_path, monkeypatch):
    # what tflite-runtime 2.14 (built for numpy 1.x) does under numpy 2
    class Broken:
        def __init__(self, **kwargs):
            raise SystemError("returned a result with an exception set")

    path = tmp_path / GENERAL
    path.write_bytes(_fake_tflite())
    monkeypatch.setattr(selfie, "_tflite_interpreter_class", lambda: Broken)
    with pytest.raises(SelfieUnavailableError, match="could not load"):
        SelfiePersonSegmenter(model_path=path, verify=False)(torch.zeros((3, 8, 8), dtype=torch.uint8))


def _real_model_available() -> bool:
    return (importlib.util.find_spec("ai_edge_litert") is not None
            and selfie._installed_mediapipe_model(GENERAL) is not None)


@pytest.mark.skipif(not _real_model_available(), reason="needs ai-edge-litert and a mediapipe<=0.10.21 model file")
def test_real_model_finds_a_bright_blob_or_nothing():
    # smoke test only: shapes and types from the real network on a tiny synthetic image
    image = torch.zeros((3, 48, 64), dtype=torch.uint8)
    dets = SelfiePersonSegmenter()(image)
    assert dets.masks.shape == (len(dets), 48, 64) and dets.boxes_xyxy.dtype == torch.int64
    assert SELFIE_MODELS[GENERAL][1] == (256, 256)
