"""The one frame loop shared by images, videos and webcam streams."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

import torch

from .anonymizer import Anonymizer, SynthesisOptions
from .io.detection_files import DetectionCache, DetectionExport, GivenDetections
from .structures import Detections, Frame
from .visualize import draw_detections

__all__ = ["FrameProcessor", "LoopStats", "run_frames"]

logger = logging.getLogger(__name__)


@dataclass
class LoopStats:
    frames: int = 0
    detections: dict[str, int] = field(default_factory=dict)
    frames_with_detections: int = 0
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
        export: ``--export-detections`` collector, or None.
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

    def detections(self, frame: Frame, source_name: str | None = None) -> Detections:
        name = source_name if source_name is not None else frame.source
        if self.given is not None:
            dets = self.given.get(name, frame.index, frame.size_hw)
        else:
            dets = self.cache.get(frame.image) if self.cache is not None else None
            if dets is None:
                dets = self.anonymizer.detect(frame.image)
                if self.cache is not None:
                    self.cache.put(frame.image, dets)
        if self.export is not None:
            self.export.add(name, frame.index, frame.time_s, dets)
        return dets

    def __call__(self, frame: Frame, source_name: str | None = None) -> tuple[torch.Tensor, Detections]:
        dets = self.detections(frame, source_name)
        if self.visualize_detections:
            return draw_detections(frame.image, dets), dets
        out = self.anonymizer.anonymize(frame.image, dets, next_seed=self.next_seed, options=self.options)
        return out, dets


def run_frames(frames: Iterable[Frame], process: FrameProcessor,
               emit: Callable[[Frame, torch.Tensor], bool | None], *, source_name: str | None = None,
               progress=None) -> LoopStats:
    """Process every frame and hand each result to ``emit``; ``emit`` returning False stops the loop.

    Args:
        frames: the stream (image, video or webcam frames).
        process: turns a frame into (result, detections).
        emit: consumer of results (file writer, video encoder, window).
        source_name: name used to match/record detections (defaults to ``frame.source``).
        progress: optional tqdm-like object updated once per frame.
    """
    stats = LoopStats()
    start = time.perf_counter()
    for frame in frames:
        result, dets = process(frame, source_name)
        stats.add(dets)
        if progress is not None:
            progress.update(1)
        if emit(frame, result) is False:
            break
    stats.seconds = time.perf_counter() - start
    return stats
