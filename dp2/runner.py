"""The one frame loop shared by images, videos and webcam streams."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

import torch

from .anonymizer import Anonymizer, SynthesisOptions
from .io.overlap import prefetch
from .io.detection_files import DetectionCache, DetectionExport, GivenDetections
from .structures import Detections, FaceDetections, Frame
from .tracking import BoxTracker, ShotCutDetector, TemporalFiller, TrackSeeds
from .visualize import draw_detections

__all__ = ["FrameProcessor", "LoopStats", "TemporalStage", "VIDEO_DETECT_AHEAD", "process_frames", "run_frames"]

logger = logging.getLogger(__name__)


@dataclass
class LoopStats:
    frames: int = 0
    detections: dict[str, int] = field(default_factory=dict)
    frames_with_detections: int = 0
    filled: int = 0
    shot_cuts: int = 0
    seconds: float = 0.0

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def add(self, dets: Detections) -> None:
        self.frames += 1
        counts = dets.count()
        for kind, n in counts.items():
            self.detections[kind] = self.detections.get(kind, 0) + n
        if sum(counts.values()):
            self.frames_with_detections += 1

    def merge(self, other: "LoopStats") -> None:
        self.frames += other.frames
        self.frames_with_detections += other.frames_with_detections
        self.filled += other.filled
        self.shot_cuts += other.shot_cuts
        self.seconds += other.seconds
        for kind, n in other.detections.items():
            self.detections[kind] = self.detections.get(kind, 0) + n


class FrameProcessor:
    """Detections for a frame (given, cached or detected) and the anonymized result.

    Args:
        anonymizer: the built anonymizer.
        next_seed: latent seed source shared by the whole run (DP2's RNG protocol).
        options: truncation / multi-modal / AMP.
        visualize_detections: draw detections instead of anonymizing (``--vd``).
        cache: ``--cache`` store, or None.
        given: ``--detections`` file, or None (then the detector runs).
        export: ``--export-detections`` collector, or None; it gets what is anonymized in each
            frame (detections plus boxes filled in detection gaps), see :meth:`record`.
    """

    def __init__(self, anonymizer: Anonymizer, *, next_seed: Callable[[], int],
                 options: SynthesisOptions = SynthesisOptions(), visualize_detections: bool = False,
                 cache: DetectionCache | None = None, given: GivenDetections | None = None,
                 export: DetectionExport | None = None) -> None:
        self.anonymizer = anonymizer
        self.next_seed = next_seed
        self.options = options
        self.visualize_detections = visualize_detections
        self.cache = cache
        self.given = given
        self.export = export

    def detections(self, frame: Frame, source_name: str | None = None, fast: bool = False) -> Detections:
        name = source_name if source_name is not None else frame.source
        if self.given is not None:
            dets = self.given.get(name, frame.index, frame.size_hw)
        else:
            dets = self.cache.get(frame.image) if self.cache is not None and not fast else None
            if dets is None:
                dets = self.anonymizer.detect(frame.image, fast=fast)
                if self.cache is not None and not fast:
                    self.cache.put(frame.image, dets)
        return dets

    def record(self, frame: Frame, dets: Detections, source_name: str | None = None) -> None:
        """Add what is anonymized in ``frame`` (after gap filling) to the ``--export-detections`` file."""
        if self.export is not None:
            name = source_name if source_name is not None else frame.source
            self.export.add(name, frame.index, frame.time_s, dets)

    def render(self, frame: Frame, dets: Detections, seeds: dict[str, list[int]] | None = None) -> torch.Tensor:
        """The anonymized frame (or the drawn detections with ``--vd``)."""
        if self.visualize_detections:
            return draw_detections(frame.image, dets)
        return self.anonymizer.anonymize(frame.image, dets, next_seed=self.next_seed, options=self.options,
                                         seeds=seeds)

    def __call__(self, frame: Frame, source_name: str | None = None) -> tuple[torch.Tensor, Detections]:
        dets = self.detections(frame, source_name)
        self.record(frame, dets, source_name)
        return self.render(frame, dets), dets


class TemporalStage:
    """What videos add over single images: tracks, stable identities, gap filling, shot cuts.

    Faces are tracked across frames; a face seen before and after a gap of up to ``max_gap``
    frames is anonymized in the gap at the interpolated box (frames are held back that many
    frames for it). With ``track_seeds`` every track keeps one latent seed, so a generated
    identity stays the same along the track (DeepPrivacy2's ``--track``). A shot cut ends all
    tracks (no filling across it).

    Args:
        next_seed: seed source for new tracks (the run's :class:`~dp2.generation.latents.LatentSampler`).
        max_gap: longest gap (frames) to fill; 0 disables filling (no latency).
        track_seeds: one seed per track instead of one per detection.
        shot_cuts: detect shot cuts and reset tracks there.
        full_detection_every: run the detector's full mode only every N frames and its fast mode
            (e.g. CenterFace's half-resolution single pass) in between (N <= max_gap + 1; 1 = full
            mode on every frame). Faces only the full mode finds are carried across the N - 1
            frames between: gap filling interpolates where a track is seen again, and every track
            is also extended N - 1 frames past its first and last sighting, so a small face the
            tracker cannot link from one full pass to the next is still covered.
    """

    def __init__(self, *, next_seed, max_gap: int = 5, track_seeds: bool = False, shot_cuts: bool = True,
                 full_detection_every: int = 1) -> None:
        if max_gap < 0:
            raise ValueError(f"max_gap must be >= 0, got {max_gap}")
        if not 1 <= full_detection_every <= max(1, max_gap + 1):
            raise ValueError(f"full_detection_every must be in [1, max_gap + 1] so gap filling bridges the "
                             f"frames between full passes, got {full_detection_every} with max_gap {max_gap}")
        self.full_detection_every = full_detection_every
        self.tracker = BoxTracker(max_age=max(12, max_gap + 1))
        self.filler = TemporalFiller(max_gap=max_gap, extend=full_detection_every - 1)
        self.cuts = ShotCutDetector() if shot_cuts else None
        self.seeds = TrackSeeds(_SeedAdapter(next_seed)) if track_seeds else None
        self.stats = LoopStats()

    def push(self, frame: Frame, dets: Detections) -> list[tuple[Frame, Detections, dict | None]]:
        """Add one frame; returns the frames that are ready, in order."""
        released = []
        if self.cuts is not None and self.cuts.is_cut(frame.image):
            self.stats.shot_cuts += 1
            released += self.filler.flush()
            self.tracker.reset()
        faces = dets.faces if dets.faces is not None else FaceDetections.empty(dets.image_size_hw)
        ids = self.tracker.update(faces.boxes_xyxy, faces.scores)
        released += self.filler.push(frame.index, faces, ids, payload=(frame, dets))
        return [self._finish(r) for r in released]

    def flush(self) -> list[tuple[Frame, Detections, dict | None]]:
        return [self._finish(r) for r in self.filler.flush()]

    def _finish(self, released) -> tuple[Frame, Detections, dict | None]:
        frame, dets = released.payload
        self.stats.filled += int(released.filled.sum())
        faces = released.detections if dets.faces is not None else None
        merged = Detections(image_size_hw=dets.image_size_hw, faces=faces, persons=dets.persons,
                            cse_persons=dets.cse_persons)
        seeds = {"faces": self.seeds.seeds_for(released.track_ids)} if self.seeds is not None and faces is not None else None
        return frame, merged, seeds


class _SeedAdapter:
    def __init__(self, next_seed) -> None:
        self.next_seed = next_seed


#: Frames the video path detects ahead of anonymizing (in a background thread); streams use it too.
VIDEO_DETECT_AHEAD = 2


def process_frames(frames: Iterable[Frame], process: FrameProcessor, *, source_name: str | None = None,
                   progress=None, temporal: TemporalStage | None = None, detect_ahead: int = 0,
                   stats: LoopStats | None = None) -> Iterator[tuple[Frame, Detections, torch.Tensor]]:
    """The one frame loop: yields ``(frame, detections, result)`` for every frame, in order.

    ``detections`` are what was anonymized in the frame (with ``temporal``, boxes filled in
    detection gaps included). Closing the generator early stops the loop without flushing the
    frames ``temporal`` holds back (as a window closed by the user does).

    Args:
        frames: the stream (image, video or webcam frames).
        process: turns a frame into detections and a result.
        source_name: name used to match/record detections (defaults to ``frame.source``).
        progress: optional tqdm-like object updated once per frame.
        temporal: tracking / gap filling for videos and webcams (frames may be released late).
        detect_ahead: run the detector in a background thread up to this many frames ahead of
            anonymizing (0 = in this thread). Results are the same; on a video the detector then
            overlaps with the filters and tracking (a live stream should keep 0: no added latency).
        stats: counts to add to (frames, detections, gap fills, shot cuts, seconds); they are
            complete once the generator is exhausted or closed.
    """
    stats = stats if stats is not None else LoopStats()
    start = time.perf_counter()

    def finish(frame: Frame, dets: Detections, seeds) -> tuple[Frame, Detections, torch.Tensor]:
        stats.add(dets)
        process.record(frame, dets, source_name)
        if progress is not None:
            progress.update(1)
        return frame, dets, process.render(frame, dets, seeds)

    def detected() -> Iterator[tuple[Frame, Detections]]:
        for position, frame in enumerate(frames):
            fast = temporal is not None and position % temporal.full_detection_every != 0
            yield frame, process.detections(frame, source_name, fast=fast)

    stream = prefetch(detected(), size=detect_ahead) if detect_ahead > 0 else detected()
    try:
        try:
            for frame, dets in stream:
                ready = temporal.push(frame, dets) if temporal is not None else [(frame, dets, None)]
                for item in ready:
                    yield finish(*item)
        finally:
            stream.close()
        if temporal is not None:
            for item in temporal.flush():
                yield finish(*item)
    finally:
        if temporal is not None:
            stats.filled, stats.shot_cuts = temporal.stats.filled, temporal.stats.shot_cuts
        stats.seconds = time.perf_counter() - start


def run_frames(frames: Iterable[Frame], process: FrameProcessor,
               emit: Callable[[Frame, torch.Tensor], bool | None], *, source_name: str | None = None,
               progress=None, temporal: TemporalStage | None = None, detect_ahead: int = 0) -> LoopStats:
    """Process every frame (:func:`process_frames`) and hand each result to ``emit``; ``emit``
    returning False stops the loop. Returns the loop's counts."""
    stats = LoopStats()
    loop = process_frames(frames, process, source_name=source_name, progress=progress, temporal=temporal,
                          detect_ahead=detect_ahead, stats=stats)
    try:
        for frame, _, result in loop:
            if emit(frame, result) is False:
                break
    finally:
        loop.close()
    return stats
