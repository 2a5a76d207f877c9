"""Multi-object box tracking with stable integer ids, and one latent seed per track.

Why an own tracker instead of a PyPI one (checked for this project):

- ``motpy`` (DeepPrivacy2's choice, MIT): last release 0.0.10, marked "Development Status :: 3 -
  Alpha", pulls in ``filterpy`` (unmaintained), and names tracks by ``uuid4`` strings, so runs
  are not reproducible and ids need a side table. Its algorithm is small: a constant-velocity
  Kalman filter per track, IoU matching with ``min_iou=0.1``, tracks dropped after 12 unmatched
  steps.
- ``norfair`` 2.3.0 pins ``numpy<2`` (this project runs numpy 2.x) and also needs ``filterpy``.

The same algorithm fits in about a hundred lines over a small Hungarian solver
(:func:`dp2.ops.assignment.linear_assignment`; scipy's costs 0.4 s of start-up to import), with no
new dependency, deterministic integer ids and no numpy-version risk. :class:`BoxTracker`
follows motpy's defaults (``min_iou=0.1``, tracks kept for ``max_age=12`` missed frames,
constant velocity for the box centre and a static box size) with three differences:

- the motion model is an alpha-beta filter (the steady-state form of a constant-velocity Kalman
  filter): the box snaps to each detection and the centre velocity is corrected by ``beta``;
- association is globally optimal (Hungarian) on IoU with the *predicted* box, in two rounds
  like ByteTrack: confident detections (``score >= high_score``) first, the rest second; then
  a last round matches what is left by centre distance (within ``max_shift`` box sizes, for
  boxes of similar size), so a small face that moves more than its size per frame before its
  velocity is known keeps its id (a lost id also ends gap filling, see ``temporal_fill``);
- a track dies after ``max_age`` consecutive missed frames (motpy's "staleness" also decays by 3
  per hit, which makes its lifetime depend on history).

DP2 semantics kept: every input box gets an id (new boxes start new tracks at once, no
confirmation delay), and :class:`TrackSeeds` gives each new track one latent seed that is reused
for as long as the id lives (DP2 draws ``np.random.randint(0, 2**32-1)`` per new motpy id; here
the seed is the run's :meth:`LatentSampler.next_seed`, high bound ``2**32``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Protocol

import numpy as np
import torch

from ..ops.assignment import linear_assignment
from ..ops.boxes import boxes_iou

__all__ = ["BoxTracker", "TrackSeeds"]


@dataclass
class _Track:
    id: int
    center: np.ndarray  # float64 [2], last detected centre (x, y)
    size: np.ndarray  # float64 [2], last detected (w, h)
    velocity: np.ndarray  # float64 [2], pixels per frame
    last_step: int  # step of the last matched detection
    hits: int = 1

    def predict(self, step: int) -> np.ndarray:
        """Box xyxy float64 [4] expected at ``step``: constant velocity, static size."""
        c = self.center + self.velocity * (step - self.last_step)
        half = self.size / 2
        return np.concatenate([c - half, c + half])

    def correct(self, box: np.ndarray, step: int, beta: float) -> None:
        dt = step - self.last_step
        center = (box[:2] + box[2:]) / 2
        if self.hits == 1:
            # Second sighting: the first velocity estimate is the displacement itself.
            self.velocity = (center - self.center) / dt
        else:
            residual = center - (self.center + self.velocity * dt)
            self.velocity = self.velocity + beta * residual / dt
        self.center = center
        self.size = box[2:] - box[:2]
        self.last_step = step
        self.hits += 1


def _as_numpy(value, name: str, shape_tail: tuple[int, ...]) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim != 1 + len(shape_tail) or tuple(arr.shape[1:]) != shape_tail:
        expected = ", ".join(["N", *map(str, shape_tail)])
        raise ValueError(f"{name} must have shape [{expected}], got {list(arr.shape)}")
    return arr


class BoxTracker:
    """IoU + constant-velocity multi-object tracker for one detection kind.

    Keep one tracker per kind (faces, persons): ids of different kinds are independent.

    Args:
        min_iou: least IoU between a track's predicted box and a detection to match them
            (motpy/DP2 default 0.1).
        max_age: a track missed in more than this many consecutive frames is dropped; a later
            detection at that place gets a new id (motpy/DP2 ``max_staleness`` 12).
        velocity_gain: ``beta`` of the alpha-beta filter in ``(0, 1]``: how fast the centre
            velocity follows the observed motion.
        high_score: detections with ``score >= high_score`` are associated first (ByteTrack);
            0 turns the second round off.
        max_shift: last-round gate on the distance between a track's predicted centre and a
            detection's centre, in units of the track's box size ``sqrt(w * h)``; boxes whose
            areas differ by more than 2x never match this way. 0 turns the round off.

    Convention: boxes are xyxy pixels (int or float); ids are int64, unique over the tracker's
    lifetime (they keep counting up across :meth:`reset`), starting at 0.

    >>> tracker = BoxTracker()
    >>> tracker.update(torch.tensor([[10, 10, 30, 30], [100, 10, 120, 30]]), torch.tensor([0.9, 0.8]))
    tensor([0, 1])
    >>> tracker.update(torch.tensor([[104, 10, 124, 30], [12, 10, 32, 30]]), torch.tensor([0.9, 0.9]))
    tensor([1, 0])
    """

    def __init__(self, *, min_iou: float = 0.1, max_age: int = 12, velocity_gain: float = 0.5,
                 high_score: float = 0.5, max_shift: float = 1.0) -> None:
        if not 0.0 < min_iou <= 1.0:
            raise ValueError(f"min_iou must be in (0, 1], got {min_iou}")
        if max_age < 0:
            raise ValueError(f"max_age must be >= 0, got {max_age}")
        if not 0.0 < velocity_gain <= 1.0:
            raise ValueError(f"velocity_gain must be in (0, 1], got {velocity_gain}")
        self.min_iou = float(min_iou)
        self.max_age = int(max_age)
        self.velocity_gain = float(velocity_gain)
        self.high_score = float(high_score)
        self.max_shift = float(max_shift)
        self._tracks: list[_Track] = []
        self._step = 0
        self._next_id = 0

    @property
    def num_tracks(self) -> int:
        """Tracks currently alive (matched within the last ``max_age`` frames)."""
        return len(self._tracks)

    @property
    def track_ids(self) -> list[int]:
        """Ids of the tracks alive now."""
        return [t.id for t in self._tracks]

    def reset(self) -> None:
        """Forget all tracks (shot cut, new video). Ids keep counting up."""
        self._tracks = []

    def update(self, boxes_xyxy, scores=None) -> torch.Tensor:
        """Advance one frame and assign an id to every detection.

        Args:
            boxes_xyxy: [N, 4] boxes of this frame (torch or numpy, int or float).
            scores: [N] detection scores, or None (all treated as confident).

        Returns:
            int64 [N] track ids, in input order; a box that matches no live track starts a new
            one. Two boxes of one frame never share an id.
        """
        boxes = _as_numpy(boxes_xyxy, "boxes_xyxy", (4,))
        n = boxes.shape[0]
        conf = np.ones(n) if scores is None else _as_numpy(scores, "scores", ())
        if conf.shape[0] != n:
            raise ValueError(f"scores must have shape [{n}], got {list(conf.shape)}")
        self._step += 1
        step = self._step
        ids = np.full(n, -1, dtype=np.int64)
        free_tracks = list(range(len(self._tracks)))
        high = conf >= self.high_score
        for round_dets in (np.flatnonzero(high), np.flatnonzero(~high)):
            free_tracks = self._associate(boxes, round_dets, free_tracks, ids, step)
        if self.max_shift > 0:
            self._associate_by_distance(boxes, np.flatnonzero(ids < 0), free_tracks, ids, step)
        for det in np.flatnonzero(ids < 0):
            box = boxes[det]
            self._tracks.append(_Track(id=self._next_id, center=(box[:2] + box[2:]) / 2,
                                       size=box[2:] - box[:2], velocity=np.zeros(2), last_step=step))
            ids[det] = self._next_id
            self._next_id += 1
        self._tracks = [t for t in self._tracks if step - t.last_step <= self.max_age]
        return torch.from_numpy(ids)

    def _associate(self, boxes: np.ndarray, dets: np.ndarray, free_tracks: list[int], ids: np.ndarray,
                   step: int) -> list[int]:
        """Hungarian matching of ``dets`` to ``free_tracks``; fills ``ids``, returns unmatched tracks."""
        if len(dets) == 0 or len(free_tracks) == 0:
            return free_tracks
        predicted = np.stack([self._tracks[t].predict(step) for t in free_tracks])  # [T, 4]
        iou = boxes_iou(torch.from_numpy(predicted), torch.from_numpy(boxes[dets])).double().numpy()  # [T, D]
        iou[iou < self.min_iou] = 0.0  # a pair below the gate must not outweigh a valid one
        rows, cols = linear_assignment(iou, maximize=True)
        matched = set()
        for r, c in zip(rows, cols):
            if iou[r, c] > 0.0:
                track = self._tracks[free_tracks[r]]
                track.correct(boxes[dets[c]], step, self.velocity_gain)
                ids[dets[c]] = track.id
                matched.add(r)
        return [t for i, t in enumerate(free_tracks) if i not in matched]

    def _associate_by_distance(self, boxes: np.ndarray, dets: np.ndarray, free_tracks: list[int],
                               ids: np.ndarray, step: int) -> None:
        if len(dets) == 0 or len(free_tracks) == 0:
            return
        tracks = [self._tracks[t] for t in free_tracks]
        centers = np.stack([t.predict(step).reshape(2, 2).mean(axis=0) for t in tracks])  # [T, 2]
        scale = np.sqrt(np.stack([t.size.prod() for t in tracks]).clip(min=1.0))  # [T]
        det_boxes = boxes[dets]
        det_centers = (det_boxes[:, :2] + det_boxes[:, 2:]) / 2  # [D, 2]
        det_area = (det_boxes[:, 2:] - det_boxes[:, :2]).clip(min=0).prod(axis=1).clip(min=1.0)  # [D]
        dist = np.linalg.norm(centers[:, None] - det_centers[None], axis=2) / scale[:, None]  # [T, D]
        area_ratio = det_area[None, :] / (scale[:, None] ** 2)
        ok = (dist <= self.max_shift) & (area_ratio >= 0.5) & (area_ratio <= 2.0)
        cost = np.where(ok, dist, 1e6)
        rows, cols = linear_assignment(cost)
        for r, c in zip(rows, cols):
            if ok[r, c]:
                tracks[r].correct(det_boxes[c], step, self.velocity_gain)
                ids[dets[c]] = tracks[r].id

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(min_iou={self.min_iou}, max_age={self.max_age}, "
                f"velocity_gain={self.velocity_gain}, high_score={self.high_score}, "
                f"max_shift={self.max_shift}, tracks={self.num_tracks})")


class _SeedSource(Protocol):
    def next_seed(self) -> int: ...


class TrackSeeds:
    """Latent seed per track id: a new id draws ``sampler.next_seed()`` once, then keeps it.

    Args:
        sampler: anything with ``next_seed() -> int`` (a :class:`~dp2.generation.latents.LatentSampler`).

    >>> from dp2.generation.latents import LatentSampler
    >>> seeds = TrackSeeds(LatentSampler(0))
    >>> seeds.seeds_for([7, 3]), seeds.seeds_for([3])
    ([2357136044, 2546248239], [2546248239])
    """

    def __init__(self, sampler: _SeedSource) -> None:
        self.sampler = sampler
        self._seeds: dict[int, int] = {}

    def __call__(self, track_id: int) -> int:
        track_id = int(track_id)
        seed = self._seeds.get(track_id)
        if seed is None:
            seed = self._seeds[track_id] = int(self.sampler.next_seed())
        return seed

    def seeds_for(self, track_ids: Iterable[int] | torch.Tensor) -> list[int]:
        """Seeds for ``track_ids`` in order; unseen ids draw in that order."""
        if isinstance(track_ids, torch.Tensor):
            track_ids = track_ids.tolist()
        return [self(t) for t in track_ids]

    def forget(self, track_ids: Iterable[int]) -> None:
        """Drop ids that will not come back (e.g. after a tracker reset) to bound memory."""
        for t in track_ids:
            self._seeds.pop(int(t), None)

    def __len__(self) -> int:
        return len(self._seeds)

    def __contains__(self, track_id: int) -> bool:
        return int(track_id) in self._seeds
