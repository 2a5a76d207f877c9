"""What the video detection schedule costs in recall and buys in speed, measured in one run.

dp2 (bundled CenterFace + blur) runs on each corpus clip once with the detector's full mode on
every frame (``--full-detection-every 1``) and once per schedule under test (default: dp2's
default schedule). For each run: frames/s end to end, faces anonymized (gap-filled included),
and how many of the every-frame run's faces were left outside every blurred region.

Usage: python bench/video_schedule.py [--videos ...] [--every 6 12] [--max-frames N]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_deface import CONFIG, CORPUS, REPO, counts, dp2_detections, missed_by, timed, trim  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", nargs="*", default=["egoblur_gen1_test_video.mp4", "fr_short_hamilton_clip.mp4"])
    parser.add_argument("--every", nargs="*", default=["default"],
                        help="schedules to compare with every-frame detection: N or 'default'")
    parser.add_argument("--max-frames", type=int, default=None)
    args = parser.parse_args()
    env = dict(os.environ, DP2_NO_PROGRESS="1", PYTHONPATH=str(REPO))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name in args.videos:
            video = trim(CORPUS / "videos" / name, args.max_frames, work)
            runs = {}
            for every in ["1", *args.every]:
                export = work / f"{video.stem}_{every}.json"
                extra = [] if every == "default" else ["--full-detection-every", every]
                if every != "default" and int(every) > 6:
                    extra += ["--temporal-fill", str(int(every) - 1)]
                seconds, _ = timed([sys.executable, str(REPO / "anonymize.py"), str(CONFIG), "-i", str(video),
                                    "-o", str(work / f"out_{every}{video.suffix}"), "-q",
                                    "--export-detections", str(export), *extra], env)
                runs[every] = (seconds, dp2_detections(export))
            base = runs["1"][1]
            for every, (seconds, found) in runs.items():
                frames, faces, with_face = counts(found)
                rows.append((name, every, frames / seconds, faces, with_face, frames, missed_by(base, found)))
    head = (f"{'clip':28s} {'full every':>10s} {'fps':>7s} {'speed x':>7s} {'faces':>6s} {'frames w/ face':>14s} "
            f"{'every-frame faces missed':>24s}")
    print(head)
    print("-" * len(head))
    first = {}
    for name, every, fps, faces, with_face, frames, missed in rows:
        first.setdefault(name, fps)
        print(f"{name:28s} {every:>10s} {fps:7.2f} {fps / first[name]:7.2f} {faces:6d} {f'{with_face}/{frames}':>14s} "
              f"{missed:24d}")
    print(f"\nconfig {CONFIG.relative_to(REPO)}; one process per run, end to end, same machine, one run. "
          "'every-frame faces missed': faces anonymized with --full-detection-every 1 whose centre lies in no "
          "region blurred by the schedule.")


if __name__ == "__main__":
    main()
