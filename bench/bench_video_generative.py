"""Frames/s of the realistic-face video path: DeepPrivacy2's one-face-per-call loop vs batched.

The whole video loop in this process (decode, CenterFace with the default schedule, tracking, gap
filling, FDF256 generation, paste, encode) on the first frames of a corpus clip, with a full-size
FDF256 generator with random weights (speed does not depend on the weights), once with
``batch_size=1`` (DeepPrivacy2's loop) and once with ``batch_size=16``; same machine, one run.

Usage: python bench/bench_video_generative.py [--video fr_short_hamilton_clip.mp4] [--frames 12] [--device cpu]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dp2.anonymizer import Anonymizer  # noqa: E402
from dp2.detection.centerface import CenterFaceDetector  # noqa: E402
from dp2.generation.build import build_generator  # noqa: E402
from dp2.generation.latents import LatentSampler  # noqa: E402
from dp2.io.overlap import BackgroundWriter  # noqa: E402
from dp2.io.sources import array_frames  # noqa: E402
from dp2.io.video import VideoReader, VideoWriter  # noqa: E402
from dp2.runner import FrameProcessor, TemporalStage, run_frames  # noqa: E402
from dp2.stages import FaceCropStage  # noqa: E402


def run(video: Path, frames: int, batch_size: int, generator, device: str, out: Path) -> tuple[float, int]:
    anonymizer = Anonymizer(detector=CenterFaceDetector(), face=FaceCropStage(generator=generator,
                                                                              batch_size=batch_size))
    process = FrameProcessor(anonymizer, next_seed=LatentSampler(0).next_seed)
    with VideoReader(video, end_time=None) as reader:
        stream = (f for i, f in enumerate(array_frames(iter(reader), str(video), None)) if i < frames)
        start = time.perf_counter()
        with VideoWriter(out, fps=reader.info.fps, size_hw=reader.info.size_hw) as writer, \
                BackgroundWriter(writer.write) as encoder:
            stats = run_frames(stream, process, lambda f, r: encoder.submit(r.permute(1, 2, 0).numpy(), f.time_s),
                               temporal=TemporalStage(next_seed=process.next_seed, max_gap=5, full_detection_every=6),
                               detect_ahead=2)
        return time.perf_counter() - start, sum(stats.detections.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", default="fr_short_hamilton_clip.mp4")
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    video = REPO.parent / "shared" / "corpus" / "videos" / args.video
    generator = build_generator("fdf256").to(args.device).requires_grad_(False)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        run(video, 2, 1, generator, args.device, Path(tmp) / "warmup.mp4")  # one-time costs (sessions, kernels)
        for batch in (1, 16):
            seconds, faces = run(video, args.frames, batch, generator, args.device, Path(tmp) / f"b{batch}.mp4")
            rows.append((batch, seconds, faces))
    print(f"{args.video}, first {args.frames} frames, FDF256 (random weights) on {args.device}, "
          f"{torch.get_num_threads()} torch threads")
    print(f"{'batch_size':>10s} {'faces':>6s} {'seconds':>8s} {'frames/s':>9s} {'faces/s':>8s} {'speed x':>8s}")
    base = rows[0][1]
    for batch, seconds, faces in rows:
        print(f"{batch:10d} {faces:6d} {seconds:8.1f} {args.frames / seconds:9.2f} {faces / seconds:8.2f} "
              f"{base / seconds:8.2f}")
    print("speed x: batch_size=1 (DeepPrivacy2's loop) time / this time; same process, same machine, one run.")


if __name__ == "__main__":
    main()
