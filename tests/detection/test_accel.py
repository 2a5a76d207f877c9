"""Detector speed options (dp2.detection.accel): folding, channels-last, bf16, compile fallback.

Mask R-CNN and DSFD have no golden data from the original (dp2 uses torchvision's Mask R-CNN
and the DSFD package's network), so their optimized default is held against their own
reference path (``optimize=False``) with random weights; CSE is checked on its golden data in
``tests/cse_model/test_cse_speed_modes.py``.
"""
from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from dp2.detection.accel import CompiledOrEager, check_precision, fold_batchnorm_, optimize_for_inference_
from dp2.detection.cse.backbone import FrozenBatchNorm2d, NormConv2d


def _random_bn(bn: nn.Module, gen: torch.Generator, spread: float = 1.0) -> None:
    n = bn.running_mean.numel()
    bn.running_mean.copy_(spread * torch.randn(n, generator=gen))
    bn.running_var.copy_(spread * torch.rand(n, generator=gen) + 1.0 - spread / 2)
    bn.weight.data.copy_(torch.rand(n, generator=gen) + 0.5) if isinstance(bn.weight, nn.Parameter) \
        else bn.weight.copy_(torch.rand(n, generator=gen) + 0.5)
    bn.bias.data.copy_(torch.randn(n, generator=gen)) if isinstance(bn.bias, nn.Parameter) \
        else bn.bias.copy_(torch.randn(n, generator=gen))


def test_folding_is_exact_up_to_rounding_for_every_pattern():
    from torchvision.models.resnet import Bottleneck

    gen = torch.Generator().manual_seed(0)
    seq = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
    block = Bottleneck(8, 2, downsample=nn.Sequential(nn.Conv2d(8, 8, 1, bias=False), nn.BatchNorm2d(8)))
    frozen = NormConv2d(8, 4, 3, padding=1, bias=False, norm=FrozenBatchNorm2d(4))
    model = nn.Sequential(seq, block, frozen).eval()
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm2d, FrozenBatchNorm2d)):
            _random_bn(m, gen)
    x = torch.randn(2, 3, 12, 10, generator=gen)
    with torch.no_grad():
        ref = model(x)
        assert fold_batchnorm_(model) == 6  # seq, bn1..bn3, downsample, FrozenBN
        assert not any(isinstance(m, (nn.BatchNorm2d, FrozenBatchNorm2d)) for m in model.modules())
        torch.testing.assert_close(model(x), ref, atol=1e-5, rtol=1e-5)


def test_training_mode_batch_norm_is_not_folded():
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4)).train()
    assert fold_batchnorm_(model) == 0 and isinstance(model[1], nn.BatchNorm2d)


def test_optimize_makes_the_network_channels_last():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU()).eval()
    optimize_for_inference_(model)
    with torch.no_grad():
        out = model(torch.randn(1, 3, 9, 9))
    assert out.is_contiguous(memory_format=torch.channels_last)


def test_precision_is_validated():
    assert check_precision("bf16") == "bf16"
    with pytest.raises(ValueError, match="'fp16'"):
        check_precision("fp16")


def test_compile_failure_falls_back_to_eager_with_one_warning():
    def broken_compiler(module):
        def run(*args, **kwargs):
            raise RuntimeError("no C++ compiler found")
        return run

    lin = nn.Linear(3, 2)
    wrapped = CompiledOrEager(lin, name="the test module", compiler=broken_compiler)
    x = torch.randn(4, 3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first, second = wrapped(x), wrapped(x)
    assert [str(w.message) for w in caught] == [
        "torch.compile of the test module failed (RuntimeError: no C++ compiler found); running it eagerly"]
    assert wrapped.failed and torch.equal(first, lin(x)) and torch.equal(second, lin(x))
    assert list(wrapped.state_dict()) == ["module.weight", "module.bias"]


def test_without_a_cxx_compiler_detectors_run_eagerly_through_the_shared_check(monkeypatch, tmp_path):
    """Detector backbones use the generators' compiler check and cache folder (one mechanism)."""
    from dp2.generation import compile as gen_compile

    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)  # restored after the test (the check sets it)
    monkeypatch.setenv("DP2_COMPILE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(gen_compile, "find_cxx_compiler", lambda: None)
    monkeypatch.setattr(torch, "compile", lambda *a, **k: pytest.fail("compiled without a compiler"))
    lin = nn.Linear(3, 2)
    wrapped = CompiledOrEager(lin, name="the test module")
    x = torch.randn(4, 3)
    assert torch.equal(wrapped(x), lin(x)) and (tmp_path / "cache").is_dir()


# ------------------------------------------------------------------ Mask R-CNN, random weights

SIZE_HW = (160, 224)


def _maskrcnn(tmp_path, monkeypatch, **kwargs):
    from dp2.detection.maskrcnn import MaskRCNNPersonDetector, build_maskrcnn_v2
    from dp2.weights_catalog import MASKRCNN_V2_WEIGHTS

    path = tmp_path / MASKRCNN_V2_WEIGHTS.filename
    if not path.exists():
        torch.manual_seed(0)
        model = build_maskrcnn_v2()
        gen = torch.Generator().manual_seed(1)
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                _random_bn(m, gen, spread=0.1)
        # persons with distinct scores (no ties), masks that depend on the features
        predictor = model.roi_heads.box_predictor
        predictor.cls_score.weight.mul_(1e-3)  # the box features reach ~1e3
        predictor.bbox_pred.weight.mul_(1e-3)
        predictor.cls_score.bias.fill_(-5.0)
        predictor.cls_score.bias[1] = 5.0
        model.roi_heads.mask_predictor.mask_fcn_logits.bias.fill_(2.0)
        torch.save(model.state_dict(), path)
    monkeypatch.setenv("DP2_VERIFY_WEIGHTS", "0")
    det = MaskRCNNPersonDetector(weights_dir=tmp_path, download=False, device="cpu", min_size=SIZE_HW[0],
                                 max_size=SIZE_HW[1], **kwargs)
    det.model.rpn._pre_nms_top_n["testing"] = 200  # keep the CPU forward fast
    if "proposals" not in kwargs:
        det.model.rpn._post_nms_top_n["testing"] = 100
    return det


@pytest.fixture(scope="module")
def maskrcnn_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("maskrcnn_accel")


@pytest.fixture(scope="module")
def image():
    return torch.randint(0, 256, (3, *SIZE_HW), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))


def test_maskrcnn_optimized_default_equals_the_reference(maskrcnn_dir, image, monkeypatch):
    ref_det = _maskrcnn(maskrcnn_dir, monkeypatch, optimize=False)
    opt_det = _maskrcnn(maskrcnn_dir, monkeypatch)
    assert opt_det.optimize and opt_det.precision == "fp32"
    assert not any(isinstance(m, nn.BatchNorm2d) for m in opt_det.model.modules())
    ref, opt = ref_det(image), opt_det(image)
    assert torch.equal(ref.boxes_xyxy, opt.boxes_xyxy) and torch.equal(ref.masks, opt.masks)
    torch.testing.assert_close(ref.scores, opt.scores, atol=1e-4, rtol=0)

    # bf16 runs end to end with float32/bool outputs. Its fidelity cannot be judged with these
    # random weights (box features reach ~1e3 and masks are signs of large random sums, so
    # boxes move by up to ~20 px): bf16 stays an unvalidated opt-in until real weights check it.
    from dp2.detection.maskrcnn import mask_boxes_xyxy
    bf = _maskrcnn(maskrcnn_dir, monkeypatch, precision="bf16")(image)
    assert len(bf) > 0 and bf.scores.dtype == torch.float32 and bf.masks.dtype == torch.bool
    assert torch.equal(bf.boxes_xyxy, mask_boxes_xyxy(bf.masks))


def test_maskrcnn_proposals_reach_the_rpn(maskrcnn_dir, monkeypatch):
    det = _maskrcnn(maskrcnn_dir, monkeypatch, proposals=300)
    assert det.model.rpn._post_nms_top_n["testing"] == 300
    from dp2.detection.maskrcnn import MaskRCNNPersonDetector
    with pytest.raises(ValueError, match="proposals"):
        MaskRCNNPersonDetector(proposals=0)
    with pytest.raises(ValueError, match="precision"):
        MaskRCNNPersonDetector(precision="half")


# ------------------------------------------------------------------ DSFD, random weights

@pytest.mark.slow
def test_dsfd_optimized_default_equals_the_reference(tmp_path, monkeypatch):
    from dp2.detection import dsfd

    torch.manual_seed(0)
    net = dsfd.build_dsfd_network()
    gen = torch.Generator().manual_seed(2)
    for name, m in net.named_modules():
        if isinstance(m, nn.BatchNorm2d):
            _random_bn(m, gen)
            if name.endswith(".bn3"):
                m.weight.data.mul_(0.1)  # keep 50 residual blocks finite
    torch.save(net.state_dict(), tmp_path / dsfd.DSFD_WEIGHTS.filename)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    image = torch.randint(0, 256, (3, 64, 96), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))

    def detect(**kwargs):
        det = dsfd.DSFDFaceDetector(weights_dir=tmp_path, download=False, device="cpu", score_threshold=0.3,
                                    **kwargs)
        return det(image)

    ref, opt = detect(optimize=False), detect()
    assert len(ref) > 0
    assert torch.equal(ref.boxes_xyxy, opt.boxes_xyxy)
    torch.testing.assert_close(ref.scores, opt.scores, atol=1e-4, rtol=0)
