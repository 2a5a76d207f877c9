"""configs/anonymizers/face*.py end to end with full-size random-weight checkpoints (no real weights)."""
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from dp2.cli import main
from dp2.generation.build import build_generator
from dp2.weights import DP1_WEIGHTS, FDF128_WEIGHTS, FDF256_WEIGHTS

from helpers import REPO, make_image

BOX = [30, 24, 70, 72]


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory):
    """Random-init full-size generators saved in the official checkpoint layout and file names."""
    d = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    for kind, spec in (("fdf256", FDF256_WEIGHTS), ("fdf128", FDF128_WEIGHTS)):
        G = build_generator(kind)
        torch.save({"EMA_generator": G.state_dict()}, d / spec.filename)
    dp1 = build_generator("deep_privacy1")
    torch.save({"running_average_generator": {"transition_step": 5, "transition_value": 1.0,
                                              "parameters": dp1.state_dict()}}, d / DP1_WEIGHTS.filename)
    return d


@pytest.fixture
def scene(tmp_path):
    arr = make_image(120, 160)
    Image.fromarray(arr).save(tmp_path / "in.png")
    dets = {"version": 1, "items": [{"source": "in.png", "frame": 0, "size_hw": [120, 160], "faces": [{"box": BOX, "score": 0.9}]}]}
    (tmp_path / "dets.json").write_text(json.dumps(dets))
    return tmp_path, arr


@pytest.mark.slow
@pytest.mark.parametrize("config", ["face.py", "face_fdf128.py", "deep_privacy1.py"])
def test_face_configs_run_with_random_full_size_weights(weights_dir, scene, config):
    tmp, arr = scene
    args = [str(REPO / "configs" / "anonymizers" / config), "-i", str(tmp / "in.png"), "-o", str(tmp / "out.png"),
            "--weights-dir", str(weights_dir), "--no-verify-weights", "--detections", str(tmp / "dets.json"),
            "-t", "0.5", "--seed", "3"]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    out = np.array(Image.open(tmp / "out.png"))
    x0, y0, x1, y1 = BOX
    changed = np.any(out != arr, axis=2)
    assert changed[y0:y1, x0:x1].mean() > 0.9, "the face box is regenerated"
    ys, xs = np.nonzero(changed)
    # Only the face box (plus rounding of the resized mask) is ever pasted.
    assert xs.min() >= x0 - 2 and xs.max() <= x1 + 1 and ys.min() >= y0 - 2 and ys.max() <= y1 + 1


def test_unverified_weights_are_refused_without_the_flag(weights_dir, scene, monkeypatch):
    import dp2.weights as weights

    monkeypatch.setattr(weights, "_download", lambda *a, **k: (_ for _ in ()).throw(OSError("offline test")))
    tmp, _ = scene
    args = [str(REPO / "configs" / "anonymizers" / "face.py"), "-i", str(tmp / "in.png"), "-o", str(tmp / "out.png"),
            "--weights-dir", str(weights_dir), "--detections", str(tmp / "dets.json")]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 1
    assert FDF256_WEIGHTS.filename in result.output and FDF256_WEIGHTS.md5 in result.output
    assert not (tmp / "out.png").exists()
