"""Face coverage, false positives and speed on ../shared/wider_dev: dp2's classic configs vs deface.

For every classic face config (and deface with its blur and with ``--replacewith solid``) the
48 WIDER FACE images are anonymized as a folder, in one process per run, and scored with the
shared, tool-agnostic ``score.py`` (a face counts as covered when half of its box's pixels
changed by more than 12 levels). Printed in one run:

* coverage per face-size bucket, and the ratio to ``maskout.py`` (dp2) per bucket;
* false positives: detections that overlap no ground-truth box (IoU < 0.1 against every box,
  invalid ones included), dp2's from ``--export-detections``, deface's from its own CenterFace
  wrapper at its default threshold (what its CLI runs);
* images/s of the whole command (start-up included) and its peak memory, dp2's default config
  against deface, alternated A, B, A, B (``--repeat``), medians after a warm-up run each;
  the load average is printed with them.

Usage (from the repository root)::

    python bench/wider_coverage.py                  # every config, speed repeated 3 times
    python bench/wider_coverage.py --configs gaussian,maskout --repeat 1
    python bench/wider_coverage.py --opt detector.upscale=None   # extra --opt for dp2 runs
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
WIDER = REPO.parent / "shared" / "wider_dev"
CLASSIC = REPO / "configs" / "anonymizers" / "traditional" / "face"
CONFIGS = ["gaussian", "gaussian_ellipse", "pixelation8", "pixelation16", "maskout", "maskout_black"]
BUCKETS = ["px0-16", "px16-32", "px32-64", "px64-inf"]


def run_measured(cmd: list[str], cwd: Path | None = None) -> tuple[float, float, int]:
    """Run ``cmd``; return (wall seconds, peak RSS in MiB of that process, return code)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr.read().decode(errors="replace")[-2000:])
    return wall, usage.ru_maxrss / 1024, proc.returncode


def score(out_dir: Path, suffix: str | None = None) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        cmd = [sys.executable, str(WIDER / "score.py"), str(WIDER / "images"), str(out_dir), str(WIDER / "annotations"),
               "--json", f.name]
        if suffix is not None:
            cmd += ["--out-suffix", suffix]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        return json.loads(Path(f.name).read_text())


def ground_truth() -> dict[str, np.ndarray]:
    boxes = {}
    for path in sorted((WIDER / "annotations").glob("*.json")):
        meta = json.loads(path.read_text())
        boxes[meta["image"]] = np.array([[f["x"], f["y"], f["x"] + f["w"], f["y"] + f["h"]] for f in meta["faces"]],
                                        np.float64).reshape(-1, 4)
    return boxes


def false_positives(detections: dict[str, np.ndarray], truth: dict[str, np.ndarray]) -> int:
    """Detections whose IoU with every ground-truth box (invalid ones included) is below 0.1."""
    count = 0
    for name, dets in detections.items():
        gt = truth.get(name, np.zeros((0, 4)))
        if len(dets) == 0:
            continue
        if len(gt) == 0:
            count += len(dets)
            continue
        lt = np.maximum(dets[:, None, :2], gt[None, :, :2])
        rb = np.minimum(dets[:, None, 2:], gt[None, :, 2:])
        inter = np.clip(rb - lt, 0, None).prod(axis=2)
        area_d = np.prod(dets[:, 2:] - dets[:, :2], axis=1)
        area_g = np.prod(gt[:, 2:] - gt[:, :2], axis=1)
        iou = inter / np.maximum(area_d[:, None] + area_g[None, :] - inter, 1e-9)
        count += int((iou.max(axis=1) < 0.1).sum())
    return count


def dp2_export_boxes(export: Path) -> dict[str, np.ndarray]:
    boxes = {}
    for line in export.read_text().splitlines():
        line = line.strip().rstrip(",")
        if not line.startswith("{") or '"source"' not in line:
            continue
        item = json.loads(line)
        faces = [f["box"] for f in item.get("faces", [])]
        boxes[Path(item["source"]).name] = np.array(faces, np.float64).reshape(-1, 4)
    return boxes


def deface_boxes() -> dict[str, np.ndarray]:
    from deface.centerface import CenterFace
    from PIL import Image

    detector = CenterFace()
    boxes = {}
    for path in sorted((WIDER / "images").glob("*.jpg")):
        image = np.asarray(Image.open(path).convert("RGB"))
        dets, _ = detector(image, threshold=0.2)  # deface's CLI default
        boxes[path.name] = dets[:, :4].astype(np.float64)
    return boxes


def dp2_cmd(config: str, out: Path, opts: list[str], export: Path | None = None) -> list[str]:
    cmd = [sys.executable, str(REPO / "anonymize.py"), str(CLASSIC / f"{config}.py"), "-i", str(WIDER / "images"),
           "-o", str(out), "-q", "--no-resume"]
    if export is not None:
        cmd += ["--export-detections", str(export)]
    for opt in opts:
        cmd += ["--opt", opt]
    return cmd


def deface_cmd(work: Path, solid: bool) -> tuple[list[str], Path]:
    folder = work / ("deface_solid" if solid else "deface_blur")
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(WIDER / "images", folder)
    for extra in folder.glob("*_anonymized*"):
        extra.unlink()
    cmd = [shutil.which("deface") or "deface", str(folder)]
    if solid:
        cmd += ["--replacewith", "solid"]
    return cmd, folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--repeat", type=int, default=3, help="timed A/B pairs after the warm-up (default 3)")
    parser.add_argument("--opt", action="append", default=[], help="extra --opt for every dp2 run")
    args = parser.parse_args()
    if not WIDER.is_dir():
        sys.exit(f"{WIDER} not found (the shared wider_dev set)")
    if shutil.which("deface") is None:
        sys.exit("deface is not installed (pip install deface)")
    configs = [c for c in args.configs.split(",") if c]
    truth = ground_truth()
    n_images = len(list((WIDER / "images").glob("*.jpg")))
    rows = []
    with tempfile.TemporaryDirectory(prefix="dp2_wider_") as tmp:
        work = Path(tmp)
        for config in configs:
            out, export = work / config, work / f"{config}.json"
            wall, mem, rc = run_measured(dp2_cmd(config, out, args.opt, export))
            if rc != 0:
                sys.exit(f"dp2 {config} failed (exit {rc})")
            rows.append((f"dp2 {config}", score(out), false_positives(dp2_export_boxes(export), truth), wall, mem))
        fp_deface = false_positives(deface_boxes(), truth)
        for solid in (False, True):
            cmd, folder = deface_cmd(work, solid)
            wall, mem, rc = run_measured(cmd)
            if rc != 0:
                sys.exit(f"deface failed (exit {rc})")
            rows.append((f"deface {'solid' if solid else 'blur'}", score(folder, "_anonymized.jpg"), fp_deface, wall, mem))

        # Speed: default config vs deface (blur), alternated, medians after a warm-up each.
        speed = {"dp2": [], "deface": []}
        mems = {"dp2": [], "deface": []}
        for i in range(args.repeat + 1):
            for side in ("dp2", "deface"):
                if side == "dp2":
                    cmd = dp2_cmd("gaussian", work / "speed_dp2", args.opt)
                else:
                    cmd, _ = deface_cmd(work, solid=False)
                wall, mem, rc = run_measured(cmd)
                if i > 0:
                    speed[side].append(n_images / wall)
                    mems[side].append(mem)

    maskout = next((r[1] for r in rows if r[0] == "dp2 maskout"), None)
    print(f"\n{'run':24s} {'all':>8s} " + " ".join(f"{b:>8s}" for b in BUCKETS)
          + f" {'>=16px':>8s} {'FP':>5s} {'img/s':>6s} {'MiB':>6s}   vs maskout per bucket")
    for name, res, fp, wall, mem in rows:
        ge16 = sum(int(res[b].split("/")[0]) for b in BUCKETS[1:])
        tot16 = sum(int(res[b].split("/")[1]) for b in BUCKETS[1:])
        ratio = ""
        if maskout is not None and name.startswith("dp2"):
            ratio = " ".join(f"{int(res[b].split('/')[0]) / max(1, int(maskout[b].split('/')[0])):.2f}" for b in BUCKETS)
        print(f"{name:24s} {res['covered']:>4d}/{res['faces']:<3d} " + " ".join(f"{res[b]:>8s}" for b in BUCKETS)
              + f" {ge16:>4d}/{tot16:<3d} {fp:>5d} {n_images / wall:6.2f} {mem:6.0f}   {ratio}")
    dp2_fps, deface_fps = statistics.median(speed["dp2"]), statistics.median(speed["deface"])
    print(f"\nspeed (gaussian.py vs deface blur, {args.repeat} alternated runs each after a warm-up, whole command):")
    print(f"  dp2 {dp2_fps:.2f} images/s, peak {statistics.median(mems['dp2']):.0f} MiB; "
          f"deface {deface_fps:.2f} images/s, peak {statistics.median(mems['deface']):.0f} MiB; "
          f"ratio dp2/deface {dp2_fps / deface_fps:.2f}x")
    print(f"  load average: {' '.join(f'{v:.2f}' for v in os.getloadavg())}; dp2 --opt: {args.opt or 'none'}")


if __name__ == "__main__":
    main()
