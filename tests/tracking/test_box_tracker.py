"""BoxTracker (ids per box) and TrackSeeds (one latent seed per id)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from dp2.generation.latents import LatentSampler
from dp2.tracking import BoxTracker, TrackSeeds


def box_at(x: float, y: float, size: int = 40) -> list[int]:
    return [round(x), round(y), round(x) + size, round(y) + size]


def run(tracker: BoxTracker, frames: list[list[list[int]]]) -> list[list[int]]:
    return [tracker.update(torch.tensor(boxes, dtype=torch.int64).reshape(-1, 4)).tolist() for boxes in frames]


def test_ids_stay_fixed_along_a_moving_track():
    frames = [[box_at(10 + 12 * t, 50 + 3 * t)] for t in range(40)]  # 12 px/frame, 40 px face
    ids = run(BoxTracker(), frames)
    assert {i for (i,) in ids} == {0}


@pytest.mark.parametrize("speed", [34, 38])
def test_faces_faster_than_the_iou_gate_keep_their_id(speed):
    # 34+ px/frame on a 40 px face: consecutive boxes have IoU < 0.1 = min_iou. The distance
    # round links the first two sightings, the velocity prediction the rest.
    frames = [[box_at(10 + speed * t, 50)] for t in range(20)]
    assert run(BoxTracker(), frames) == [[0]] * 20
    assert run(BoxTracker(max_shift=0), frames[:3]) == [[0], [1], [2]]


def test_distance_round_ignores_far_and_differently_sized_boxes():
    tracker = BoxTracker()
    run(tracker, [[box_at(0, 0)]])
    assert tracker.update(torch.tensor([box_at(45, 0)])).tolist() == [1]  # > 1 box size away
    tracker = BoxTracker()
    run(tracker, [[box_at(0, 0)]])
    assert tracker.update(torch.tensor([[15, 15, 25, 25]])).tolist() == [1]  # same centre, 1/16 the area


def test_adjacent_faces_moving_together_keep_distinct_ids():
    frames = []
    for t in range(30):
        pair = [box_at(20 + 5 * t, 40), box_at(62 + 5 * t, 40)]  # 2 px apart
        frames.append(pair if t % 2 == 0 else pair[::-1])  # detector order changes
    ids = run(BoxTracker(), frames)
    left = [i[0] if t % 2 == 0 else i[1] for t, i in enumerate(ids)]
    right = [i[1] if t % 2 == 0 else i[0] for t, i in enumerate(ids)]
    assert set(left) == {0} and set(right) == {1}


@pytest.mark.parametrize("occluded", [(), (9, 10)])
def test_crossing_faces_keep_their_ids(occluded):
    tracker = BoxTracker()
    seen = {"a": set(), "b": set()}
    for t in range(20):
        a, b = box_at(10 + 8 * t, 50), box_at(170 - 8 * t, 58)  # they cross at t = 10
        boxes = [a] if t in occluded else [a, b]
        ids = tracker.update(torch.tensor(boxes)).tolist()
        seen["a"].add(ids[0])
        if len(ids) > 1:
            seen["b"].add(ids[1])
    assert seen == {"a": {0}, "b": {1}}


def test_gap_up_to_max_age_keeps_the_id_and_longer_gaps_start_a_new_one():
    tracker = BoxTracker(max_age=3)
    box = [box_at(50, 50)]
    assert run(tracker, [box, [], [], [], box]) == [[0], [], [], [], [0]]
    assert run(tracker, [[], [], [], [], box]) == [[], [], [], [], [1]]


def test_new_faces_get_new_ids_and_reset_keeps_counting():
    tracker = BoxTracker()
    assert run(tracker, [[box_at(0, 0)], [box_at(0, 0), box_at(200, 0)], [box_at(200, 0)]]) == [[0], [0, 1], [1]]
    assert tracker.track_ids == [0, 1]
    tracker.reset()
    assert tracker.num_tracks == 0
    assert run(tracker, [[box_at(200, 0)]]) == [[2]]


def test_one_detection_never_takes_two_tracks():
    tracker = BoxTracker()
    run(tracker, [[box_at(0, 0), box_at(10, 0)]])
    ids = tracker.update(torch.tensor([box_at(5, 0)])).tolist()
    assert len(ids) == 1 and ids[0] in (0, 1)
    assert tracker.update(torch.tensor([box_at(0, 0), box_at(10, 0)])).unique().numel() == 2


def test_confident_detections_are_matched_first():
    tracker = BoxTracker(high_score=0.5)
    run(tracker, [[box_at(100, 100)]])
    # The low-score box overlaps the track more, but the confident one gets the id.
    ids = tracker.update(torch.tensor([box_at(101, 100), box_at(115, 100)]), torch.tensor([0.2, 0.9]))
    assert ids.tolist() == [1, 0]


def test_accepts_numpy_float_boxes_and_empty_frames():
    tracker = BoxTracker()
    ids = tracker.update(np.array([[1.5, 2.0, 40.2, 41.0]]), np.array([0.7]))
    assert ids.dtype == torch.int64 and ids.tolist() == [0]
    empty = tracker.update(torch.zeros((0, 4), dtype=torch.int64), torch.zeros(0))
    assert empty.dtype == torch.int64 and empty.shape == (0,)


@pytest.mark.parametrize("boxes, scores, message", [
    (torch.zeros(3, 5), None, r"boxes_xyxy must have shape \[N, 4\], got \[3, 5\]"),
    (torch.zeros(2, 4), torch.zeros(3), r"scores must have shape \[2\], got \[3\]"),
])
def test_validation_messages(boxes, scores, message):
    with pytest.raises(ValueError, match=message):
        BoxTracker().update(boxes, scores)


def test_bad_parameters_are_rejected():
    with pytest.raises(ValueError, match="min_iou"):
        BoxTracker(min_iou=0)
    with pytest.raises(ValueError, match="max_age"):
        BoxTracker(max_age=-1)


def test_track_seeds_draw_once_per_new_id_in_order():
    reference = LatentSampler(3)
    expected = [reference.next_seed() for _ in range(3)]
    seeds = TrackSeeds(LatentSampler(3))
    assert seeds.seeds_for(torch.tensor([5, 2])) == expected[:2]
    assert seeds.seeds_for([2, 5, 2]) == [expected[1], expected[0], expected[1]]
    assert seeds(9) == expected[2]
    assert len(seeds) == 3 and 9 in seeds
    seeds.forget([9])
    assert 9 not in seeds


def test_seeds_stay_fixed_per_track_through_the_tracker():
    tracker, seeds = BoxTracker(), TrackSeeds(LatentSampler(0))
    per_track: dict[int, set[int]] = {}
    for t in range(25):
        boxes = [box_at(10 + 6 * t, 20)]
        if t >= 10:
            boxes.append(box_at(300 - 6 * t, 200))  # a second person walks in at t = 10
        ids = tracker.update(torch.tensor(boxes))
        for tid, seed in zip(ids.tolist(), seeds.seeds_for(ids)):
            per_track.setdefault(tid, set()).add(seed)
    assert sorted(per_track) == [0, 1]
    assert all(len(s) == 1 for s in per_track.values())
    assert per_track[0] != per_track[1]
