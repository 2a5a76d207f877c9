"""The hardware floor under a speed target: the convolution FLOP/s this machine gives, and the
FLOPs a model needs.

A stage cannot run faster than ``its FLOPs / the machine's best convolution FLOP/s``: that is its
floor. The speed benches print each stage's GFLOP, the floor at fp32 and at bf16, and the share of
the measured peak the stage reaches, so a target below the floor is visible as such (no software
trick but doing less arithmetic gets under it).

* :func:`conv_peak` times a few large, well-shaped 3x3 convolutions (channels-last, the layout
  oneDNN runs fastest on CPUs) and returns the best GFLOP/s: the practical peak of the machine,
  for fp32 or under bf16 autocast.
* :func:`count_gflop` counts the FLOPs of one call with ``torch.utils.flop_counter`` (a
  multiply-add counts 2; convolutions, matrix products and transposed convolutions, which are
  nearly all of these models' arithmetic; ROI pooling, resampling and element-wise work are not
  counted, so the floor is a lower bound).

Usage: python bench/roofline.py [--threads 2]  (prints the peaks)
"""
from __future__ import annotations

import argparse
import contextlib
import os
import time

import torch

__all__ = ["PEAK_SHAPES", "conv_peak", "count_gflop", "floor_seconds", "peaks"]

#: (channels, height, width) of the timed 3x3 convolutions: ResNet/StyleGAN-sized layers.
PEAK_SHAPES = ((256, 100, 152), (512, 50, 76), (128, 128, 128))


def _autocast(precision: str):
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast("cpu", dtype={"bf16": torch.bfloat16, "fp16": torch.float16}[precision])


@torch.no_grad()
def conv_peak(precision: str = "fp32", *, seconds: float = 1.0) -> float:
    """Best GFLOP/s of a 3x3 convolution on the CPU in ``precision`` (``fp32`` or ``bf16``).

    Each shape of :data:`PEAK_SHAPES` is warmed up, then timed for about ``seconds``; the best
    shape's rate is returned.
    """
    best = 0.0
    for c, h, w in PEAK_SHAPES:
        conv = torch.nn.Conv2d(c, c, 3, padding=1).eval().to(memory_format=torch.channels_last)
        x = torch.randn(1, c, h, w).contiguous(memory_format=torch.channels_last)
        flop = 2 * c * c * 9 * h * w
        with _autocast(precision):
            conv(x)
            calls, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds / len(PEAK_SHAPES) or calls < 3:
                conv(x)
                calls += 1
            best = max(best, flop * calls / (time.perf_counter() - start) / 1e9)
    return best


def peaks(*, seconds: float = 1.0, previous: dict[str, float] | None = None) -> dict[str, float]:
    """``{"fp32": GFLOP/s, "bf16": GFLOP/s}`` from :func:`conv_peak`, each the best of this
    measurement and ``previous`` (a busy moment lowers a measured peak, never raises it: benches
    measure before and after their runs and keep the best)."""
    previous = previous or {}
    return {p: max(conv_peak(p, seconds=seconds), previous.get(p, 0.0)) for p in ("fp32", "bf16")}


def count_gflop(fn, *args, **kwargs) -> float:
    """GFLOP of ``fn(*args, **kwargs)`` (run once under ``torch.utils.flop_counter``)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        fn(*args, **kwargs)
    return counter.get_total_flops() / 1e9


def floor_seconds(gflop: float, peak_gflops: float) -> float:
    """The least time ``gflop`` can take at ``peak_gflops``."""
    return gflop / peak_gflops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    one, five, fifteen = os.getloadavg()
    print(f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}, "
          f"{args.threads} threads; load average {one:.2f} {five:.2f} {fifteen:.2f}")
    for precision, value in peaks(seconds=2.0).items():
        print(f"3x3 convolution peak, {precision}: {value:.0f} GFLOP/s")


if __name__ == "__main__":
    main()
