"""Whole face pipeline vs the ORIGINAL DeepPrivacy2 (conformance/end_to_end/e2e_faces)."""
import json

import numpy as np
import pytest
import torch

from dp2.anonymizer import Anonymizer, SynthesisOptions
from dp2.detection.fixed import FixedFaceDetector
from dp2.generation.build import build_generator
from dp2.generation.latents import LatentSampler
from dp2.stages import FaceCropStage
from dp2.structures import Detections, FaceDetections
from dp2.weights import load_checkpoint, load_generator_state

RUNS = ["a1_face256_t0", "a2_face256_t05", "a3_face256_mt_t05", "a4_face128_t1"]


@pytest.fixture(scope="module")
def golden(request):
    from helpers import CONFORMANCE

    if not CONFORMANCE.is_dir():
        pytest.skip("../shared/conformance not found: golden data absent")
    meta = json.loads((CONFORMANCE / "end_to_end" / "e2e_faces.json").read_text())
    arrays = np.load(CONFORMANCE / "end_to_end" / "e2e_faces.npz")
    return CONFORMANCE, {run["name"]: run for run in meta["runs"]}, arrays


def mini_generator(conformance, kind):
    G = build_generator(kind, mini=True)
    load_generator_state(G, load_checkpoint(conformance / "generators" / f"{kind}_mini.ckpt"))
    return G.eval()


def run_faces(golden, name, batch_size, **speed):
    """Run ``name`` through dp2's face stage; returns (output, expected) uint8 [3, H, W] arrays."""
    conformance, runs, arrays = golden
    run = runs[name]
    G = mini_generator(conformance, run["G"])
    stage = FaceCropStage(generator=G, expansion="fdf128" if run["fdf128"] else "simple", batch_size=batch_size)
    anonymizer = Anonymizer(detector=FixedFaceDetector(boxes=[]), face=stage)
    image = torch.from_numpy(arrays["input_image"])
    boxes = torch.from_numpy(arrays["face_boxes"])
    # The original detector stub handed these boxes over unclipped (box 2 leaves the image).
    dets = Detections(image_size_hw=tuple(image.shape[1:]),
                      faces=FaceDetections(boxes_xyxy=boxes, scores=torch.ones(len(boxes)),
                                           image_size_hw=tuple(image.shape[1:])))
    sampler = LatentSampler(run["seed"])
    drawn = []

    def next_seed():
        drawn.append(sampler.next_seed())
        return drawn[-1]

    options = SynthesisOptions(truncation_value=run["t"], multi_modal_truncation=run["mt"], **speed)
    out = anonymizer.anonymize(image, dets, next_seed=next_seed, options=options).numpy()
    assert drawn == [c["z_idx"] for c in run["generator_calls"]]
    return out, arrays[f"{name}_output_image"], G


@pytest.mark.parametrize("batch_size", [1, 16])
@pytest.mark.parametrize("name", RUNS)
def test_e2e_faces(golden, name, batch_size):
    out, expected, _ = run_faces(golden, name, batch_size)
    diff = np.abs(out.astype(int) - expected.astype(int))
    assert diff.max() <= 1, f"max diff {diff.max()}"
    assert (diff > 0).sum() <= 10, f"{(diff > 0).sum()} values differ by 1"


@pytest.mark.slow
def test_e2e_faces_compiled(golden):
    """--compile: the same goldens within the same tolerance (1 level on at most a few values).

    One model (FDF256 mini), batch 4 so the batch path is compiled too; compiling takes seconds
    with a warm cache (~/.cache/dp2/inductor), tens of seconds cold.
    """
    out, expected, G = run_faces(golden, "a2_face256_t05", 4, compile=True)
    state = G.__dict__["_dp2_compiled"]
    assert not state.failed and set(state.functions) == {"fp32"}, "the generator did not run compiled"
    diff = np.abs(out.astype(int) - expected.astype(int))
    assert diff.max() <= 1, f"max diff {diff.max()}"
    assert (diff > 0).sum() <= 10, f"{(diff > 0).sum()} values differ by 1"


def test_e2e_faces_bf16_changes_only_the_faces(golden):
    """--precision bf16: generated faces move by some levels (see dp2.generation.compile), the rest
    of the image is exact, and the fp32 default is untouched by a bf16 run before it."""
    out, expected, _ = run_faces(golden, "a2_face256_t05", 1, precision="bf16")
    diff = np.abs(out.astype(int) - expected.astype(int))
    boxes = golden[2]["face_boxes"]
    outside = np.ones(diff.shape[1:], bool)
    for x0, y0, x1, y1 in boxes:
        outside[max(y0 - 2, 0):y1 + 2, max(x0 - 2, 0):x1 + 2] = False
    assert diff[:, outside].max() == 0, "bf16 changed pixels outside the faces"
    assert 0 < diff.max() <= 40, f"max diff {diff.max()}"
    assert diff.mean() < 1.0, f"mean diff {diff.mean():.3f}"
