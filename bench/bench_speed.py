"""Seconds per face / person of the generative stages: eager fp32 vs compiled fp32 vs bf16 (issue 13).

Per model, the whole stage (crop, generate, resize back, paste) on one instance:

* FDF256 face stage (``face.py``): one 96-px face;
* FDH-CSE person stage (``FB_cse*.py``): one 180x80 person with a synthetic CSE embedding.

Full-size generators with random weights (speed does not depend on the weights; the official
files cannot be downloaded here). Variants: eager fp32 (dp2's default, bit-identical to
DeepPrivacy2 and measured equal to it in speed within 6%: the DeepPrivacy2 proxy), compiled
fp32 (``--compile``), eager bf16 and compiled bf16 (``--precision bf16 [--compile]``). Each
variant's generator is its own copy; the variants alternate (A, B, C, D, A, B, ...) and the
table prints medians after one warm-up call, the speed-up against eager fp32 and the uint8
difference of the output image against eager fp32 (max, mean, and the share of the
anonymized region's values off by more than 2 levels).

First-call cost: the first compiled call minus a steady call. ``cold`` starts from an empty
compile cache (a temporary folder); ``warm`` compiles again in this process after
``torch._dynamo.reset()``, which is what a second process pays with dp2's persistent cache
(~/.cache/dp2/inductor), less its imports. ``--quick`` uses the persistent cache instead of an
empty one (cold the first time on a machine, warm after) and measures ``warm`` for fp32 only.

The hardware floor (``bench/roofline.py``): each stage's GFLOP per instance (counted on the
eager fp32 call), the best 3x3 convolution GFLOP/s this machine gives in fp32 and bf16, each
variant's share of that peak, and per model the floor ``GFLOP / peak`` that no variant computing
the same arithmetic can beat.

``--batching`` adds the face stage with 8 faces per image at batch 1, 4 and 8, and the FDH-CSE
person stage with 4 persons at batch 1, 2 and 4, eager and compiled (the measurements behind the
CPU batch-size defaults).

Then bench/bench_detection_speed.py's tables (full-body detection per stage, with floors) are
printed (``--no-detection`` skips them). A CUDA table (fp16/bf16 at batch 1 and 16) is printed when a GPU is available.

Usage: python bench/bench_speed.py [--quick] [--repeats 5] [--kinds fdf256 fdh_cse] [--threads 2] [--batching]
"""
from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from roofline import count_gflop, floor_seconds, peaks  # noqa: E402

VARIANTS = [("eager fp32", "fp32", False), ("compiled fp32", "fp32", True),
            ("eager bf16", "bf16", False), ("compiled bf16", "bf16", True)]


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f}"


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def build_case(kind: str, n: int, device):
    """(generator, stage factory, image, detections) for ``n`` independent instances."""
    from bench_faces import body_scene, scene
    from dp2.generation.build import build_generator
    from dp2.stages import BodyCropStage, FaceCropStage

    import torch

    torch.manual_seed(0)
    G = build_generator(kind).to(device).requires_grad_(False)
    body = kind.startswith("fdh")
    image, dets = body_scene(n, cse=kind == "fdh_cse") if body else scene(n)
    factory = (lambda g, b: BodyCropStage(generator=g, batch_size=b)) if body else \
        (lambda g, b: FaceCropStage(generator=g, batch_size=b))
    return G, factory, image.to(device), dets.to(device)


def run_once(stage, image, dets, precision: str, compiled: bool, device) -> tuple[float, "np.ndarray"]:
    import torch

    from dp2.anonymizer import SynthesisOptions
    from dp2.generation.latents import LatentSampler

    options = SynthesisOptions(truncation_value=0.5, precision=precision, compile=compiled)
    sampler = LatentSampler(0)  # the same latents on every call: outputs are comparable
    with torch.inference_mode():
        start = time.perf_counter()
        out = stage.anonymize(image, dets, next_seed=sampler.next_seed, options=options)
        _sync(device)
        return time.perf_counter() - start, out.cpu().numpy()


def _forget_compiled(G) -> None:
    import torch

    torch._dynamo.reset()
    G.__dict__.pop("_dp2_compiled", None)


def _diff(out: np.ndarray, ref: np.ndarray, image: np.ndarray) -> tuple[int, float, float]:
    """(max, mean, share > 2 levels) of the uint8 difference over the anonymized region (where eager
    fp32 changed the input); the max is over the whole image."""
    d = np.abs(out.astype(np.int16) - ref.astype(np.int16))
    region = (ref != image).any(axis=0)
    if not region.any():
        return 0, 0.0, 0.0
    vals = d[:, region]
    return int(d.max()), float(vals.mean()), float((vals > 2).mean())


def bench_model(kind: str, n: int, batch_size: int, repeats: int, device, quick: bool,
                variants=VARIANTS) -> list[dict]:
    G, factory, image, dets = build_case(kind, n, device)
    copies = {"fp32": G, "bf16": copy.deepcopy(G), "fp16": copy.deepcopy(G)}
    rows = {name: {"name": name, "times": []} for name, _, _ in variants}
    for name, precision, compiled in variants:  # warm-up; the first compiled call compiles (cold)
        g = copies[precision]
        stage = factory(g, batch_size)
        first, out = run_once(stage, image, dets, precision, compiled, device)
        rows[name].update(stage=stage, first=first, out=out, precision=precision, compiled=compiled)
        if compiled and getattr(g.__dict__.get("_dp2_compiled"), "failed", False):
            rows[name]["name"] += " (FELL BACK TO EAGER)"
        print(f"  {kind} {name}: first call {first:.1f} s", flush=True)
    for _ in range(repeats):  # A, B, C, D, A, B, ...
        for name, precision, compiled in variants:
            t, _ = run_once(rows[name]["stage"], image, dets, precision, compiled, device)
            rows[name]["times"].append(t)
    for name, precision, compiled in variants:  # warm first call: the persistent cache, as a new process
        if compiled and (precision == "fp32" or not quick):
            g = copies[precision]
            _forget_compiled(g)
            stage = factory(g, batch_size)
            rows[name]["warm"], _ = run_once(stage, image, dets, precision, compiled, device)
    ref = rows[variants[0][0]]["out"]
    base = statistics.median(rows[variants[0][0]]["times"])
    gflop = count_gflop(run_once, rows[variants[0][0]]["stage"], image, dets, "fp32", False, device) / n
    result = []
    for name, _, _ in variants:
        r = rows[name]
        med = statistics.median(r["times"])
        mx, mean, share = _diff(r["out"], ref, image.cpu().numpy())
        result.append(dict(kind=kind, name=r["name"], per=med / n, speedup=base / med, max=mx, mean=mean,
                           share=share, gflop=gflop, precision=r["precision"],
                           cold=r["first"] - med if r["compiled"] else None,
                           warm=r["warm"] - med if "warm" in r else None))
    return result


def print_table(rows: list[dict], unit: dict[str, str], cold_label: str, peak: dict[str, float] | None = None) -> None:
    """The stage table; with ``peak`` (GFLOP/s per precision, :func:`roofline.peaks`) also each
    variant's share of the machine's convolution peak and, per model, the floor it cannot beat."""
    header = (f"{'model':8s} {'variant':16s} {'s/inst':>7s} {'vs eager':>8s} {'max diff':>8s} {'mean':>6s} "
              f"{'>2 lvl':>7s} {'first call ' + cold_label:>18s} {'first call warm':>16s}")
    if peak:
        header += f" {'GFLOP/s':>8s} {'of peak':>7s}"
    print(header)
    print("-" * len(header))
    for r in rows:
        cold = "" if r["cold"] is None else f"+{r['cold']:.1f} s"
        warm = "" if r["warm"] is None else f"+{r['warm']:.1f} s"
        roof = ""
        if peak and r["precision"] in peak:
            rate = r["gflop"] / r["per"]
            roof = f" {rate:8.0f} {100 * rate / peak[r['precision']]:6.0f}%"
            if rate > peak[r["precision"]]:
                roof += " (above the measured peak: the machine was busy while it was measured; rerun)"
        print(f"{r['kind']:8s} {r['name']:16s} {r['per']:7.3f} {r['speedup']:7.2f}x {r['max']:8d} {r['mean']:6.2f} "
              f"{100 * r['share']:6.2f}% {cold:>18s} {warm:>16s}{roof}   ({unit[r['kind']]})")
    if peak:
        print(f"\nFloors (GFLOP per instance / the 3x3 convolution peak: fp32 {peak['fp32']:.0f}, "
              f"bf16 {peak['bf16']:.0f} GFLOP/s; no variant that computes the same arithmetic can beat them):")
        for kind in dict.fromkeys(r["kind"] for r in rows):
            r = next(r for r in rows if r["kind"] == kind)
            print(f"  {kind:8s} {r['gflop']:6.1f} GFLOP: fp32 >= {floor_seconds(r['gflop'], peak['fp32']):.3f} s, "
                  f"bf16 >= {floor_seconds(r['gflop'], peak['bf16']):.3f} s ({unit[kind]})")


BATCHING = {"fdf256": (8, (1, 4, 8), "face"), "fdh_cse": (4, (1, 2, 4), "person")}


def bench_batching(repeats: int, device, kinds=("fdf256", "fdh_cse")) -> None:
    """Per instance, eager and compiled fp32, at several batch sizes: 8 faces per image at batch
    1, 4, 8 (FDF256) and 4 persons per image at batch 1, 2, 4 (FDH-CSE)."""
    import torch

    for kind in kinds:
        n, batches, what = BATCHING[kind]
        G, factory, image, dets = build_case(kind, n, device)
        cases = [(b, c) for b in batches for c in (False, True)]
        stages = {case: factory(G, case[0]) for case in cases}
        times = {case: [] for case in cases}
        for case in cases:
            first, _ = run_once(stages[case], image, dets, "fp32", case[1], device)
            print(f"  {kind} batch {case[0]} {'compiled' if case[1] else 'eager'}: first call {first:.1f} s", flush=True)
        for _ in range(repeats):
            for case in cases:
                times[case].append(run_once(stages[case], image, dets, "fp32", case[1], device)[0])
        base = {c: statistics.median(times[(1, c)]) for c in (False, True)}
        print(f"\n{kind}, {n} {what}s per image, fp32, {device} ({torch.get_num_threads()} threads), "
              f"median of {repeats}; {_load()}")
        print(f"{'batch':>5s} {'eager s/' + what:>15s} {'vs batch 1':>10s} {'compiled s/' + what:>18s} {'vs batch 1':>10s}")
        for b in batches:
            e, c = statistics.median(times[(b, False)]), statistics.median(times[(b, True)])
            print(f"{b:5d} {e / n:15.3f} {base[False] / e:9.2f}x {c / n:18.3f} {base[True] / c:9.2f}x")


def detection_table(quick: bool, threads: int) -> None:
    """Print bench/bench_detection_speed.py's tables (full-body detection per stage)."""
    from bench_detection_speed import detection_table as table

    print()
    print(table(quick, threads=threads), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats; the persistent compile cache")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per variant (default 5, quick 3)")
    parser.add_argument("--kinds", nargs="*", default=["fdf256", "fdh_cse"], help="none: skip the stage table")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batching", action="store_true", help="also faces at batch 1, 4, 8 and persons at 1, 2, 4")
    parser.add_argument("--no-detection", action="store_true", help="skip the detection table")
    args = parser.parse_args()
    repeats = args.repeats or (3 if args.quick else 5)
    cold_label = "(cache)" if args.quick else "cold"
    if not args.quick:  # an empty cache: the first compiled calls are cold
        os.environ["DP2_COMPILE_CACHE_DIR"] = tempfile.mkdtemp(prefix="dp2_bench_inductor_")
    import torch

    torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    from dp2.generation.compile import compile_cache_dir

    start = time.perf_counter()
    print(f"torch {torch.__version__}, {device} ({torch.backends.cpu.get_cpu_capability()}), "
          f"{torch.get_num_threads()} threads, median of {repeats} alternating runs, compile cache "
          f"{compile_cache_dir()}; {_load()}", flush=True)
    unit = {"fdf256": "s/face, FDF256 face stage", "fdh_cse": "s/person, FDH-CSE person stage",
            "fdh_nocse": "s/person, FDH no-CSE person stage", "fdf128": "s/face, FDF128 face stage"}
    rows = []
    peak = peaks() if args.kinds else {}
    for kind in args.kinds:
        rows += bench_model(kind, 1, 1, repeats, device, args.quick)
    if rows:
        peak = peaks(previous=peak)
        print(f"\nGenerative stages, one instance, {device}; {_load()}")
        print_table(rows, unit, cold_label, peak)
    if args.batching:
        bench_batching(repeats, device, [k for k in args.kinds if k in BATCHING] or list(BATCHING))
    if torch.cuda.is_available():
        cuda = torch.device("cuda")
        variants = [("eager fp32", "fp32", False), ("eager fp16", "fp16", False), ("eager bf16", "bf16", False),
                    ("compiled fp16", "fp16", True)]
        for n in (1, 16):
            rows = []
            for kind in args.kinds:
                rows += bench_model(kind, n, n, repeats, cuda, True, variants)
            print(f"\nCUDA ({torch.cuda.get_device_name()}), batch {n}")
            print_table(rows, unit, cold_label)
    else:
        print("\nCUDA table (fp16/bf16 at batch 1 and 16): not measured, no GPU available on this machine.")
    if not args.no_detection:
        detection_table(args.quick, args.threads)
    print(f"\ntotal {time.perf_counter() - start:.0f} s; {_load()}")


if __name__ == "__main__":
    main()
