"""FB_* configs end to end with full-size random-weight checkpoints, offline, no detectron2."""
import pickle

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from dp2.cli import main
from dp2.detection import dsfd
from dp2.detection.cse import CSE_WEIGHTS, build_cse_model
from dp2.detection.maskrcnn import MASKRCNN_V2_WEIGHTS, build_maskrcnn_v2
from dp2.generation.build import build_generator
from dp2.weights import FDF256_WEIGHTS, FDH_CSE_WEIGHTS, FDH_NOCSE_WEIGHTS

from helpers import REPO, make_image


def _favour_person(state: dict, prefix: str, person: int) -> None:
    """Bias a random box classifier towards 'person' so the random detectors find people."""
    bias = state[f"{prefix}.cls_score.bias"]
    bias.fill_(-5.0)
    bias[person] = 8.0
    state[f"{prefix}.cls_score.weight"].zero_()


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("fb_weights")
    torch.manual_seed(0)
    maskrcnn = build_maskrcnn_v2().state_dict()
    _favour_person(maskrcnn, "roi_heads.box_predictor", 1)
    maskrcnn["roi_heads.mask_predictor.mask_fcn_logits.weight"].zero_()
    maskrcnn["roi_heads.mask_predictor.mask_fcn_logits.bias"].fill_(3.0)
    torch.save(maskrcnn, d / MASKRCNN_V2_WEIGHTS.filename)
    cse = {k: v.clone() for k, v in build_cse_model().state_dict().items()}
    for k, v in cse.items():
        if k.endswith("running_var"):
            v.fill_(1.0)
    _favour_person(cse, "roi_heads.box_predictor", 0)
    (d / CSE_WEIGHTS.filename).write_bytes(pickle.dumps(
        {"model": {k: v.numpy() for k, v in cse.items()}, "__author__": "random"}, protocol=4))
    net = dsfd.build_dsfd_network()
    for name, module in net.named_modules():
        if name.endswith(".bn3"):
            torch.nn.init.zeros_(module.weight)
    state = net.state_dict()
    # Random DSFD finds faces at nearly every anchor (each then costs a full FDF256 call): make the
    # confidence heads say "background" (level 0: max(c0..c2) is background; other levels: c3 is).
    for key in [k for k in state if k.startswith("conf.") and k.endswith("conv4.bias")]:
        level = int(key.split(".")[1])
        state[key.replace("bias", "weight")].zero_()
        bias = state[key]
        bias[:] = -5.0
        bias[0:3 if level == 0 else 0] = 5.0
        if level != 0:
            bias[3] = 5.0
    torch.save(state, d / dsfd.DSFD_WEIGHTS.filename)
    for kind, spec in (("fdf256", FDF256_WEIGHTS), ("fdh_cse", FDH_CSE_WEIGHTS), ("fdh_nocse", FDH_NOCSE_WEIGHTS)):
        torch.save({"EMA_generator": build_generator(kind).state_dict()}, d / spec.filename)
    return d


@pytest.mark.slow
def test_fb_cse_mask_face_runs_end_to_end(weights_dir, tmp_path):
    arr = make_image(120, 160)
    Image.fromarray(arr).save(tmp_path / "in.png")
    args = [str(REPO / "configs" / "anonymizers" / "FB_cse_mask_face.py"), "-i", str(tmp_path / "in.png"),
            "-o", str(tmp_path / "out.png"), "--weights-dir", str(weights_dir), "--no-verify-weights", "-t", "0.5"]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    out = np.array(Image.open(tmp_path / "out.png"))
    assert out.shape == arr.shape
    assert "persons" in result.output, result.output
    assert (out != arr).any(), "the random detectors were biased to find people: something must change"


@pytest.mark.slow
def test_missing_nocse_weights_fall_back_to_blur(weights_dir, tmp_path, monkeypatch, caplog):
    import dp2.weights as weights

    monkeypatch.setattr(weights, "_download", lambda *a, **k: (_ for _ in ()).throw(OSError("offline test")))
    partial = tmp_path / "w"
    partial.mkdir()
    for f in weights_dir.iterdir():
        if f.name != FDH_NOCSE_WEIGHTS.filename:
            (partial / f.name).symlink_to(f)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    Image.fromarray(make_image(120, 160)).save(tmp_path / "in.png")
    args = [str(REPO / "configs" / "anonymizers" / "FB_cse.py"), "-i", str(tmp_path / "in.png"),
            "-o", str(tmp_path / "out.png"), "--weights-dir", str(partial), "--no-verify-weights"]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out.png").exists()
