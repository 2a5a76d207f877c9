"""Full-body detection speed per stage: eager (the DeepPrivacy2 proxy) vs dp2's default vs bf16.

Full-size networks with random weights (speed does not depend on the weights; real weights
cannot be downloaded here): torchvision Mask R-CNN v2 (R-50-FPN), DensePose CSE R-101-FPN-DL
and DSFD (ResNet-152). The random heads are biased so that exactly 3 persons come out of Mask
R-CNN and of CSE (``detections_per_image=3``), as in a realistic photo; DSFD's threshold is set
above its random scores (no faces, so post-processing costs what it costs on a real photo).
The image is ``../shared/corpus/images/fr_two_people.jpg`` resized to 1024x683 (a synthetic
image when the corpus is absent).

Variants, all timed in this one process, alternating (A, B, C, A, B, C, ...), medians after a
warm-up, load average printed:

* ``eager``: ``optimize=False``, fp32, the networks as built (DeepPrivacy2's numerics);
* ``optimized``: ``optimize=True``: channels-last, batch norms folded (Mask R-CNN, DSFD);
  channels-last only for CSE, where it is opt-in;
* ``bf16``: ``optimize=True, precision="bf16"`` (opt-in).

Each stage's GFLOP (counted on one eager call) and its floor, GFLOP / the machine's best 3x3
convolution rate in fp32 and bf16 (``bench/roofline.py``), are printed beside the times: a
target below the floor needs less arithmetic, not faster code.

``default`` is what a plain ``FB_cse_mask_face.py`` run uses: optimized Mask R-CNN and DSFD,
eager CSE (its golden stages stay exact only that way).

Usage: python bench/bench_detection_speed.py [--quick] [--repeats 3] [--threads 2]
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from roofline import peaks  # noqa: E402

from dp2.detection.accel import inference_autocast  # noqa: E402
from dp2.detection.cse import CSEConfig, CSEDetector, build_cse_model  # noqa: E402
from dp2.detection.cse.model import preprocess_image  # noqa: E402
from dp2.detection.dsfd import DSFDFaceDetector, build_dsfd_network, preprocess_dsfd  # noqa: E402
from dp2.detection.full_body import FullBodyDetector  # noqa: E402
from dp2.detection.maskrcnn import MaskRCNNPersonDetector, build_maskrcnn_v2  # noqa: E402

CORPUS_IMAGE = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "images" / "fr_two_people.jpg"
SIZE_HW = (683, 1024)
PERSONS = 3
VARIANTS = {"eager": dict(optimize=False), "optimized": dict(optimize=True),
            "bf16": dict(optimize=True, precision="bf16")}
DEFAULT = {"maskrcnn": "optimized", "cse": "eager", "dsfd": "optimized"}


def bench_image() -> torch.Tensor:
    """uint8 [3, 683, 1024]: the corpus photo with two people, or noise when it is absent."""
    from torchvision.transforms.functional import resize
    if CORPUS_IMAGE.is_file():
        from torchvision.io import read_image
        return resize(read_image(str(CORPUS_IMAGE))[:3], list(SIZE_HW), antialias=True).contiguous()
    return torch.randint(0, 256, (3, *SIZE_HW), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


# ----------------------------------------------------------------------------- random models

def random_maskrcnn() -> nn.Module:
    torch.manual_seed(0)
    model = build_maskrcnn_v2(detections_per_image=PERSONS, score_threshold=0.3)
    predictor = model.roi_heads.box_predictor
    predictor.cls_score.weight.mul_(1e-3)  # every proposal is a person (~0.99)
    predictor.cls_score.bias.fill_(-5.0)
    predictor.cls_score.bias[1] = 5.0
    predictor.bbox_pred.weight.mul_(1e-3)
    model.roi_heads.mask_predictor.mask_fcn_logits.bias.fill_(2.0)
    return model


def random_cse(cfg: CSEConfig) -> nn.Module:
    torch.manual_seed(0)
    model = build_cse_model(cfg)
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
        if name.endswith(".conv3.norm"):
            module.weight.fill_(0.2)  # keep 33 residual blocks finite
    # random box deltas on features of ~1e3 push every box off the image: decode to the anchors
    # and proposals instead, so the RPN keeps its 1000 proposals and the box head 3 persons
    model.proposal_generator.rpn_head.anchor_deltas.weight.zero_()
    model.roi_heads.box_predictor.bbox_pred.weight.zero_()
    cls = model.roi_heads.box_predictor.cls_score
    cls.weight.zero_()
    cls.bias.copy_(torch.tensor([5.0, -5.0]))  # row 0 = person: every proposal passes 0.3
    return model


def random_dsfd() -> nn.Module:
    torch.manual_seed(0)
    net = build_dsfd_network()
    for name, module in net.named_modules():
        if name.endswith(".bn3"):
            nn.init.zeros_(module.weight)  # 50 residual blocks stay finite (as tests/detection)
    return net


def build_detectors(variant: str, models: dict) -> dict:
    """Detectors of one variant around copies of the random models (no weight files)."""
    import copy
    kwargs = VARIANTS[variant]
    mr = MaskRCNNPersonDetector(device="cpu", detections_per_image=PERSONS, **kwargs)
    mr._model = mr._prepare(copy.deepcopy(models["maskrcnn"]))
    cse = CSEDetector(device="cpu", config=models["cse_cfg"], **kwargs)
    cse._model = cse._prepare(copy.deepcopy(models["cse"]))
    face = DSFDFaceDetector(device="cpu", score_threshold=0.99, **kwargs)
    face._model = face._prepare(copy.deepcopy(models["dsfd"]))
    return {"maskrcnn": mr, "cse": cse, "dsfd": face}


# ----------------------------------------------------------------------------- stage timers

_COUNT_FLOPS = False  # set by count_stage_gflop: _timed records GFLOP instead of seconds


def _timed(out: dict, key: str, fn, *args):
    if _COUNT_FLOPS:
        from torch.utils.flop_counter import FlopCounterMode
        with FlopCounterMode(display=False) as counter:
            result = fn(*args)
        out[key] = counter.get_total_flops() / 1e9
        return result
    t = time.perf_counter()
    result = fn(*args)
    out[key] = time.perf_counter() - t
    return result


def count_stage_gflop(stage_fn, det, image: torch.Tensor) -> dict:
    """GFLOP of each stage of ``stage_fn(det, image)`` (one call, counted, not timed)."""
    global _COUNT_FLOPS
    _COUNT_FLOPS = True
    try:
        return stage_fn(det, image)
    finally:
        _COUNT_FLOPS = False


@torch.no_grad()
def maskrcnn_stages(det: MaskRCNNPersonDetector, image: torch.Tensor) -> dict:
    """Seconds per stage of one Mask R-CNN forward, run stage by stage as torchvision does."""
    from torchvision.models.detection.roi_heads import maskrcnn_inference
    m, t = det.model, {}
    x = image.float() / 255
    with inference_autocast(det.device, det.precision):
        images, _ = _timed(t, "preprocess", m.transform, [x])
        feats = _timed(t, "backbone+FPN", m.backbone, images.tensors)
        proposals, _ = _timed(t, "RPN", m.rpn, images, feats)
        rh, sizes = m.roi_heads, images.image_sizes

        def box_head():
            f = rh.box_head(rh.box_roi_pool(feats, proposals, sizes))
            return rh.postprocess_detections(*rh.box_predictor(f), proposals, sizes)

        boxes, scores, labels = _timed(t, "box head", box_head)

        def mask_head():
            logits = rh.mask_predictor(rh.mask_head(rh.mask_roi_pool(feats, boxes, sizes)))
            probs = maskrcnn_inference(logits, labels)
            res = [{"boxes": boxes[0], "labels": labels[0], "scores": scores[0], "masks": probs[0]}]
            return m.transform.postprocess(res, sizes, [tuple(image.shape[1:])])

        out = _timed(t, "mask head", mask_head)
    t["persons"] = len(out[0]["boxes"])
    return t


@torch.no_grad()
def cse_stages(det: CSEDetector, image: torch.Tensor) -> dict:
    m, t = det.model, {}
    with inference_autocast(det.device, det.precision):
        x, size_hw = _timed(t, "preprocess", preprocess_image, image, det.config)
        feats = _timed(t, "backbone+FPN", m.backbone, x)
        proposals, _ = _timed(t, "RPN", m.proposal_generator, feats, size_hw)
        boxes, _, _ = _timed(t, "box head", m.roi_heads.forward_box, feats, proposals, size_hw, det.score_threshold)
        _timed(t, "CSE head", m.roi_heads.forward_densepose, feats, boxes)
    t["persons"] = len(boxes)
    return t


@torch.no_grad()
def dsfd_stages(det: DSFDFaceDetector, image: torch.Tensor) -> dict:
    t = {}
    _timed(t, "network+post", det, image)
    return t


def full_body_stages(dets: dict, image: torch.Tensor) -> dict:
    """Seconds of each detector inside ``FullBodyDetector`` (FB_cse_mask_face.py), and in all."""
    t = {}

    def wrap(name, fn):
        return lambda im: _timed(t, name, fn, im)

    fb = FullBodyDetector(person_detector=wrap("Mask R-CNN", dets["maskrcnn"]), cse_detector=wrap("CSE", dets["cse"]),
                          face_detector=wrap("DSFD", dets["dsfd"]))
    start = time.perf_counter()
    out = fb(image)
    t["total"] = time.perf_counter() - start
    t["combine"] = t["total"] - t["Mask R-CNN"] - t["CSE"] - t["DSFD"]
    t["bodies"] = len(out.persons or []) + len(out.cse_persons or [])
    return t


# ----------------------------------------------------------------------------- the table

def _median(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def detection_table(quick: bool, *, repeats: int | None = None, threads: int = 2) -> str:
    """Run the benchmark and return the Markdown tables (see the module docstring).

    Args:
        quick: 2 timed rounds after one warm-up, without the opt-in CSE channels-last run
            (about 4 minutes on a quiet 2-core CPU, 10 under a load average of 5); else
            ``repeats`` rounds of everything.
        repeats: timed rounds (default 2 quick, 4 otherwise).
        threads: ``torch.set_num_threads``.
    """
    torch.set_num_threads(threads)
    repeats = repeats or (2 if quick else 4)
    image = bench_image()
    cse_cfg = dataclasses.replace(CSEConfig(), detections_per_image=PERSONS)
    models = {"maskrcnn": random_maskrcnn(), "cse": random_cse(cse_cfg), "cse_cfg": cse_cfg, "dsfd": random_dsfd()}
    detectors = {v: build_detectors(v, models) for v in VARIANTS}
    del models
    stage_fns = {"maskrcnn": maskrcnn_stages, "cse": cse_stages, "dsfd": dsfd_stages}
    runs = {(v, k): [] for v in VARIANTS for k in [*stage_fns, "full"]}
    defaults = {k: detectors[DEFAULT[k]][k] for k in DEFAULT}
    full_sets = {"eager": detectors["eager"], "default": defaults, "bf16": detectors["bf16"]}
    full_runs = {name: [] for name in full_sets}
    loads = []
    peak = peaks()
    for rnd in range(repeats + 1):  # round 0 is the warm-up
        for v in VARIANTS:
            for k, fn in stage_fns.items():
                if quick and (v, k) == ("optimized", "cse"):
                    continue  # channels-last CSE is opt-in only
                r = fn(detectors[v][k], image)
                if rnd:
                    runs[(v, k)].append(r)
        for name, dets in full_sets.items():
            r = full_body_stages(dets, image)
            if rnd:
                full_runs[name].append(r)
        loads.append(os.getloadavg()[0])
    gflop = {k: count_stage_gflop(fn, detectors["eager"][k], image) for k, fn in stage_fns.items()}
    peak = peaks(previous=peak)  # the best of before and after the runs

    lines = [f"Detection on a {SIZE_HW[1]}x{SIZE_HW[0]} image, {PERSONS} persons, {threads} threads, "
             f"median of {repeats} alternating rounds after a warm-up; load average per round "
             f"{', '.join(f'{x:.1f}' for x in loads)}.", "",
             f"GFLOP counted on one eager call; floors = GFLOP / this machine's 3x3 convolution peak "
             f"(fp32 {peak['fp32']:.0f}, bf16 {peak['bf16']:.0f} GFLOP/s, bench/roofline.py): no variant computing the "
             f"same arithmetic runs faster.", "",
             "| model | stage | eager s | optimized s | bf16 s | default | default vs eager | bf16 vs eager "
             "| GFLOP | fp32 floor s | bf16 floor s |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    names = {"maskrcnn": "Mask R-CNN v2", "cse": "CSE R-101", "dsfd": "DSFD R-152"}
    for k in stage_fns:
        keys = [s for s in runs[("eager", k)][0] if s != "persons"]
        for stage in [*keys, "sum"]:
            med = {"optimized": float("nan")}  # "nan": not run (quick mode)
            for v in VARIANTS:
                rs = runs[(v, k)]
                if not rs:
                    continue
                med[v] = (statistics.median(sum(r[s] for s in keys) for r in rs) if stage == "sum"
                          else _median(rs, stage))
            d = DEFAULT[k]
            g = sum(gflop[k][s] for s in keys) if stage == "sum" else gflop[k][stage]
            lines.append(f"| {names[k]} | {stage} | {med['eager']:.3f} | {med['optimized']:.3f} | {med['bf16']:.3f} | "
                         f"{d} | {med['eager'] / med[d]:.2f}x | {med['eager'] / med['bf16']:.2f}x "
                         f"| {g:.1f} | {g / peak['fp32']:.3f} | {g / peak['bf16']:.3f} |")
    persons = {v: runs[(v, "maskrcnn")][0].get("persons") for v in VARIANTS}
    cse_persons = {v: runs[(v, "cse")][0].get("persons") for v in VARIANTS if runs[(v, "cse")]}
    lines += ["", f"Persons found: Mask R-CNN {persons}, CSE {cse_persons}.", "",
              "Full `FB_cse_mask_face.py` detection (`FullBodyDetector` with all three detectors), s per image:", "",
              "| stage | eager | default | bf16 | default vs eager | bf16 vs eager | fp32 floor | bf16 floor |",
              "|---|---|---|---|---|---|---|---|"]
    work = {k: sum(v for key, v in gflop[k].items() if key != "persons") for k in stage_fns}
    total = {"Mask R-CNN": work["maskrcnn"], "CSE": work["cse"], "DSFD": work["dsfd"], "combine": 0.0,
             "total": sum(work.values()), "Mask R-CNN + CSE": work["maskrcnn"] + work["cse"]}
    for stage in ("Mask R-CNN", "CSE", "DSFD", "combine", "total", "Mask R-CNN + CSE"):
        if stage == "Mask R-CNN + CSE":
            med = {n: _median(full_runs[n], "Mask R-CNN") + _median(full_runs[n], "CSE") for n in full_sets}
        else:
            med = {n: _median(full_runs[n], stage) for n in full_sets}
        lines.append(f"| {stage} | {med['eager']:.3f} | {med['default']:.3f} | {med['bf16']:.3f} | "
                     f"{med['eager'] / med['default']:.2f}x | {med['eager'] / med['bf16']:.2f}x "
                     f"| {total[stage] / peak['fp32']:.3f} | {total[stage] / peak['bf16']:.3f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 timed rounds (a few minutes)")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    print(detection_table(args.quick, repeats=args.repeats, threads=args.threads))


if __name__ == "__main__":
    main()
