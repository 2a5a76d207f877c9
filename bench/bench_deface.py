"""dp2 (bundled CenterFace + blur) vs deface, side by side, measured in one run.

Each tool runs as its own process on the same inputs (corpus images as one folder, and
the full corpus videos), timed end to end (start-up, decode, detect, blur, encode) under
/usr/bin/time for peak memory, with its default settings. Faces anonymized: dp2's from its
``--export-detections`` file (what it anonymized, gap-filled boxes included); deface's by
running deface's own CenterFace wrapper at its default threshold over the same frames (not
timed). A deface face whose centre lies in no region dp2 blurred counts as missed by dp2.

Usage: python bench/bench_deface.py [--videos egoblur_gen1_test_video.mp4 ...] [--max-frames N]
           [--skip-images] [--dp2-args '--full-detection-every 1'] [--dp2-opt detector.upscale=None]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

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


def _frames(path: Path, max_frames: int | None):
    """RGB frames as dp2 decodes them (PyAV; images through PIL)."""
    if path.suffix.lower() in (".mp4", ".mov", ".mkv", ".avi", ".webm"):
        import av

        with av.open(str(path)) as container:
            for i, frame in enumerate(container.decode(video=0)):
                if max_frames is not None and i >= max_frames:
                    break
                yield frame.to_ndarray(format="rgb24")
    else:
        from PIL import Image, ImageOps

        yield np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))


def deface_detections(paths: list[Path], max_frames: int | None) -> dict[tuple[str, int], np.ndarray]:
    """Boxes [N, 4] per (file name, frame) from deface's own CenterFace wrapper at its default threshold.

    The frames are the ones dp2 decodes (deface's imageio reader also pads the start of a clip whose
    video starts after its audio with copies of the first frame: 25 on the hamilton clip).
    """
    from deface.centerface import CenterFace

    net = CenterFace(in_shape=None, backend="auto")
    found = {}
    for path in paths:
        for i, frame in enumerate(_frames(path, max_frames)):
            dets, _ = net(frame, threshold=0.2)
            found[(path.name, i)] = np.asarray(dets, dtype=np.float64).reshape(-1, 5)[:, :4]
    return found


def dp2_detections(export: Path) -> dict[tuple[str, int], np.ndarray]:
    """Boxes per (file name, frame) that dp2 anonymized (its export includes gap-filled boxes)."""
    found = {}
    for item in json.loads(export.read_text())["items"]:
        boxes = [face["box"] for face in item.get("faces", [])]
        found[(Path(item["source"]).name, item["frame"])] = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return found


def missed_by(reference: dict, anonymized: dict, region_scale: float = 1.3) -> int:
    """Reference faces whose centre lies in none of the regions dp2 blurred (box scaled by ``region_scale``)."""
    missed = 0
    for key, ref in reference.items():
        boxes = anonymized.get(key, np.zeros((0, 4)))
        centre, half = (boxes[:, :2] + boxes[:, 2:]) / 2, (boxes[:, 2:] - boxes[:, :2]) * region_scale / 2
        lo, hi = centre - half, centre + half
        for x, y in (ref[:, :2] + ref[:, 2:]) / 2:
            if not ((lo[:, 0] <= x) & (x <= hi[:, 0]) & (lo[:, 1] <= y) & (y <= hi[:, 1])).any():
                missed += 1
    return missed


def _reader_frames(video: Path) -> int:
    """Frames deface's imageio reader yields for ``video``."""
    import imageio.v2 as imageio

    with imageio.get_reader(str(video)) as reader:
        return sum(1 for _ in reader)


def counts(found: dict) -> tuple[int, int, int]:
    """(frames, faces, frames with >= 1 face)."""
    return len(found), sum(len(b) for b in found.values()), sum(1 for b in found.values() if len(b))


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
    parser.add_argument("--dp2-args", default="",
                        help="more dp2 command-line arguments, e.g. '--full-detection-every 1' (every frame in full)")
    args = parser.parse_args()
    args.dp2_args = shlex.split(args.dp2_args) + [a for opt in args.dp2_opt for a in ("--opt", opt)]
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
                                    *args.dp2_args], env)
            deface_out = work / f"deface_{src.name}"
            if src.is_dir():
                # deface takes a folder and writes <name>_anonymized<ext> beside each file.
                shutil.copytree(src, deface_out)
                cmd = ["deface", str(deface_out)]
            else:
                cmd = ["deface", str(src), "-o", str(deface_out), "--keep-audio"]
            de_s, de_mem = timed(cmd, env)
            ours, theirs = dp2_detections(export), deface_detections(files, None)
            n_dp2, faces_dp2, fw_dp2 = counts(ours)
            _, faces_de, fw_de = counts(theirs)
            # deface's own reader may yield more frames (see deface_detections); its fps counts those.
            n_de = sum(1 for f in files for _ in _frames(f, None)) if src.is_dir() else _reader_frames(src)
            rows.append((label, n_dp2, n_de, dp2_s, de_s, dp2_mem, de_mem, faces_dp2, faces_de, fw_dp2, fw_de,
                         missed_by(theirs, ours)))

    head = (f"{'input':28s} {'frames':>6s} {'dp2 fps':>8s} {'deface fps':>10s} {'speed x':>7s} {'dp2 MiB':>8s} "
            f"{'deface MiB':>10s} {'dp2 faces':>9s} {'deface faces':>12s} {'frames w/ face dp2/deface':>25s} "
            f"{'deface faces dp2 missed':>23s}")
    print(f"dp2 config: {CONFIG.relative_to(REPO)} {' '.join(args.dp2_args)}")
    print(head)
    print("-" * len(head))
    for label, n1, n2, s1, s2, m1, m2, f1, f2, w1, w2, missed in rows:
        print(f"{label:28s} {n1:6d} {n1 / s1:8.2f} {n2 / s2:10.2f} {(n1 / s1) / (n2 / s2):7.2f} {m1:8.0f} "
              f"{m2:10.0f} {f1:9d} {f2:12d} {f'{w1}/{w2}':>25s} {missed:23d}")
    print("\nspeed x = dp2 frames/s / deface frames/s (higher is better), each over the frames it wrote; both end to"
          "\nend (start-up, decode, detect, blur, encode), one process each, same machine, one run. Faces: dp2's are"
          "\nwhat it anonymized (its export, gap-filled boxes included); deface's are what its detector finds on the"
          "\nframes dp2 decodes. 'deface faces dp2 missed': deface faces whose centre is in no region dp2 blurred.")

if __name__ == "__main__":
    main()
