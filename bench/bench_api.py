"""The Python API against the command line on the same clip: frames per second, alternated.

Sides, run in turn (A, B, C, A, B, C, ...) after one warm-up round, medians reported:

- ``cli``: ``dp2-anonymize CONFIG -i CLIP -o out.mp4 --et S`` in this process (model loading
  included, as a user pays it);
- ``api_file``: ``pipeline.anonymize_file(CLIP, out.mp4, end_time=S)`` on a pipeline loaded once;
- ``api_stream``: ``pipeline.stream(frames)`` over the clip's decoded frames (decoding and
  anonymizing, no encoding: what a caller with frames of its own pays).

Usage: python bench/bench_api.py [--clip PATH] [--seconds 3] [--rounds 3] [--config traditional/face/gaussian]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("DP2_NO_PROGRESS", "1")

import dp2  # noqa: E402
from dp2.cli import main  # noqa: E402
from dp2.io.video import VideoReader  # noqa: E402

DEFAULT_CLIP = REPO.parent / "shared" / "corpus" / "videos" / "fr_short_hamilton_clip.mp4"


def run_cli(config: str, clip: Path, out: Path, seconds: float) -> int:
    try:
        main(args=[config, "-i", str(clip), "-o", str(out), "--et", str(seconds), "--device", "cpu", "-q"],
             standalone_mode=False)
    except SystemExit as e:  # the command exits non-zero only on failure
        if e.code:
            raise
    with VideoReader(out) as reader:
        return sum(1 for _ in reader)


def run_file(pipeline, clip: Path, out: Path, seconds: float) -> int:
    return pipeline.anonymize_file(clip, out, end_time=seconds).stats.frames


def run_stream(pipeline, clip: Path, seconds: float) -> int:
    with VideoReader(clip, end_time=seconds) as reader:
        stream = pipeline.stream((rgb for rgb, _ in reader), source=clip.name)
        for _ in stream:
            pass
    return stream.stats.frames


def main_bench() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", type=Path, default=DEFAULT_CLIP)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--config", default="traditional/face/gaussian")
    args = parser.parse_args()
    if not args.clip.is_file():
        sys.exit(f"{args.clip}: no such clip (the corpus is in ../shared/corpus)")

    print(f"clip {args.clip.name}, first {args.seconds:g} s, config {args.config}, load average "
          f"{'/'.join(f'{v:.1f}' for v in os.getloadavg())} at start, {os.cpu_count()} CPUs")
    start = time.perf_counter()
    pipeline = dp2.load(args.config, device="cpu")
    print(f"dp2.load: {time.perf_counter() - start:.2f} s")
    fps: dict[str, list[float]] = {"cli": [], "api_file": [], "api_stream": []}
    frames_seen: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        sides = {
            "cli": lambda i: run_cli(args.config, args.clip, tmp_path / f"cli{i}.mp4", args.seconds),
            "api_file": lambda i: run_file(pipeline, args.clip, tmp_path / f"api{i}.mp4", args.seconds),
            "api_stream": lambda i: run_stream(pipeline, args.clip, args.seconds),
        }
        for i in range(args.rounds + 1):  # round 0 warms up (file caches, first-call costs)
            for name, side in sides.items():
                t0 = time.perf_counter()
                n = side(i)
                seconds = time.perf_counter() - t0
                frames_seen[name] = n
                if i > 0:
                    fps[name].append(n / seconds)
    medians = {name: statistics.median(values) for name, values in fps.items()}
    print(f"\n{'side':<11} {'frames':>6} {'fps (median)':>13} {'min':>7} {'max':>7} {'vs cli':>7}")
    for name, values in fps.items():
        print(f"{name:<11} {frames_seen[name]:>6} {medians[name]:>13.1f} {min(values):>7.1f} {max(values):>7.1f} "
              f"{medians[name] / medians['cli']:>6.2f}x")
    print(f"\nload average at end: {'/'.join(f'{v:.1f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main_bench()
