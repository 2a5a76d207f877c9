"""Disk taken by an install: the installed files of dp2-anonymizer's dependency closure.

Walks the requirements of the installed distributions (markers evaluated, extras followed when
asked) and adds up the sizes recorded in each one's RECORD, grouped, so the README's numbers can be
checked on any machine where the packages are installed:

    python bench/install_size.py              # the default install (requirements.txt: main job + tests)
    python bench/install_size.py --extra ray  # what [ray] adds

CPU-only torch: measure an unpacked CPU wheel with ``--wheel-dir`` (``pip install --no-deps
--target DIR torch-...+cpu...whl``) to compare.
"""
from __future__ import annotations

import argparse
import importlib.metadata as md
import os
import re
from pathlib import Path

from packaging.requirements import Requirement


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _dist(name: str):
    try:
        return md.distribution(name)
    except md.PackageNotFoundError:
        return None


def closure(root: str, extras: set[str]) -> dict[str, md.Distribution]:
    seen: dict[str, md.Distribution] = {}
    todo = [(root, frozenset(extras))]
    while todo:
        name, wanted = todo.pop()
        dist = _dist(name)
        if dist is None or (_norm(name) in seen and not wanted):
            continue
        seen[_norm(name)] = dist
        for text in dist.requires or ():
            req = Requirement(text)
            envs = [{"extra": e} for e in wanted] or [{"extra": ""}]
            if req.marker is None or any(req.marker.evaluate(env) for env in envs):
                if _norm(req.name) not in seen or req.extras:
                    todo.append((req.name, frozenset(req.extras)))
    return seen


def size(dist: md.Distribution) -> int:
    total = 0
    for f in dist.files or ():
        try:
            total += os.path.getsize(dist.locate_file(f))
        except OSError:
            pass
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="dp2-anonymizer")
    parser.add_argument("--extra", action="append", default=[], help="extras of the root (default: test)")
    parser.add_argument("--wheel-dir", type=Path, help="an unpacked wheel folder to measure instead")
    args = parser.parse_args()
    if args.wheel_dir:
        total = sum(p.stat().st_size for p in args.wheel_dir.rglob("*") if p.is_file())
        print(f"{args.wheel_dir}: {total / 2**20:.0f} MiB")
        return
    extras = set(args.extra) or {"test"}
    base = closure(args.root, {"test"})
    dists = closure(args.root, extras)
    if args.root not in dists and _norm(args.root) not in dists:
        raise SystemExit(f"{args.root} is not installed here")
    added = {k: v for k, v in dists.items() if k not in base} if extras != {"test"} else dists
    sizes = sorted(((size(d), k) for k, d in added.items()), reverse=True)
    groups = {"nvidia-* (CUDA libraries)": 0, "triton": 0, "torch": 0}
    for s, k in sizes:
        key = "nvidia-* (CUDA libraries)" if k.startswith("nvidia-") else k if k in groups else None
        if key:
            groups[key] += s
    total = sum(s for s, _ in sizes)
    print(f"{len(sizes)} distributions, {total / 2**20:.0f} MiB" + (f" added by {sorted(extras - {'test'})}"
                                                                 if extras != {"test"} else ""))
    for name, s in groups.items():
        if s:
            print(f"  {name:<28} {s / 2**20:8.0f} MiB")
    for s, k in sizes[:12]:
        if not k.startswith("nvidia-") and k not in groups:
            print(f"  {k:<28} {s / 2**20:8.0f} MiB")


if __name__ == "__main__":
    main()
