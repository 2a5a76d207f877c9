"""Peak memory of anonymizing one still against its size in megapixels.

Each size runs in a fresh child process (``anonymize.py`` with the offline default config
``configs/anonymizers/traditional/face/gaussian.py``, as a user would run it); its peak resident
set size comes from ``os.wait4``, so the numbers are that process's alone. The test image is a
JPEG of the given size tiled from a corpus photo with faces (a synthetic gradient without the
corpus), so the detector and the blur have work to do. ``--part`` measures pieces of the
pipeline instead of the whole run, to see where memory goes:

- ``cli``: the whole command (default);
- ``io``: decode and write back only (``load_image`` + ``save_image``);
- ``detect``: decode plus the detector.

Sizes run one after another, never in parallel: a 100 MP run needs a few GB.

Usage: python bench/bench_memory.py [--sizes 1 4 9 16 27 50 100] [--part cli|io|detect]
           [--format jpg|png] [--opt detector.upscale=None]
"""
from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "corpus" / "images"
CONFIG = REPO / "configs" / "anonymizers" / "traditional" / "face" / "gaussian.py"

_PARTS = {
    "io": ("from dp2.io.images import load_image, save_image\n"
           "image, meta = load_image({src!r})\n"
           "save_image({dst!r}, image, meta, original=image)\n"),
    "detect": ("from dp2.api import build_anonymizer\n"
               "from dp2.io.images import load_image\n"
               "anonymizer = build_anonymizer({config!r}, {opts!r})\n"
               "image, _ = load_image({src!r})\n"
               "print(len(anonymizer.detect(image).faces))\n"),
}


def make_image(path: Path, megapixels: float) -> tuple[int, int]:
    """A 4:3 image of about ``megapixels`` MP, written to ``path``; returns (w, h)."""
    from PIL import Image

    h = int(round(math.sqrt(megapixels * 1e6 * 3 / 4)))
    w = int(round(h * 4 / 3))
    tile_path = CORPUS / "fr_two_people.jpg"
    if tile_path.is_file():
        tile = Image.open(tile_path).convert("RGB")
        canvas = Image.new("RGB", (w, h))
        for y in range(0, h, tile.height):
            for x in range(0, w, tile.width):
                canvas.paste(tile, (x, y))
    else:
        y, x = np.ogrid[0:h, 0:w]
        canvas = Image.fromarray(np.stack(np.broadcast_arrays(x * 255 // w, y * 255 // h, (x + y) % 256), 2)
                                 .astype(np.uint8))
    canvas.save(path, quality=90)
    return w, h


def peak_rss_mib(cmd: list[str]) -> tuple[float, float, int, str]:
    """Peak RSS (MiB) of a child process, its wall seconds, exit code and stderr tail."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, cwd=REPO,
                                env={**os.environ, "DP2_NO_PROGRESS": "1"})
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        tail = err.read().decode(errors="replace")[-600:]
    return usage.ru_maxrss / 1024, time.perf_counter() - start, proc.returncode, tail


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=float, nargs="+", default=[1, 4, 9, 16, 27, 50, 100], help="megapixels")
    parser.add_argument("--part", choices=["cli", *_PARTS], default="cli")
    parser.add_argument("--format", choices=["jpg", "png"], default="jpg", help="input and output format")
    parser.add_argument("--opt", action="append", default=[], help="config override (repeatable)")
    parser.add_argument("--config", type=Path, default=CONFIG)
    args = parser.parse_args()

    config = args.config.relative_to(REPO) if args.config.is_relative_to(REPO) else args.config
    print(f"part: {args.part}, config: {config}"
          f"{', ' + ' '.join(args.opt) if args.opt else ''}")
    with tempfile.TemporaryDirectory() as tmp:
        def run(mp: float) -> tuple[int, int, float, float, int, str]:
            src, dst = Path(tmp) / f"in.{args.format}", Path(tmp) / f"out.{args.format}"
            w, h = make_image(src, mp)
            if args.part == "cli":
                cmd = [sys.executable, "anonymize.py", str(args.config), "-i", str(src), "-o", str(dst), "-q"]
                for opt in args.opt:
                    cmd += ["--opt", opt]
            else:
                code = _PARTS[args.part].format(src=str(src), dst=str(dst), config=str(args.config), opts=args.opt)
                cmd = [sys.executable, "-c", code]
            try:
                return (w, h, *peak_rss_mib(cmd))
            finally:
                src.unlink(missing_ok=True)
                dst.unlink(missing_ok=True)

        # Start-up (Python, torch, the models) costs the same at every size: measure it once, on
        # a 0.01 MP image, and report what each size adds per pixel.
        _, _, startup, _, rc, tail = run(0.01)
        if rc != 0:
            sys.exit(f"the start-up run failed:\n{tail}")
        print(f"start-up (0.01 MP image): {startup:.0f} MiB")
        # The last column is the growth from the previous size: what each further pixel costs.
        print("| MP | size | peak RSS (MiB) | above start-up (MiB) | bytes/pixel above start-up "
              "| bytes/pixel vs previous size | seconds | exit |")
        print("|---|---|---|---|---|---|---|---|")
        previous = None
        for mp in args.sizes:
            w, h, rss, seconds, rc, tail = run(mp)
            above = rss - startup
            marginal = "" if previous is None else f"{(rss - previous[1]) * 2**20 / (w * h - previous[0]):.0f}"
            previous = (w * h, rss)
            print(f"| {w * h / 1e6:.1f} | {w}x{h} | {rss:.0f} | {above:.0f} | {above * 2**20 / (w * h):.0f} "
                  f"| {marginal} | {seconds:.1f} | {rc} |", flush=True)
            if rc != 0:
                print("   " + tail.strip().splitlines()[-1] if tail.strip() else "   (no message)", flush=True)


if __name__ == "__main__":
    main()
