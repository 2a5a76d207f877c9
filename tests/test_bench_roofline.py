"""bench/roofline.py: the FLOP count and the peak behind the speed benches' floors."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

_PATH = Path(__file__).resolve().parents[1] / "bench" / "roofline.py"


@pytest.fixture(scope="module")
def roofline():
    spec = importlib.util.spec_from_file_location("roofline", _PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_counts_a_multiply_add_as_two_flops(roofline):
    conv = torch.nn.Conv2d(8, 16, 3, padding=1)
    x = torch.randn(2, 8, 10, 12)
    assert roofline.count_gflop(conv, x) == pytest.approx(2 * 2 * 16 * 8 * 9 * 10 * 12 / 1e9)
    linear = torch.nn.Linear(32, 5)
    assert roofline.count_gflop(linear, torch.randn(7, 32)) == pytest.approx(2 * 7 * 32 * 5 / 1e9)
    # element-wise work is not counted: the floor is a lower bound
    assert roofline.count_gflop(torch.relu, x) == 0


def test_floor_and_peaks(roofline, monkeypatch):
    assert roofline.floor_seconds(100.0, 200.0) == 0.5
    rates = iter([50.0, 80.0])
    monkeypatch.setattr(roofline, "conv_peak", lambda precision, seconds: next(rates))
    # a busy moment lowers a measurement: the best of this one and the previous one is kept
    assert roofline.peaks(previous={"fp32": 60.0, "bf16": 70.0}) == {"fp32": 60.0, "bf16": 80.0}


def test_conv_peak_is_a_rate(roofline, monkeypatch):
    monkeypatch.setattr(roofline, "PEAK_SHAPES", ((8, 6, 6),))
    assert roofline.conv_peak("fp32", seconds=0.01) > 0
