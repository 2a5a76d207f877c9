"""Per-instance milliseconds of the realistic face and body pipelines: DP2's one-per-call loop vs batched.

Full-size FDF256 / FDF128 (faces) and FDH CSE / no-CSE (bodies, 288x160) generators with random
weights (speed does not depend on the weights), an image with 1, 4 and 16 non-overlapping
instances, the whole stage (crop, generate, resize back, paste). "sequential" is ``batch_size=1``, i.e. DeepPrivacy2's loop; "batched"
puts all independent faces into one generator call. Both run in this process, one after the
other, on the same machine; the table prints their ratio.

Usage: python bench/bench_faces.py [--repeats 3] [--kinds fdf256 fdf128 fdh_cse fdh_nocse] [--threads 2] [--device cpu]
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
from dp2.generation.build import build_generator  # noqa: E402
from dp2.generation.latents import LatentSampler  # noqa: E402
from dp2.detection.full_body import prepare_bodies  # noqa: E402
from dp2.stages import BodyCropStage, FaceCropStage  # noqa: E402
from dp2.structures import FaceDetections  # noqa: E402


def scene(n_faces: int, face: int = 96) -> tuple[torch.Tensor, FaceDetections]:
    """A grey image with ``n_faces`` boxes on a grid far enough apart to be independent."""
    cols = 4 if n_faces > 1 else 1
    rows = (n_faces + cols - 1) // cols
    step = face * 2
    h, w = rows * step + face, cols * step + face
    image = torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    boxes = [[face // 2 + c * step, face // 2 + r * step, face // 2 + c * step + face, face // 2 + r * step + face]
             for r in range(rows) for c in range(cols)][:n_faces]
    dets = FaceDetections(boxes_xyxy=torch.tensor(boxes), scores=torch.ones(n_faces), image_size_hw=(h, w))
    return image, dets


def body_scene(n_persons: int, cse: bool) -> tuple[torch.Tensor, object]:
    """Person-shaped masks on a grid far enough apart to be independent (synthetic CSE inputs)."""
    cols = 4 if n_persons > 1 else 1
    rows = (n_persons + cols - 1) // cols
    ph, pw, step_y, step_x = 180, 80, 420, 260
    h, w = rows * step_y, cols * step_x
    image = torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    masks = torch.zeros(n_persons, h, w, dtype=torch.bool)
    boxes = []
    for k in range(n_persons):
        r, c = divmod(k, cols)
        y0, x0 = r * step_y + 120, c * step_x + 90
        masks[k, y0:y0 + ph, x0:x0 + pw] = True
        boxes.append([x0, y0, x0 + pw, y0 + ph])
    scores = torch.ones(n_persons)
    if not cse:
        return image, prepare_bodies(masks, scores, (h, w))
    g = torch.Generator().manual_seed(1)
    embed_map = torch.nn.functional.normalize(torch.randn(500, 16, generator=g), dim=1)
    return image, prepare_bodies(masks, scores, (h, w), cse_boxes=torch.tensor(boxes),
                                 cse_E=torch.randn(n_persons, 16, 112, 112, generator=g),
                                 cse_S=torch.ones(n_persons, 112, 112, dtype=torch.int64), embed_map=embed_map)


def time_stage(stage, image, dets, repeats: int) -> float:
    options = SynthesisOptions(truncation_value=0.5)
    sampler = LatentSampler(0)
    with torch.inference_mode():
        stage.anonymize(image, dets, next_seed=sampler.next_seed, options=options)  # warm-up
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            stage.anonymize(image, dets, next_seed=sampler.next_seed, options=options)
            if image.device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--kinds", nargs="+", default=["fdf256", "fdf128", "fdh_cse", "fdh_nocse"])
    parser.add_argument("--faces", nargs="+", type=int, default=[1, 4, 16])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--channels-last", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}, median of {args.repeats}")
    header = f"{'generator':10s} {'count':>5s} {'sequential ms/inst':>19s} {'batched ms/inst':>16s} {'speed-up':>9s}"
    print(header)
    print("-" * len(header))
    for kind in args.kinds:
        G = build_generator(kind).to(device).requires_grad_(False)
        if args.channels_last:
            G = G.to(memory_format=torch.channels_last)
        body = kind.startswith("fdh")
        for n in args.faces:
            image, dets = body_scene(n, cse=kind == "fdh_cse") if body else scene(n)
            image, dets = image.to(device), dets.to(device)
            stage = (lambda b: BodyCropStage(generator=G, batch_size=b)) if body else \
                (lambda b: FaceCropStage(generator=G, batch_size=b))
            seq = time_stage(stage(1), image, dets, args.repeats) / n
            bat = time_stage(stage(16), image, dets, args.repeats) / n
            print(f"{kind:10s} {n:5d} {seq * 1000:19.1f} {bat * 1000:16.1f} {seq / bat:8.2f}x")


if __name__ == "__main__":
    main()
