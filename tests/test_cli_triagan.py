"""configs/anonymizers/FB_triagan.py end to end through the CLI, offline, with random weights.

The default run uses the real config file with two parts made small (a copy of the file plus a
two-line variant): ViTPose becomes the conformance mini model and TriA-GAN its reduced-width
variant; Mask R-CNN is full size. ``DP2_FULL_SIZE_TESTS=1`` also runs the unmodified config with
full-size random checkpoints of all three networks found through the weights manager (ViTPose-H
637 M and TriA-GAN 124 M parameters: about 1-2 minutes on 2 CPU cores, so not in the default run).
"""
from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from dp2.cli import main
from dp2.detection.maskrcnn import MASKRCNN_V2_WEIGHTS, build_maskrcnn_v2
from dp2.detection.vitpose import VITPOSE_H_WEIGHTS, ViTPose, VITPOSE_SIZES
from dp2.generation.build import build_generator
from dp2.weights import TRIAGAN_WEIGHTS

from helpers import CONFORMANCE, REPO, make_image

VITPOSE_MINI = CONFORMANCE / "detectors" / "vitpose_mini.pth"
FULL_SIZE = os.environ.get("DP2_FULL_SIZE_TESTS") == "1"


def _maskrcnn_state() -> dict:
    """Random Mask R-CNN biased to find a few large people, with full-box masks: every proposal is
    grown 55x (then clipped to the image), so NMS leaves only a handful."""
    torch.manual_seed(0)
    state = build_maskrcnn_v2().state_dict()
    bias = state["roi_heads.box_predictor.cls_score.bias"]
    bias.fill_(-5.0)
    bias[1] = 8.0
    state["roi_heads.box_predictor.cls_score.weight"].zero_()
    state["roi_heads.box_predictor.bbox_pred.weight"].zero_()
    reg = state["roi_heads.box_predictor.bbox_pred.bias"].view(91, 4)
    reg.zero_()
    reg[1, 2:] = 5 * 4.0  # person: dw = dh = 4, boxes 55x the proposal (box coder weights 10, 10, 5, 5)
    state["roi_heads.mask_predictor.mask_fcn_logits.weight"].zero_()
    state["roi_heads.mask_predictor.mask_fcn_logits.bias"].fill_(3.0)
    return state


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("triagan_weights")
    torch.save(_maskrcnn_state(), d / MASKRCNN_V2_WEIGHTS.filename)
    return d


def _run(config, image_path, out_path, weights_dir, *extra):
    args = [str(config), "-i", str(image_path), "-o", str(out_path), "--weights-dir", str(weights_dir),
            "--no-verify-weights", "-t", "0.5", "--seed", "3", *extra]
    return CliRunner().invoke(main, args, catch_exceptions=False)


@pytest.mark.slow
def test_fb_triagan_config_runs_end_to_end(weights_dir, tmp_path):
    if not VITPOSE_MINI.is_file():
        pytest.skip("../shared/conformance (ViTPose mini weights) not found")
    configs = tmp_path / "configs"
    configs.mkdir()
    shutil.copy(REPO / "configs" / "anonymizers" / "FB_triagan.py", configs / "FB_triagan.py")
    (configs / "small.py").write_text(
        "from dp2.config import LazyCall as L\n"
        "from dp2.generation.build import build_generator\n"
        "from .FB_triagan import anonymizer, detector\n"
        f"detector.keypoint_detector.size = 'vit_mini'\n"
        f"detector.keypoint_detector.weights_path = {str(VITPOSE_MINI)!r}\n"
        "anonymizer.person.generator = L(build_generator)(kind='triagan', mini=True)\n"
        "detector.person_detector.detections_per_image = 2\n")
    arr = make_image(120, 160)
    Image.fromarray(arr).save(tmp_path / "in.png")
    result = _run(configs / "small.py", tmp_path / "in.png", tmp_path / "out.png", weights_dir)
    assert result.exit_code == 0, result.output
    assert "persons" in result.output, result.output
    out = np.array(Image.open(tmp_path / "out.png"))
    assert out.shape == arr.shape and (out != arr).any()


@pytest.mark.slow
@pytest.mark.skipif(not FULL_SIZE, reason="full-size FB_triagan run takes 1-2 min on 2 cores; set DP2_FULL_SIZE_TESTS=1")
def test_fb_triagan_full_size_random_weights(weights_dir, tmp_path):
    torch.manual_seed(1)
    with torch.device("meta"):
        shapes = {k: (v.shape, v.dtype) for k, v in ViTPose(VITPOSE_SIZES["vit_huge"]).state_dict().items()}
    # fp16 halves the 2.5 GB file; loading copies into the fp32 model.
    vit = {}
    for k, (shape, dtype) in shapes.items():
        if dtype != torch.float32:
            vit[k] = torch.zeros(shape, dtype=dtype)
        elif k.endswith(("running_var", "norm1.weight", "norm2.weight", "last_norm.weight")) or (
                "deconv_layers" in k and k.endswith("weight") and len(shape) == 1):
            vit[k] = torch.ones(shape, dtype=torch.float16)
        else:
            vit[k] = (torch.randn(shape) * 0.02).half()
    torch.save({"state_dict": vit}, weights_dir / VITPOSE_H_WEIGHTS.filename)
    del vit
    torch.save({"EMA_generator": build_generator("triagan").state_dict()}, weights_dir / TRIAGAN_WEIGHTS.filename)
    arr = make_image(120, 160)
    Image.fromarray(arr).save(tmp_path / "in.png")
    result = _run(REPO / "configs" / "anonymizers" / "FB_triagan.py", tmp_path / "in.png", tmp_path / "out.png",
                  weights_dir, "--opt", "detector.person_detector.detections_per_image=2")
    assert result.exit_code == 0, result.output
    assert "persons" in result.output, result.output
    out = np.array(Image.open(tmp_path / "out.png"))
    assert out.shape == arr.shape and (out != arr).any()
