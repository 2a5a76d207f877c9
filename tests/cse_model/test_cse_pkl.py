"""Restricted unpickler for detectron2 model-zoo files and DensePose vertex features."""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from dp2.detection.cse import (CSEConfig, UnsafePickleError, build_cse_model, load_cse_weights, load_detectron2_pkl,
                               load_pickle_restricted, load_vertex_features)
from dp2.weights import WeightsError

GOLDEN = Path(__file__).resolve().parents[2].parent / "shared" / "conformance" / "cse"


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _EvalEvil:
    def __reduce__(self):
        return (eval, ("1 + 1",))


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_os_system_is_refused(tmp_path, protocol):
    marker = tmp_path / "pwned"
    path = tmp_path / "model_final.pkl"
    path.write_bytes(pickle.dumps({"model": {"x": _Evil(marker)}, "__author__": "x"}, protocol=protocol))
    with pytest.raises(UnsafePickleError) as info:
        load_detectron2_pkl(path)
    message = str(info.value)
    assert str(path) in message and "system" in message
    assert not marker.exists()


def test_builtins_eval_is_refused(tmp_path):
    path = tmp_path / "phi.pkl"
    path.write_bytes(pickle.dumps({"features": _EvalEvil()}))
    with pytest.raises(UnsafePickleError, match=r"builtins\.eval"):
        load_vertex_features(path)


def test_non_latin1_codecs_refused(tmp_path):
    # a hand-written protocol-2 pickle calling _codecs.encode with a different codec
    payload = b"\x80\x02c_codecs\nencode\nq\x00X\x01\x00\x00\x00xX\x05\x00\x00\x00rot13\x86R."
    path = tmp_path / "codec.pkl"
    path.write_bytes(payload)
    with pytest.raises(UnsafePickleError, match="rot13"):
        load_pickle_restricted(path)


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_numpy_round_trip(tmp_path, protocol):
    data = {"model": {"a.weight": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.float64(1.5)},
            "__author__": b"me", "meta": {"scalar": np.int64(3), "t": (1, 2.0, None), "s": {1, 2}}}
    path = tmp_path / "m.pkl"
    path.write_bytes(pickle.dumps(data, protocol=protocol))
    model = load_detectron2_pkl(path)
    assert np.array_equal(model["a.weight"], data["model"]["a.weight"]) and model["a.weight"].dtype == np.float32
    assert model["b"] == 1.5
    assert load_pickle_restricted(path)["meta"] == data["meta"]


def test_module_prefix_stripped(tmp_path):
    path = tmp_path / "m.pkl"
    path.write_bytes(pickle.dumps({"model": {"module.x": np.zeros(2)}, "__author__": "a"}))
    assert list(load_detectron2_pkl(path)) == ["x"]


@pytest.mark.parametrize("obj, match", [
    ({"blobs": {}}, "model-zoo"),
    ({"model": {"x": np.zeros(1)}}, "__author__"),
    ([1, 2], "list"),
    ({"model": {"x": "text"}, "__author__": "a"}, "str"),
])
def test_wrong_layouts(tmp_path, obj, match):
    path = tmp_path / "bad.pkl"
    path.write_bytes(pickle.dumps(obj))
    with pytest.raises(ValueError, match=match):
        load_detectron2_pkl(path)


def test_vertex_features(tmp_path):
    path = tmp_path / "phi_smpl_27554_256.pkl"
    feats = np.random.RandomState(0).randn(5, 4)
    path.write_bytes(pickle.dumps({"features": feats, "other": 1}, protocol=2))
    out = load_vertex_features(path)
    assert list(out) == ["features"] and out["features"].dtype == np.float32
    np.testing.assert_allclose(out["features"], feats, rtol=1e-6)


def test_mini_checkpoint_through_real_loader():
    if not GOLDEN.is_dir():
        pytest.skip("../shared/conformance not found: golden data absent")
    model = load_detectron2_pkl(GOLDEN / "mini_cse.pkl")
    assert len(model) == 357
    assert sum(v.size for v in model.values()) == 789_207
    assert all(v.dtype == np.float32 for v in model.values())


def test_strict_key_check_reports_missing_unexpected_and_shapes():
    cfg = CSEConfig(resnet_depth=50, stem_out_channels=4, res2_out_channels=8, width_per_group=2,
                    fpn_out_channels=32, box_fc_dim=8, decoder_conv_dims=32, decoder_num_classes=32,
                    dp_head_dim=32, dp_num_stacked_convs=1, num_vertices=3, vertex_feature_dim=4)
    model = build_cse_model(cfg)
    state = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    assert load_cse_weights(model, dict(state, pixel_mean=np.zeros(3))) is model  # ignored key
    broken = dict(state)
    del broken["roi_heads.box_head.fc1.bias"]
    broken["roi_heads.extra.weight"] = np.zeros(1, np.float32)
    broken["roi_heads.embedder.embedder_smpl_27554.features"] = np.zeros((7, 4), np.float32)
    with pytest.raises(WeightsError) as info:
        load_cse_weights(model, broken)
    message = str(info.value)
    assert "missing keys: roi_heads.box_head.fc1.bias" in message
    assert "unexpected keys: roi_heads.extra.weight" in message
    assert "embedder_smpl_27554.features: checkpoint [7, 4] vs model [3, 4]" in message
    # state dict values may also be tensors
    load_cse_weights(model, {k: torch.from_numpy(v) for k, v in state.items()})
