"""Images/s of a folder run: single-machine folder mode vs Ray with 1 and 2 workers, in one run.

The folder holds copies of the corpus images (``../shared/corpus/images``; synthetic images when
absent), shrunk so the longer side is at most ``--max-side``, spread over sub-folders. Each mode
starts from an empty output folder and includes loading the models (per worker on Ray); the Ray
cluster itself is started once before the Ray rows (``ray.init(num_cpus=N)``, N = the CPU count).
The table also says whether every output is byte-identical to the single-machine run's.

Usage: python bench/bench_ray.py [--images 96] [--max-side 640] [--batch-size 4]
                                 [--config configs/anonymizers/traditional/face/gaussian.py]
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
CORPUS_IMAGES = REPO.parent / "shared" / "corpus" / "images"

from click.testing import CliRunner  # noqa: E402

import dp2  # noqa: E402
from dp2.cli import main  # noqa: E402
from dp2.io.manifest import MANIFEST_NAME  # noqa: E402


def make_folder(root: Path, n: int, max_side: int) -> None:
    sources = sorted(p for p in CORPUS_IMAGES.glob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    rng = np.random.default_rng(0)
    for i in range(n):
        if sources:
            image = Image.open(sources[i % len(sources)]).convert("RGB")
        else:
            image = Image.fromarray(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8))
        image.thumbnail((max_side, max_side))
        folder = root / f"part{i % 4}"
        folder.mkdir(parents=True, exist_ok=True)
        image.save(folder / f"img{i:03d}.jpg", quality=92)


def outputs(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*")
            if p.is_file() and p.name != MANIFEST_NAME}


def main_bench() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--max-side", type=int, default=640)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--config", default=str(REPO / "configs/anonymizers/traditional/face/gaussian.py"))
    args = parser.parse_args()
    os.environ.setdefault("DP2_NO_PROGRESS", "1")

    import ray

    work = Path(tempfile.mkdtemp(prefix="dp2_bench_ray_"))
    try:
        src = work / "in"
        make_folder(src, args.images, args.max_side)
        rows = []

        start = time.perf_counter()
        result = CliRunner().invoke(main, [args.config, "-i", str(src), "-o", str(work / "single"), "-q"])
        single_s = time.perf_counter() - start
        if result.exit_code != 0:
            raise SystemExit(f"single-machine run failed:\n{result.output}")
        reference = outputs(work / "single")
        rows.append(("single machine (folder mode)", "-", single_s, True))

        cpus = os.cpu_count() or 1
        ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
        try:
            for workers in (1, 2):
                out = work / f"ray{workers}"
                start = time.perf_counter()
                summary = dp2.anonymize_dataset(args.config, src, out, num_workers=workers,
                                                batch_size=args.batch_size)
                seconds = time.perf_counter() - start
                if summary.failures:
                    raise SystemExit(f"Ray run failed: {summary.failures}")
                rows.append((f"Ray, {workers} worker(s)", str(workers), seconds, outputs(out) == reference))
        finally:
            ray.shutdown()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"\n{args.images} images (longer side <= {args.max_side}), {Path(args.config).relative_to(REPO)}, "
          f"{cpus} CPU(s), Ray batch size {args.batch_size}\n")
    print(f"| {'mode':<30} | {'workers':>7} | {'seconds':>7} | {'images/s':>8} | {'vs single':>9} | same bytes |")
    print(f"|{'-' * 32}|{'-' * 8}:|{'-' * 8}:|{'-' * 9}:|{'-' * 10}:|{'-' * 12}|")
    for name, workers, seconds, same in rows:
        rate = args.images / seconds
        print(f"| {name:<30} | {workers:>7} | {seconds:7.1f} | {rate:8.2f} | {single_s / seconds:8.2f}x | "
              f"{'yes' if same else 'NO':<10} |")


if __name__ == "__main__":
    main_bench()
