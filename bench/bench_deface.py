"""dp2 (bundled CenterFace + blur) vs deface, side by side, measured in one run.

Each tool runs as its own process on the same inputs (corpus images as one folder, and
corpus videos), timed end to end (decode, detect, blur, encode) under /usr/bin/time for
peak memory. Faces anonymized: dp2's from its ``--export-detections`` file; deface's by
running deface's own CenterFace wrapper at its default threshold over the same frames
(not timed).

Usage: python bench/bench_deface.py [--videos egoblur_gen1_test_video.mp4 ...] [--max-frames N]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "corpus"
CONFIG = REPO / "configs" / "anonymizers" / "traditional" / "face" / "gaussian.py"


def timed(cmd: list[str], env=None) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of a command."""
    start = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    return seconds, int(match.group(1)) / 1024 if match else float("nan")


def deface_face_counts(paths: list[Path], max_frames: int | None) -> tuple[int, int, int]:
    """(frames, faces, frames with >= 1 face) as deface's detector sees them at threshold 0.2."""
    import imageio.v2 as imageio
    from deface.centerface import CenterFace

    net = CenterFace(in_shape=None, backend="auto")
    frames = faces = with_faces = 0
    for path in paths:
        if path.suffix.lower() in (".mp4", ".mov", ".mkv", ".avi", ".webm"):
            reader = imageio.get_reader(str(path))
            iterator = (f for i, f in enumerate(reader) if max_frames is None or i < max_frames)
        else:
            iterator = iter([imageio.imread(str(path))[..., :3]])
        for frame in iterator:
            dets, _ = net(frame, threshold=0.2)
            frames += 1
            faces += len(dets)
            with_faces += int(len(dets) > 0)
    return frames, faces, with_faces


def dp2_face_counts(export: Path) -> tuple[int, int, int]:
    items = json.loads(export.read_text())["items"]
    faces = [len(item.get("faces", [])) for item in items]
    return len(items), sum(faces), sum(1 for n in faces if n)


def trim(video: Path, max_frames: int | None, workdir: Path) -> Path:
    """The first ``max_frames`` frames of a video (stream copy is not frame exact: re-encode losslessly)."""
    if max_frames is None:
        return video
    import av

    out = workdir / f"trim_{video.stem}.mkv"
    with av.open(str(video)) as src, av.open(str(out), "w") as dst:
        stream = dst.add_stream("ffv1", rate=src.streams.video[0].average_rate)
        stream.width, stream.height = src.streams.video[0].width, src.streams.video[0].height
        stream.pix_fmt = "yuv420p"
        for i, frame in enumerate(src.decode(video=0)):
            if i >= max_frames:
                break
            for packet in stream.encode(frame):
                dst.mux(packet)
        for packet in stream.encode():
            dst.mux(packet)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", nargs="*", default=["egoblur_gen1_test_video.mp4", "fr_short_hamilton_clip.mp4"])
    parser.add_argument("--max-frames", type=int, default=None, help="only the first N frames of each video")
    parser.add_argument("--skip-images", action="store_true")
    parser.add_argument("--dp2-opt", action="append", default=[], metavar="KEY=VALUE",
                        help="config override for dp2, e.g. detector.upscale=None (single-pass detector)")
    args = parser.parse_args()
    if not CORPUS.is_dir():
        sys.exit(f"{CORPUS} not found")
    if shutil.which("deface") is None:
        sys.exit("deface is not installed (pip install deface)")

    env = dict(os.environ, DP2_NO_PROGRESS="1", PYTHONPATH=str(REPO))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        jobs = []
        if not args.skip_images:
            images = work / "images"
            shutil.copytree(CORPUS / "images", images)
            jobs.append(("images (folder)", images, sorted(images.iterdir())))
        for name in args.videos:
            video = trim(CORPUS / "videos" / name, args.max_frames, work)
            jobs.append((name, video, [video]))
        for label, src, files in jobs:
            export = work / f"{src.stem}_dets.json"
            out = work / f"dp2_{src.name}"
            dp2_s, dp2_mem = timed([sys.executable, str(REPO / "anonymize.py"), str(CONFIG), "-i", str(src), "-o", str(out),
                                    "--export-detections", str(export), "-q",
                                    *[a for opt in args.dp2_opt for a in ("--opt", opt)]], env)
            deface_out = work / f"deface_{src.name}"
            if src.is_dir():
                # deface takes a folder and writes <name>_anonymized<ext> beside each file.
                shutil.copytree(src, deface_out)
                cmd = ["deface", str(deface_out)]
            else:
                cmd = ["deface", str(src), "-o", str(deface_out), "--keep-audio"]
            de_s, de_mem = timed(cmd, env)
            n_dp2, faces_dp2, fw_dp2 = dp2_face_counts(export)
            n_de, faces_de, fw_de = deface_face_counts(files, None)
            rows.append((label, n_dp2, dp2_s, de_s, dp2_mem, de_mem, faces_dp2, faces_de, fw_dp2, fw_de))

    head = (f"{'input':28s} {'frames':>6s} {'dp2 fps':>8s} {'deface fps':>10s} {'speed x':>7s} {'dp2 MiB':>8s} "
            f"{'deface MiB':>10s} {'mem x':>6s} {'dp2 faces':>9s} {'deface faces':>12s} {'faces x':>7s} "
            f"{'frames w/ face dp2/deface':>25s}")
    print(f"dp2 config: {CONFIG.relative_to(REPO)} {' '.join('--opt ' + o for o in args.dp2_opt)}")
    print(head)
    print("-" * len(head))
    for label, n, s1, s2, m1, m2, f1, f2, w1, w2 in rows:
        print(f"{label:28s} {n:6d} {n / s1:8.2f} {n / s2:10.2f} {s2 / s1:7.2f} {m1:8.0f} {m2:10.0f} {m1 / m2:6.2f} "
              f"{f1:9d} {f2:12d} {f1 / max(f2, 1):7.2f} {f'{w1}/{w2}':>25s}")
    print("\nspeed x = dp2 frames/s / deface frames/s (higher is better); mem x = dp2 peak RSS / deface peak RSS;"
          "\nfaces x = faces anonymized by dp2 / by deface. Both end to end, one process each, same machine, one run.")


if __name__ == "__main__":
    main()
