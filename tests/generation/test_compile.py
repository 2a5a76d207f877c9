"""dp2.generation.compile: precision rule, compile cache folder, and the eager fallback."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from dp2.generation import compile as gc

from helpers import REPO

# A tiny generator: conv + pointwise ops, so inductor must build C++ kernels for it.
_TINY = textwrap.dedent('''
    import logging, sys, torch
    from dp2.generation.base import Generator
    from dp2.generation import compile as gc

    class Tiny(Generator):
        z_channels = 4
        imsize = (8, 8)

        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(4, 3, 3, padding=1)

        def forward(self, img, mask, latent=None, **conditions):
            return torch.tanh(self.conv(torch.cat([img * mask, mask], 1))) * 1.5 + latent[:, :1, None, None]

    logging.basicConfig(level=logging.WARNING, stream=sys.stdout, format="WARNING %(message)s")
    if sys.argv[1] == "compiler-lies":  # the check finds one, inductor does not: compilation itself fails
        gc.find_cxx_compiler = lambda: "g++"
    G = Tiny().eval()
    g = torch.Generator().manual_seed(0)
    img, mask, lat = torch.rand(3, 3, 8, 8, generator=g), torch.ones(3, 1, 8, 8), torch.randn(3, 4, generator=g)
    with torch.inference_mode():
        ref = G(img, mask, lat)
        if sys.argv[1] == "background":  # eager until the thread has compiled, then compiled
            assert torch.equal(gc.run_generator(G, img, mask, lat, {}, compile=True, background=True), ref)
            import threading
            for t in threading.enumerate():
                if t.name == "dp2-compile":
                    t.join(240)
            assert G._dp2_compiled.ready == {("fp32", 4)}, G._dp2_compiled.ready
            out = gc.run_generator(G, img, mask, lat, {}, compile=True, background=True)
            assert (out - ref).abs().max() < 1e-5
            print("compiled", not torch.equal(out, ref) or "same")
        else:
            for _ in range(3):
                assert torch.equal(gc.run_generator(G, img, mask, lat, {}, compile=True), ref)
    print("failed", G._dp2_compiled.failed, "dynamo", "torch._dynamo" in sys.modules)
''')


def _run_without_compiler(mode: str, tmp_path, hide_compiler: bool = True) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("CXX", "CC", "TORCHINDUCTOR_CACHE_DIR")}
    env["PYTHONPATH"] = str(REPO)
    if hide_compiler:  # and an empty compile cache: nothing compiled earlier can be reused
        env["DP2_COMPILE_CACHE_DIR"] = str(tmp_path / "cache")
        bare = tmp_path / "bin"  # PATH holds no C++ compiler (nor anything else)
        bare.mkdir()
        env["PATH"] = str(bare)
    proc = subprocess.run([sys.executable, "-c", _TINY, mode], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_no_compiler_runs_eagerly_with_one_warning(tmp_path):
    out = _run_without_compiler("plain", tmp_path)
    warnings = [line for line in out.splitlines() if line.startswith("WARNING")]
    assert len(warnings) == 1 and "no C++ compiler" in warnings[0], out
    assert "failed True" in out


@pytest.mark.slow
def test_failing_compilation_runs_eagerly_with_one_warning(tmp_path):
    """The compiler check is fooled, so torch.compile really runs and inductor's build fails."""
    out = _run_without_compiler("compiler-lies", tmp_path)
    warnings = [line for line in out.splitlines() if line.startswith("WARNING")]
    assert len(warnings) == 1 and "compiling Tiny failed" in warnings[0], out
    assert "failed True dynamo True" in out


@pytest.mark.slow
def test_background_compile_runs_eagerly_until_ready(tmp_path):
    out = _run_without_compiler("background", tmp_path, hide_compiler=False)  # the persistent cache
    assert "failed False" in out and "WARNING" not in out, out


def test_classic_configs_import_no_compiler(tmp_path):
    code = textwrap.dedent('''
        import sys, numpy as np
        from dp2.api import build_anonymizer, anonymize_array
        from dp2.anonymizer import SynthesisOptions
        from helpers import FIXED_CONFIG
        open("cfg.py", "w").write(FIXED_CONFIG.format(generator="GaussianBlur", args="", boxes=[[20, 16, 44, 40]]))
        a = build_anonymizer("cfg.py")
        out = anonymize_array(a, np.full((64, 80, 3), 128, np.uint8), options=SynthesisOptions(compile=True))
        print(sorted(m for m in sys.modules if m.startswith(("torch._dynamo", "torch._inductor"))))
    ''')
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")])}
    proc = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_resolve_precision():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert gc.resolve_precision(None, amp=True, device=cpu) == "fp32"
    assert gc.resolve_precision(None, amp=True, device=cuda) == "fp16"  # DeepPrivacy2's --amp
    assert gc.resolve_precision(None, amp=False, device=cuda) == "fp32"
    assert gc.resolve_precision("bf16", amp=True, device=cuda) == "bf16"
    with pytest.raises(ValueError, match="fp64"):
        gc.resolve_precision("fp64", amp=True, device=cpu)


def test_compile_cache_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    monkeypatch.delenv(gc.COMPILE_CACHE_ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert gc.compile_cache_dir() == tmp_path / "dp2" / "inductor"
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "ind"))
    assert gc.compile_cache_dir() == tmp_path / "ind"
    monkeypatch.setenv(gc.COMPILE_CACHE_ENV_VAR, str(tmp_path / "mine"))
    assert gc.compile_cache_dir() == tmp_path / "mine"


def test_pad_rows():
    x = torch.arange(6.0).view(3, 2)
    padded = gc._pad_rows(x, 4)
    assert padded.shape == (4, 2) and torch.equal(padded[:3], x) and torch.equal(padded[3], x[0])
    assert gc._pad_rows(x, 3) is x and gc._pad_rows(None, 4) is None


def test_bf16_eager_keeps_known_pixels_and_state_dict():
    """bf16 moves channels_last onto the generator but adds nothing to its state_dict."""
    from dp2.generation.build import build_generator

    G = build_generator("fdf256", mini=True)
    keys = list(G.state_dict())
    img = torch.rand(1, 3, 256, 256) * 2 - 1
    mask = torch.ones(1, 1, 256, 256)
    mask[..., 64:192, 64:192] = 0
    with torch.inference_mode():
        w = G.map_latent(torch.randn(1, G.z_channels), 0.5)
        out = gc.run_generator(G, img, mask, w, {}, precision="bf16")
    assert out.dtype == torch.float32
    keep = mask.bool().expand_as(img)
    assert (out[keep] - img[keep]).abs().max() < 1e-2  # known pixels come back (bf16 rounding only)
    assert list(G.state_dict()) == keys
