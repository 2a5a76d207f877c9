"""Seconds per person of FB_triagan's two networks: ViTPose-H keypoints and the TriA-GAN generator.

Full-size models with random weights (speed does not depend on the weights), fp32, batch 1 (one
person per call, as DeepPrivacy2 runs them) and, for ViTPose-H, a batch of 4 (dp2's detector
batches persons). "TriA-GAN stage" is the whole body stage for one person: crop, keypoint and
joint maps, generator, resize back and paste. With ``--compile`` the networks are also run after
``torch.compile`` (inductor; the first call compiles, its time is printed separately).

Usage: python bench/bench_triagan.py [--repeats 3] [--threads 2] [--device cpu] [--compile]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dp2.anonymizer import SynthesisOptions  # noqa: E402
from dp2.detection.full_body import prepare_bodies  # noqa: E402
from dp2.detection.vitpose import build_vitpose  # noqa: E402
from dp2.generation.build import build_generator  # noqa: E402
from dp2.generation.latents import LatentSampler  # noqa: E402
from dp2.ops.joint_map import body_keypoint_conditions  # noqa: E402
from dp2.stages import BodyCropStage  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def median_time(fn, repeats: int, device: torch.device) -> tuple[float, float]:
    """(first call, median of ``repeats`` further calls) in seconds."""
    start = time.perf_counter()
    fn()
    _sync(device)
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return first, statistics.median(times)


def person_keypoints() -> torch.Tensor:
    """A standing person's 17 COCO keypoints, crop-relative, all visible."""
    xy = [(0.5, 0.12), (0.47, 0.1), (0.53, 0.1), (0.44, 0.11), (0.56, 0.11), (0.38, 0.25), (0.62, 0.25),
          (0.33, 0.4), (0.67, 0.4), (0.31, 0.53), (0.69, 0.53), (0.42, 0.55), (0.58, 0.55), (0.42, 0.73),
          (0.58, 0.73), (0.42, 0.92), (0.58, 0.92)]
    return torch.tensor([[x, y, 1.0] for x, y in xy])[None]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile'd networks")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    rows: list[tuple[str, float, float, int]] = []

    vit = build_vitpose("vit_huge").to(device)
    with torch.inference_mode():
        for batch in (1, 4):
            x = torch.randn(batch, 3, 256, 192, device=device)
            first, med = median_time(lambda: vit(x), args.repeats, device)
            rows.append((f"ViTPose-H eager, batch {batch}", first / batch, med / batch, batch))
        if args.compile:
            compiled = torch.compile(vit)
            x = torch.randn(1, 3, 256, 192, device=device)
            first, med = median_time(lambda: compiled(x), args.repeats, device)
            rows.append(("ViTPose-H compiled, batch 1", first, med, 1))
    del vit

    G = build_generator("triagan").to(device)
    img = torch.rand(1, 3, 288, 160, device=device) * 2 - 1
    mask = torch.ones(1, 1, 288, 160, device=device)
    mask[..., 40:260, 40:120] = 0
    cond = body_keypoint_conditions(None, torch.tensor([[0, 0, 160, 288]]), mask.bool().cpu(), (288, 160))
    cond["keypoints"] = person_keypoints()
    cond = {k: v.to(device) for k, v in cond.items()}
    with torch.inference_mode():
        w = G.map_latent(torch.randn(1, G.z_channels, device=device), 0.5)
        first, med = median_time(lambda: G(img, mask, w, **cond), args.repeats, device)
        rows.append(("TriA-GAN L eager, generator", first, med, 1))
        if args.compile:
            compiled = torch.compile(G)
            first, med = median_time(lambda: compiled(img, mask, w, **cond), args.repeats, device)
            rows.append(("TriA-GAN L compiled, generator", first, med, 1))

    # The whole body stage for one person (crop, conditions, generator, paste).
    h, wd = 420, 260
    seg = torch.zeros(1, h, wd, dtype=torch.bool)
    seg[0, 120:300, 90:170] = True
    bodies = prepare_bodies(seg, torch.ones(1), (h, wd))
    kp = person_keypoints()
    box = bodies.boxes_xyxy[0].float()
    kp_img = kp.clone()
    kp_img[..., 0] = box[0] + kp[..., 0] * (box[2] - box[0])
    kp_img[..., 1] = box[1] + kp[..., 1] * (box[3] - box[1])
    from dataclasses import replace

    bodies = replace(bodies, keypoints=kp_img)
    image = torch.randint(0, 256, (3, h, wd), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    stage = BodyCropStage(generator=G, batch_size=1)
    sampler = LatentSampler(0)
    options = SynthesisOptions(truncation_value=0.5)
    with torch.inference_mode():
        first, med = median_time(lambda: stage.anonymize(image.to(device), bodies.to(device),
                                                         next_seed=sampler.next_seed, options=options),
                                 args.repeats, device)
    rows.append(("TriA-GAN L eager, whole stage", first, med, 1))

    print(f"device {device}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
          f"{args.repeats} timed runs after one untimed")
    print(f"| {'what':<32} | {'s / person (median)':>20} | {'first call s / person':>22} |")
    print(f"|{'-' * 34}|{'-' * 22}|{'-' * 24}|")
    for name, first, med, _ in rows:
        print(f"| {name:<32} | {med:>20.2f} | {first:>22.2f} |")


if __name__ == "__main__":
    main()
