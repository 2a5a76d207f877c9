"""Fill short detection gaps along tracks, with a small look-ahead buffer.

A detector that misses a face for one frame leaks that face in a video. :class:`TemporalFiller`
holds back the last ``max_gap + smooth_radius`` frames; when a track id comes back after
missing at most ``max_gap`` frames, the missing frames get boxes interpolated linearly between
the detections on both sides. Optionally every box is smoothed over ``2 * smooth_radius + 1``
frames, and ``extend`` frames before a track's first and after its last detection get a copy of
that box (faces are often found a few frames late and lost a few frames early).

Coverage comes first: smoothing may grow a box, never shrink it below the box it smooths (the
smoothed box is the union of the moving average and the frame's own box), and interpolated and
averaged coordinates are rounded outward.

Convention: frames go in and come out in push order, each exactly once; the frame released
last by :meth:`~TemporalFiller.push` is at most ``latency = max_gap + smooth_radius`` pushes
old. Gaps are counted in pushed frames, so a stream that skips frame indices (``--fps``)
measures them in processed frames. Nothing is filled across a :meth:`~TemporalFiller.flush`
(end of stream, shot cut).

Kinds: only :class:`~dp2.structures.FaceDetections` (boxes, scores, optional landmarks, all
interpolated). The buffer works on per-track rows (box, score, optional per-row extras), so
:class:`~dp2.structures.PersonDetections` needs only a codec that also makes a mask for a filled
row (for instance the nearer detection's mask shifted with the box); masks are out of scope for
now and pushing person detections raises ``TypeError``.
"""
from __future__ import annotations

import logging
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import torch

from ..structures import FaceDetections

__all__ = ["FilledFrame", "TemporalFiller"]

logger = logging.getLogger(__name__)

_EPS = 1e-6  # float noise allowed before outward rounding adds a pixel


class FilledFrame(NamedTuple):
    """One released frame.

    Attributes:
        frame_index: the index given to :meth:`TemporalFiller.push`.
        detections: detected rows first (input order, boxes possibly grown by smoothing), then
            filled rows by ascending track id. Filled rows have interpolated (or copied) boxes,
            scores and landmarks.
        track_ids: int64 [N], the track id of each row.
        filled: bool [N], True for rows the filler inserted.
        payload: whatever was pushed with the frame (e.g. the :class:`~dp2.structures.Frame`).
    """

    frame_index: int
    detections: FaceDetections
    track_ids: torch.Tensor
    filled: torch.Tensor
    payload: Any


@dataclass
class _Row:
    box: np.ndarray  # float64 [4] xyxy
    score: float
    landmarks: np.ndarray | None  # float64 [K, 2]
    filled: bool = False


@dataclass
class _Entry:
    position: int
    frame_index: int
    image_size_hw: tuple[int, int]
    device: torch.device
    landmarks_k: int | None  # K of the pushed landmarks tensor (kept for frames left empty)
    payload: Any
    rows: dict[int, _Row] = field(default_factory=dict)  # insertion order = output order


def _lerp_row(a: _Row, b: _Row, w: float) -> _Row:
    landmarks = None
    if a.landmarks is not None and b.landmarks is not None and a.landmarks.shape == b.landmarks.shape:
        landmarks = (1 - w) * a.landmarks + w * b.landmarks
    return _Row(box=(1 - w) * a.box + w * b.box, score=(1 - w) * a.score + w * b.score,
                landmarks=landmarks, filled=True)


def _copy_row(a: _Row) -> _Row:
    return _Row(box=a.box.copy(), score=a.score, landmarks=None if a.landmarks is None else a.landmarks.copy(),
                filled=True)


class TemporalFiller:
    """Streaming gap filler for tracked face detections.

    Args:
        max_gap: longest run of missed frames that is filled (0 disables filling). Also the
            look-ahead: frames are held this many pushes (plus ``smooth_radius``).
        smooth_radius: half-width of the centred moving average over box coordinates
            (0 = no smoothing); offsets ``+-k`` count only where the track has a box on both
            sides, so the window stays centred.
        extend: copy a track's first box into up to this many frames before it and its last
            box into up to this many frames after it (0 = off); at most ``max_gap``.

    >>> filler = TemporalFiller(max_gap=2)
    >>> face = lambda x: FaceDetections(torch.tensor([[x, 0, x + 10, 10]]), torch.tensor([0.9]), (20, 40))
    >>> out = filler.push(0, face(0), torch.tensor([7]))
    >>> out += filler.push(1, FaceDetections.empty((20, 40)), torch.zeros(0, dtype=torch.int64))
    >>> out += filler.push(2, face(4), torch.tensor([7]))
    >>> out += filler.flush()
    >>> [(f.frame_index, f.detections.boxes_xyxy.tolist(), f.filled.tolist()) for f in out]
    [(0, [[0, 0, 10, 10]], [False]), (1, [[2, 0, 12, 10]], [True]), (2, [[4, 0, 14, 10]], [False])]
    """

    def __init__(self, *, max_gap: int = 5, smooth_radius: int = 0, extend: int = 0) -> None:
        if max_gap < 0 or smooth_radius < 0:
            raise ValueError(f"max_gap and smooth_radius must be >= 0, got {max_gap}, {smooth_radius}")
        if not 0 <= extend <= max_gap:
            raise ValueError(f"extend must be in [0, max_gap={max_gap}], got {extend}")
        self.max_gap = int(max_gap)
        self.smooth_radius = int(smooth_radius)
        self.extend = int(extend)
        self.num_filled = 0  # filled rows released so far
        self._position = 0
        self._entries: deque[_Entry] = deque()  # up to smooth_radius released + the held ones
        self._next_release = 0  # position of the oldest frame not yet released
        self._last_seen: dict[int, tuple[int, _Row]] = {}  # track id -> (position, row) of its last detection
        self._last_index: int | None = None

    @property
    def latency(self) -> int:
        """Most frames held back by :meth:`push`."""
        return self.max_gap + self.smooth_radius

    @property
    def pending(self) -> int:
        """Frames pushed but not released yet."""
        return self._position - self._next_release

    def push(self, frame_index: int, detections: FaceDetections, track_ids, payload: Any = None) -> list[FilledFrame]:
        """Add the next frame; returns the frames that became final, oldest first.

        Args:
            frame_index: the frame's index, strictly greater than the previous push's (since
                the last flush).
            detections: this frame's faces.
            track_ids: int [N] track id of each detection (from :class:`~dp2.tracking.BoxTracker`),
                distinct within the frame.
            payload: carried along and returned with the frame (e.g. the image).

        Raises:
            TypeError: for detections other than ``FaceDetections``.
            ValueError: for ids of the wrong shape, repeated ids, or a non-increasing index.
        """
        entry = self._make_entry(frame_index, detections, track_ids, payload)
        p = entry.position
        self._entries.append(entry)
        self._position += 1
        self._last_index = entry.frame_index
        for tid, row in entry.rows.items():
            seen = self._last_seen.get(tid)
            if seen is None:
                self._extend(tid, row, range(p - self.extend, p))
            elif p - seen[0] > 1:
                self._fill_gap(tid, seen, (p, row))
            self._last_seen[tid] = (p, row)
        for tid, (q, row) in list(self._last_seen.items()):
            if p - q > self.max_gap:
                # Too late for a gap fill: the track has ended (a later sighting starts afresh).
                self._extend(tid, row, range(q + 1, q + 1 + self.extend))
                del self._last_seen[tid]
        return self._release(upto=p - self.latency)

    def flush(self) -> list[FilledFrame]:
        """Release every held frame (end of stream, or before a shot cut) and forget all tracks.

        Tracks end here: nothing is filled across a flush. The next push may restart indices.
        """
        for tid, (q, row) in self._last_seen.items():
            self._extend(tid, row, range(q + 1, q + 1 + self.extend))
        out = self._release(upto=self._position - 1)
        self._entries.clear()
        self._last_seen.clear()
        self._last_index = None
        return out

    def reset(self) -> list[FilledFrame]:
        """Same as :meth:`flush` (so a shot cut never drops frames); returns the released frames."""
        return self.flush()

    # -- internals -------------------------------------------------------------------------

    def _make_entry(self, frame_index: int, detections, track_ids, payload) -> _Entry:
        if not isinstance(detections, FaceDetections):
            raise TypeError(f"TemporalFiller supports FaceDetections, got {type(detections).__name__}")
        ids = torch.as_tensor(track_ids).reshape(-1) if not isinstance(track_ids, torch.Tensor) else track_ids
        n = len(detections)
        if ids.ndim != 1 or ids.shape[0] != n or (n and (ids.dtype.is_floating_point or ids.dtype == torch.bool)):
            raise ValueError(f"track_ids must be int [{n}], got {ids.dtype} {list(ids.shape)}")
        id_list = [int(t) for t in ids.tolist()]
        if len(set(id_list)) != n:
            raise ValueError(f"track_ids must be distinct within a frame, got {id_list}")
        frame_index = int(frame_index)
        if self._last_index is not None and frame_index <= self._last_index:
            raise ValueError(f"frame_index must increase, got {frame_index} after {self._last_index}")
        boxes = detections.boxes_xyxy.detach().cpu().double().numpy()
        scores = detections.scores.detach().cpu().double().numpy()
        lms = detections.landmarks
        lm_np = None if lms is None else lms.detach().cpu().double().numpy()
        entry = _Entry(position=self._position, frame_index=frame_index,
                       image_size_hw=detections.image_size_hw, device=detections.boxes_xyxy.device,
                       landmarks_k=None if lms is None else int(lms.shape[1]), payload=payload)
        for i, tid in enumerate(id_list):
            entry.rows[tid] = _Row(box=boxes[i], score=float(scores[i]),
                                   landmarks=None if lm_np is None else lm_np[i])
        return entry

    def _entry(self, position: int) -> _Entry:
        return self._entries[position - self._entries[0].position]

    def _held(self, positions: range):
        """Entries at ``positions`` that are pushed and not yet released."""
        for pos in positions:
            if self._next_release <= pos < self._position:
                yield self._entry(pos)

    def _fill_gap(self, tid: int, before: tuple[int, _Row], after: tuple[int, _Row]) -> None:
        (q, a), (p, b) = before, after
        for entry in self._held(range(q + 1, p)):
            entry.rows[tid] = _lerp_row(a, b, (entry.position - q) / (p - q))

    def _extend(self, tid: int, row: _Row, positions: range) -> None:
        for entry in self._held(positions):
            if tid not in entry.rows:
                entry.rows[tid] = _copy_row(row)

    def _release(self, upto: int) -> list[FilledFrame]:
        out = []
        while self._next_release <= upto:
            out.append(self._finish(self._entry(self._next_release)))
            self._next_release += 1
            # Keep smooth_radius released frames: they are the left half of later windows.
            while self._entries and self._entries[0].position < self._next_release - self.smooth_radius:
                self._entries.popleft()
        return out

    def _smoothed(self, tid: int, entry: _Entry) -> np.ndarray:
        own = entry.rows[tid].box
        if self.smooth_radius == 0:
            return own
        first, last = self._entries[0].position, self._position - 1
        boxes = [own]
        # Offsets enter in +-k pairs so the window stays centred at track ends and stream edges
        # (a one-sided window would drag a moving box towards where the face is not).
        for k in range(1, self.smooth_radius + 1):
            lo, hi = entry.position - k, entry.position + k
            if lo < first or hi > last:
                break
            before, after = self._entry(lo).rows.get(tid), self._entry(hi).rows.get(tid)
            if before is not None and after is not None:
                boxes += [before.box, after.box]
        mean = np.mean(boxes, axis=0)
        return np.concatenate([np.minimum(mean[:2], own[:2]), np.maximum(mean[2:], own[2:])])

    def _finish(self, entry: _Entry) -> FilledFrame:
        tids = list(entry.rows)
        # Detected rows keep their input order; filled rows follow by track id.
        tids = [t for t in tids if not entry.rows[t].filled] + sorted(t for t in tids if entry.rows[t].filled)
        rows = [entry.rows[t] for t in tids]
        boxes = [self._smoothed(t, entry) for t in tids]
        boxes_xyxy = torch.tensor([[math.floor(b[0] + _EPS), math.floor(b[1] + _EPS),
                                    math.ceil(b[2] - _EPS), math.ceil(b[3] - _EPS)] for b in boxes],
                                  dtype=torch.int64).reshape(-1, 4)
        scores = torch.tensor([r.score for r in rows], dtype=torch.float32)
        shapes = {None if r.landmarks is None else r.landmarks.shape for r in rows}
        landmarks = None
        if not rows:
            if entry.landmarks_k is not None:
                landmarks = torch.zeros((0, entry.landmarks_k, 2), dtype=torch.float32)
        elif len(shapes) == 1 and None not in shapes:
            landmarks = torch.from_numpy(np.stack([r.landmarks for r in rows])).float()
        elif entry.landmarks_k is not None:
            logger.debug("frame %d: rows disagree on landmarks %s; dropping them", entry.frame_index, shapes)
        filled = torch.tensor([r.filled for r in rows], dtype=torch.bool)
        self.num_filled += int(filled.sum())
        device = entry.device
        dets = FaceDetections(boxes_xyxy=boxes_xyxy.to(device), scores=scores.to(device),
                              image_size_hw=entry.image_size_hw,
                              landmarks=None if landmarks is None else landmarks.to(device))
        return FilledFrame(entry.frame_index, dets, torch.tensor(tids, dtype=torch.int64).reshape(-1).to(device),
                           filled.to(device), entry.payload)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(max_gap={self.max_gap}, smooth_radius={self.smooth_radius}, "
                f"extend={self.extend}, pending={self.pending})")
