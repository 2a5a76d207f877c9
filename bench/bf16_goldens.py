"""What ``--precision bf16`` changes on the golden cases: uint8 max / mean / share > 2 levels.

Eager bf16 (CPU autocast, channels_last) against the ORIGINAL DeepPrivacy2's fp32 outputs in
../shared/conformance: the mini generators' batch-2 outputs (t = 0.5) and the end-to-end face runs,
over the anonymized region (pixels outside it never change). The numbers are quoted in
dp2/generation/compile.py and the README (Precision).

Usage: python bench/bf16_goldens.py
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from dp2.generation import compile as gc  # noqa: E402
from dp2.generation.build import build_generator  # noqa: E402
from dp2.weights import load_checkpoint, load_generator_state  # noqa: E402
from helpers import CONFORMANCE  # noqa: E402


def _u8(x: torch.Tensor) -> torch.Tensor:
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.int16)


def _stats(a: torch.Tensor, b: torch.Tensor, region: torch.Tensor) -> str:
    d = (a - b).abs()
    v = d[region.expand_as(d)]
    return f"max {int(d.max()):3d}  mean {float(v.float().mean()):.2f}  >2 levels {100 * float((v > 2).float().mean()):5.1f}%"


def main() -> None:
    torch.set_num_threads(2)
    for kind in ["fdf256", "fdf128", "fdh_cse", "fdh_nocse"]:
        G = build_generator(kind, mini=True)
        load_generator_state(G, load_checkpoint(CONFORMANCE / "generators" / f"{kind}_mini.ckpt"))
        G.eval()
        with np.load(CONFORMANCE / "generators" / f"{kind}_mini.npz") as data:
            g = {k: torch.from_numpy(data[k]) for k in data.files}
        img = (g["img_uint8"].float() - 127.5) / 127.5
        cond = {"embedding": g["embedding"], "E_mask": g["E_mask"]} if "embedding" in g else {}
        with torch.inference_mode():
            w = G.map_latent(g["z"], 0.5)
            out = _u8(gc.run_generator(G, img, g["mask"], w, cond, precision="bf16"))
        print(f"generator {kind:9s} out_b2_trunc05  {_stats(out, _u8(g['out_b2_trunc05']), g['mask'] < 0.5)}")
    import test_e2e_faces_conformance as faces

    meta = json.loads((CONFORMANCE / "end_to_end" / "e2e_faces.json").read_text())
    arrays = np.load(CONFORMANCE / "end_to_end" / "e2e_faces.npz")
    golden = (CONFORMANCE, {r["name"]: r for r in meta["runs"]}, arrays)
    image = torch.from_numpy(arrays["input_image"].astype(np.int16))
    for name in faces.RUNS:
        out, expected, _ = faces.run_faces(golden, name, 1, precision="bf16")
        o, e = torch.from_numpy(out.astype(np.int16)), torch.from_numpy(expected.astype(np.int16))
        print(f"end to end {name:18s} {_stats(o, e, (e != image).any(0, keepdim=True))}")


if __name__ == "__main__":
    main()
