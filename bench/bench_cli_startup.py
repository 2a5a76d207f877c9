"""How fast the command answers without running a model: --help, --list-configs, a usage error.

Each command runs in a fresh interpreter (as a user types it), N times; the median wall time is
printed. The target is under 0.5 s (issue 11); tests do not assert timings, this script measures.

    python bench/bench_cli_startup.py [-n 7]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COMMANDS = {
    "--help": ["--help"],
    "--list-configs": ["--list-configs"],
    "usage error (missing input)": ["traditional/face/gaussian", "-i", "missing.jpg"],
    "usage error (unknown config)": ["facee", "-i", "x.jpg"],
    "weights face (listing)": ["weights", "face"],
    "import torch (for scale)": None,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=7, help="runs per command")
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with tempfile.TemporaryDirectory() as cwd:  # another folder, as an installed package runs
        for label, argv in COMMANDS.items():
            command = ([sys.executable, "-c", "import torch"] if argv is None
                       else [sys.executable, "-m", "dp2", *argv])
            times = []
            for _ in range(args.n):
                start = time.perf_counter()
                subprocess.run(command, cwd=cwd, env=env, capture_output=True)
                times.append(time.perf_counter() - start)
            print(f"{label:<30} median {statistics.median(times):.3f} s  (min {min(times):.3f}, max {max(times):.3f})")


if __name__ == "__main__":
    main()
