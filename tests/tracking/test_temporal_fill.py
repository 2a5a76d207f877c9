"""TemporalFiller: gaps along tracks are filled, frames come out in order with bounded latency."""
from __future__ import annotations

import math

import pytest
import torch

from dp2.structures import FaceDetections, PersonDetections
from dp2.tracking import BoxTracker, FilledFrame, TemporalFiller

SIZE_HW = (240, 400)


def faces(boxes: list[list[float]], scores: list[float] | None = None, landmarks=None) -> FaceDetections:
    b = torch.tensor([[round(v) for v in box] for box in boxes], dtype=torch.int64).reshape(-1, 4)
    s = torch.tensor(scores if scores is not None else [0.9] * len(boxes), dtype=torch.float32)
    return FaceDetections(boxes_xyxy=b, scores=s, image_size_hw=SIZE_HW, landmarks=landmarks)


def true_box(t: int, x0: float = 10, vx: float = 7, y0: float = 40, vy: float = 2) -> list[float]:
    return [x0 + vx * t, y0 + vy * t, x0 + vx * t + 36, y0 + vy * t + 44]


def contains(outer: list[int], inner: list[int]) -> bool:
    return outer[0] <= inner[0] and outer[1] <= inner[1] and outer[2] >= inner[2] and outer[3] >= inner[3]


def iou(a: list[int], b: list[int]) -> float:
    iw = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def stream(filler: TemporalFiller, frames: list[FaceDetections], tracker: BoxTracker | None = None):
    """Push every frame through tracker + filler; returns released frames and per-push latency."""
    tracker = tracker or BoxTracker()
    released: list[FilledFrame] = []
    held = []
    for i, dets in enumerate(frames):
        ids = tracker.update(dets.boxes_xyxy, dets.scores)
        out = filler.push(i, dets, ids, payload=f"frame{i}")
        for f in out:
            held.append(i - f.frame_index)
        released += out
        assert filler.pending <= filler.latency
    released += filler.flush()
    assert filler.pending == 0
    return released, held


@pytest.mark.parametrize("smooth_radius", [0, 2])
def test_face_missed_for_one_and_two_frames_has_a_box_in_every_frame(smooth_radius):
    missing = {5, 11, 12, 20}  # 1-, 2- and 1-frame gaps
    frames = [faces([] if t in missing else [true_box(t)]) for t in range(30)]
    out, held = stream(TemporalFiller(max_gap=2, smooth_radius=smooth_radius), frames)
    assert [f.frame_index for f in out] == list(range(30))
    assert [f.payload for f in out] == [f"frame{t}" for t in range(30)]
    for t, f in enumerate(out):
        assert len(f.detections) == 1, f"frame {t} has {len(f.detections)} boxes"
        assert f.filled.tolist() == [t in missing]
        assert f.track_ids.tolist() == [0]
        box = f.detections.boxes_xyxy[0].tolist()
        expected = [round(v) for v in true_box(t)]
        # Linear motion: the interpolation hits the true box up to outward rounding.
        assert contains(box, expected) and iou(box, expected) > 0.9
    assert max(held) <= 2 + smooth_radius


def test_filled_rows_interpolate_box_score_and_landmarks():
    lm = lambda x: torch.tensor([[[x, 5.0]] * 5])  # noqa: E731
    frames = [
        faces([[0, 0, 10, 10]], [0.9], lm(0.0)),
        FaceDetections.empty(SIZE_HW),  # no landmarks on the empty frame
        FaceDetections.empty(SIZE_HW),
        faces([[6, 3, 16, 13]], [0.6], lm(6.0)),
    ]
    out, _ = stream(TemporalFiller(max_gap=2), frames)
    assert [f.detections.boxes_xyxy.tolist() for f in out] == [
        [[0, 0, 10, 10]], [[2, 1, 12, 11]], [[4, 2, 14, 12]], [[6, 3, 16, 13]]]
    assert out[1].detections.scores.tolist() == pytest.approx([0.8])
    assert out[2].detections.landmarks[0, :, 0].tolist() == pytest.approx([4.0] * 5)
    assert [f.filled.tolist() for f in out] == [[False], [True], [True], [False]]


def test_fractional_interpolation_rounds_outward():
    frames = [faces([[0, 0, 10, 10]]), FaceDetections.empty(SIZE_HW), FaceDetections.empty(SIZE_HW),
              faces([[1, 1, 11, 11]])]
    out, _ = stream(TemporalFiller(max_gap=2, smooth_radius=0), frames)
    # 1/3 and 2/3 of a pixel: the filled box covers both neighbours' pixels.
    assert out[1].detections.boxes_xyxy.tolist() == [[0, 0, 11, 11]]
    assert out[2].detections.boxes_xyxy.tolist() == [[0, 0, 11, 11]]


def test_gaps_longer_than_max_gap_are_not_filled():
    missing = {4, 5, 6}
    frames = [faces([] if t in missing else [true_box(t)]) for t in range(12)]
    out, _ = stream(TemporalFiller(max_gap=2), frames)
    assert [len(f.detections) for f in out] == [0 if t in missing else 1 for t in range(12)]


def test_first_and_last_frames_are_released_at_flush():
    filler = TemporalFiller(max_gap=3)
    assert filler.push(0, faces([true_box(0)]), [0]) == []
    assert filler.push(1, faces([true_box(1)]), [0]) == []
    out = filler.flush()
    assert [f.frame_index for f in out] == [0, 1]
    assert filler.flush() == []


def test_release_order_is_strictly_increasing_and_latency_is_bounded():
    filler = TemporalFiller(max_gap=3, smooth_radius=2, extend=2)
    indices, released = [0, 1, 2, 5, 6, 9, 10, 11, 12, 20, 21], []
    for step, index in enumerate(indices):
        got = filler.push(index, faces([true_box(step)] if step % 3 else []), [0] if step % 3 else [])
        for f in got:
            assert step - indices.index(f.frame_index) <= filler.latency == 5
        released += got
    released += filler.flush()
    assert [f.frame_index for f in released] == indices


def test_max_gap_zero_passes_frames_through_at_once():
    filler = TemporalFiller(max_gap=0)
    out = filler.push(3, faces([true_box(0)], [0.5]), torch.tensor([4]))
    assert len(out) == 1 and out[0].frame_index == 3 and out[0].track_ids.tolist() == [4]
    assert out[0].detections.boxes_xyxy.tolist() == [[round(v) for v in true_box(0)]]


def test_smoothing_never_shrinks_a_detected_box():
    jitter = [0, 3, -2, 4, -3, 1, -4, 2, 0, 3, -1, -3, 2]
    frames = [faces([[50 + j, 60 - j, 90 + 2 * j, 110 + j]]) for j in jitter]
    out, _ = stream(TemporalFiller(max_gap=1, smooth_radius=2), frames)
    for dets, f in zip(frames, out):
        assert contains(f.detections.boxes_xyxy[0].tolist(), dets.boxes_xyxy[0].tolist())
    assert any(not torch.equal(d.boxes_xyxy, f.detections.boxes_xyxy) for d, f in zip(frames, out))


def test_smoothing_leaves_constant_velocity_boxes_unchanged():
    frames = [faces([[10 + 4 * t, 20, 50 + 4 * t, 60]]) for t in range(10)]
    out, _ = stream(TemporalFiller(max_gap=1, smooth_radius=2), frames)
    assert all(torch.equal(d.boxes_xyxy, f.detections.boxes_xyxy) for d, f in zip(frames, out))


def test_extend_copies_first_and_last_boxes_outward():
    seen = range(5, 9)
    frames = [faces([true_box(t)] if t in seen else []) for t in range(14)]
    out, _ = stream(TemporalFiller(max_gap=3, extend=2), frames)
    counts = [len(f.detections) for f in out]
    assert counts == [0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0]
    assert out[3].detections.boxes_xyxy.tolist() == out[5].detections.boxes_xyxy.tolist()
    assert out[10].detections.boxes_xyxy.tolist() == out[8].detections.boxes_xyxy.tolist()
    assert [f.filled.tolist() for f in out[3:11]] == [[True]] * 2 + [[False]] * 4 + [[True]] * 2


def test_two_tracks_fill_independently_and_detected_rows_keep_input_order():
    frames = []
    for t in range(16):
        a, b = true_box(t), true_box(t, x0=300, vx=-6, y0=150, vy=0)
        rows = [b, a] if t % 2 else [a, b]
        rows = [r for r in rows if not ((r is a and t in (3, 4)) or (r is b and t == 9))]
        frames.append(faces(rows))
    out, _ = stream(TemporalFiller(max_gap=2), frames)
    assert all(len(f.detections) == 2 for f in out)
    assert sorted(set(f.track_ids.tolist()[0] for f in out) | set(f.track_ids.tolist()[1] for f in out)) == [0, 1]
    assert out[3].filled.tolist() == [False, True] and out[9].filled.tolist() == [False, True]
    # Frame 1 came in as [b, a]: detected rows come out in that order.
    assert out[1].track_ids.tolist() == [1, 0]


def test_flush_is_a_boundary_and_indices_may_restart():
    filler = TemporalFiller(max_gap=2)
    out = filler.push(0, faces([true_box(0)]), [0])
    out += filler.push(1, faces([]), [])
    out += filler.reset()  # shot cut between 1 and 2
    out += filler.push(0, faces([true_box(2)]), [0])
    out += filler.flush()
    assert [len(f.detections) for f in out] == [1, 0, 1]  # nothing filled across the cut


def test_curved_paths_with_random_misses_stay_covered():
    g = torch.Generator().manual_seed(0)
    paths = [lambda t: (60 + 50 * math.sin(t / 6), 40 + 3 * t), lambda t: (300 - 5 * t, 120 + 20 * math.cos(t / 5))]
    truth, frames = [], []
    for t in range(60):
        boxes = [[x, y, x + 40, y + 48] for x, y in (p(t) for p in paths)]
        truth.append([[round(v) for v in b] for b in boxes])
        frames.append([bool(torch.rand(1, generator=g) > 0.3) for _ in boxes])  # detected?
    # Each face is missed with probability 0.3, never more than 2 frames in a row, and it is
    # detected in the first and last frame (no look-ahead there to fill from).
    for k in range(2):
        run = 0
        for t in range(60):
            run = 0 if frames[t][k] else run + 1
            if run > 2 or t in (0, 59):
                frames[t][k], run = True, 0
    dets = [faces([truth[t][k] for k in range(2) if frames[t][k]]) for t in range(60)]
    out, _ = stream(TemporalFiller(max_gap=2, smooth_radius=1), dets)
    assert sum(int(f.filled.sum()) for f in out) == sum(not frames[t][k] for t in range(60) for k in range(2)) > 10
    for t, f in enumerate(out):
        got = f.detections.boxes_xyxy.tolist()
        for k in range(2):
            assert max(iou(b, truth[t][k]) for b in got) > 0.6, (t, k)


def test_person_detections_are_not_supported_yet():
    persons = PersonDetections.empty(SIZE_HW)
    with pytest.raises(TypeError, match="supports FaceDetections, got PersonDetections"):
        TemporalFiller().push(0, persons, [])


@pytest.mark.parametrize("ids, index, message", [
    ([1, 1], 0, r"track_ids must be distinct within a frame, got \[1, 1\]"),
    ([1], 0, r"track_ids must be int \[2\]"),
    (torch.tensor([0.5, 1.5]), 0, r"track_ids must be int \[2\], got torch.float32"),
])
def test_validation_messages(ids, index, message):
    with pytest.raises(ValueError, match=message):
        TemporalFiller().push(index, faces([true_box(0), true_box(9)]), ids)


def test_frame_index_must_increase():
    filler = TemporalFiller()
    filler.push(4, faces([]), [])
    with pytest.raises(ValueError, match="frame_index must increase, got 4 after 4"):
        filler.push(4, faces([]), [])


def test_bad_parameters_are_rejected():
    with pytest.raises(ValueError, match=r"extend must be in \[0, max_gap=1\], got 2"):
        TemporalFiller(max_gap=1, extend=2)
    with pytest.raises(ValueError, match="must be >= 0"):
        TemporalFiller(max_gap=-1)
