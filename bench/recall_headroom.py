"""How much recall CenterFace's own evidence can give on ../shared/wider_dev, and at what false-positive cost.

Runs the bundled CenterFace once per image and per pass (base, coarse levels, mirrored base,
2x and 3x upscaled), keeping every candidate above 0.03, then replays detection policies on
those candidates without running the network again:

* ``current``: what ``CenterFaceDetector`` does by default (base above the threshold, coarse
  levels for large faces, 2x windows around weak small base candidates);
* lower thresholds, a flip test, flip-verified weak candidates, a 3x small-face pass.

A face counts as covered when half of its ground-truth box lies inside the union of the
regions (``1.3 x`` each merged box, as the classic configs paint), i.e. the mask-out coverage
of score.py without the pixel test; it reproduces ``maskout.py`` within a face per bucket.
False positives are merged boxes with IoU < 0.1 against every ground-truth box.

The table it prints is the evidence for issue 14's recall targets: every policy that gains
faces below 16 px or the last faces of 16 px and up multiplies the false positives.

Usage (from the repository root)::

    python bench/recall_headroom.py            # candidates cached in /tmp/dp2_recall_headroom.pkl
    python bench/recall_headroom.py --refresh  # recompute them
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO))

from wider_coverage import WIDER, false_positives, ground_truth  # noqa: E402

from dp2.detection.centerface import CenterFaceDetector, _resize, _to_image  # noqa: E402
from dp2.detection.centerface_decode import box_iou, merge_detections  # noqa: E402

LOW = 0.03  # candidates kept per pass
LEVELS = (0.5, 0.25, 0.125, 0.0625)
BUCKETS = [(0, 16), (16, 32), (32, 64), (64, 10**9)]


def collect(detector: CenterFaceDetector) -> dict:
    """Per image: its size and, per pass, (boxes, scores) in image pixels above ``LOW``."""
    out = {}
    files = sorted((WIDER / "images").glob("*.jpg"))
    start = time.perf_counter()
    for i, path in enumerate(files):
        rgb = np.ascontiguousarray(cv2.imread(str(path))[:, :, ::-1])
        h, w = rgb.shape[:2]
        passes = {}

        def keep(name, found):
            passes[name] = (found[0].numpy(), found[1].numpy())

        for factor in (1.0, *LEVELS):
            if factor < 1.0 and max(h, w) * factor < 64:
                break
            img = _resize(rgb, factor)
            keep(f"s{factor}", _to_image(detector._run_whole(img, LOW), (img.shape[1] / w, img.shape[0] / h)))
        boxes, scores, _ = detector._run_whole(np.ascontiguousarray(rgb[:, ::-1]), LOW)
        boxes = boxes.clone()
        boxes[:, [0, 2]] = w - boxes[:, [2, 0]]
        passes["flip"] = (boxes.numpy(), scores.numpy())
        for up in (2.0, 3.0):
            img = _resize(rgb, up)
            found = detector._run_tiled(img, 32 * up, LOW, 1024)
            keep(f"up{up}", _to_image(found, (img.shape[1] / w, img.shape[0] / h)))
        out[path.name] = {"hw": (h, w), "passes": passes}
        print(f"\r{i + 1}/{len(files)} images, {time.perf_counter() - start:.0f} s", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return out


def _side(boxes: np.ndarray) -> np.ndarray:
    return np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])


def _near(boxes: np.ndarray, anchors: np.ndarray, distance: float) -> np.ndarray:
    """Boxes whose centre is within ``distance`` (Chebyshev) of some anchor's centre."""
    if len(anchors) == 0 or len(boxes) == 0:
        return np.zeros(len(boxes), bool)
    a = (anchors[:, :2] + anchors[:, 2:]) / 2
    b = (boxes[:, :2] + boxes[:, 2:]) / 2
    return (np.abs(b[:, None] - a[None]).max(axis=2) < distance).any(axis=1)


def _flip_score(boxes: np.ndarray, flipped: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    fb, fs = flipped
    if len(boxes) == 0 or len(fb) == 0:
        return np.zeros(len(boxes))
    iou = box_iou(torch.from_numpy(boxes), torch.from_numpy(fb)).numpy()
    return np.where(iou >= 0.5, fs[None], 0.0).max(axis=1)


def replay(record: dict, *, threshold: float = 0.2, flip: bool = False, flip_verified: float | None = None,
           up3: float | None = None) -> np.ndarray:
    """Merged boxes of one image under a policy (the default arguments are the detector's defaults)."""
    passes, (h, w) = record["passes"], record["hw"]
    boxes, scores = passes["s1.0"]
    found = [boxes[scores > threshold]]
    if flip:
        fb, fs = passes["flip"]
        found.append(fb[fs > threshold])
    if flip_verified is not None:  # weak base candidates whose mean with the mirrored score passes
        weak = (scores > 0.1) & (scores <= threshold)
        mean = (scores[weak] + _flip_score(boxes[weak], passes["flip"])) / 2
        found.append(boxes[weak][mean > flip_verified])
    ub, us = passes["up2.0"]  # 2x windows around weak small base candidates
    proposals = boxes[(scores > 0.08) & (scores <= threshold) & (_side(boxes) < 32)]
    found.append(ub[(us > threshold + 0.1) & (_side(ub) < 32) & _near(ub, proposals, 16)])
    if up3 is not None:
        tb, ts = passes["up3.0"]
        found.append(tb[(ts > up3) & (_side(tb) < 16)])
    for factor in LEVELS:
        if f"s{factor}" not in passes or max(h, w) * factor < 128:
            continue
        cb, cs = passes[f"s{factor}"]
        found.append(cb[(cs > threshold + 0.1) & (_side(cb) * factor >= 16)])
    merged = np.concatenate(found).astype(np.float32)
    if len(merged) == 0:
        return merged.reshape(0, 4)
    result = merge_detections(torch.from_numpy(merged), torch.ones(len(merged)), torch.zeros(len(merged), 5, 2),
                              0.3, "union")[0]
    return result.numpy()


def coverage(boxes_by_image: dict[str, np.ndarray], records: dict, faces: dict[str, list]) -> list[int]:
    covered = [0] * len(BUCKETS)
    for name, boxes in boxes_by_image.items():
        h, w = records[name]["hw"]
        mask = np.zeros((h, w), bool)
        for x0, y0, x1, y1 in boxes:
            cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) * 0.65, (y1 - y0) * 0.65
            mask[max(0, int(np.floor(cy - ry))):int(np.ceil(cy + ry)), max(0, int(np.floor(cx - rx))):int(np.ceil(cx + rx))] = True
        for face in faces[name]:
            x, y, fw, fh = int(face["x"]), int(face["y"]), int(face["w"]), int(face["h"])
            if face.get("invalid", 0) or fw <= 0 or fh <= 0:
                continue
            inside = mask[max(y, 0):y + fh, max(x, 0):x + fw]
            if inside.size and inside.mean() >= 0.5:
                covered[next(i for i, (lo, hi) in enumerate(BUCKETS) if lo <= max(fw, fh) < hi)] += 1
    return covered


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache", type=Path, default=Path("/tmp/dp2_recall_headroom.pkl"))
    parser.add_argument("--refresh", action="store_true", help="recompute the candidates")
    args = parser.parse_args()
    if args.refresh or not args.cache.is_file():
        records = collect(CenterFaceDetector())
        args.cache.write_bytes(pickle.dumps(records))
    else:
        records = pickle.loads(args.cache.read_bytes())
    faces = {}
    for path in sorted((WIDER / "annotations").glob("*.json")):
        meta = json.loads(path.read_text())
        faces[meta["image"]] = meta["faces"]
    truth = ground_truth()

    policies = [
        ("current (detector defaults)", {}),
        ("threshold 0.15", {"threshold": 0.15}),
        ("threshold 0.10", {"threshold": 0.10}),
        ("flip test", {"flip": True}),
        ("flip-verified weak, mean > 0.16", {"flip_verified": 0.16}),
        ("flip-verified weak, mean > 0.12", {"flip_verified": 0.12}),
        ("3x pass (< 16 px), score > 0.3", {"up3": 0.3}),
        ("3x pass (< 16 px), score > 0.4", {"up3": 0.4}),
    ]
    print(f"load average {os.getloadavg()[0]:.1f}; covered faces per size bucket (replayed mask-out), false positives")
    print("| policy | <16 | 16-32 | 32-64 | >=64 | >=16 | FP |")
    print("|---|---|---|---|---|---|---|")
    for label, kwargs in policies:
        boxes = {name: replay(records[name], **kwargs) for name in faces}
        cov = coverage(boxes, records, faces)
        fp = false_positives({n: b.astype(np.float64) for n, b in boxes.items()}, truth)
        print(f"| {label} | {cov[0]} | {cov[1]} | {cov[2]} | {cov[3]} | {sum(cov[1:])} | {fp} |")


if __name__ == "__main__":
    main()
