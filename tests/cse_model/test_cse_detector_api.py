"""CSEDetector / CSEDetections behaviour that needs no golden data (a tiny random model)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from dp2.detection.cse import (CSE_WEIGHTS, CSEConfig, CSEDetections, CSEDetector, CSEModelOutput, build_cse_model,
                               config_from_detectron2_yaml, postprocess_cse)
from dp2.ops.cse import closest_vertices
from dp2.weights import WeightsError

TINY = CSEConfig(resnet_depth=50, stem_out_channels=4, res2_out_channels=8, width_per_group=2,
                 fpn_out_channels=32, box_fc_dim=8, decoder_conv_dims=32, decoder_num_classes=32, dp_head_dim=32,
                 dp_num_stacked_convs=1,
                 num_vertices=5, vertex_feature_dim=4, min_size_test=64, max_size_test=96)


def _dets(n: int = 3, size_hw=(20, 30)) -> CSEDetections:
    g = torch.Generator().manual_seed(0)
    h, w = size_hw
    boxes = torch.tensor([[0, 0, 10, 10], [5, 2, 30, 20], [1, 1, 2, 3]][:n], dtype=torch.int64)
    return CSEDetections(boxes_xyxy=boxes, scores=torch.rand(n, generator=g),
                         S=torch.rand(n, 8, 8, generator=g) > 0.5,
                         E=torch.randn(n, 16, 8, 8, generator=g),
                         im_segmentation=torch.zeros(n, h, w, dtype=torch.bool),
                         embed_map=torch.randn(7, 16, generator=g), image_size_hw=size_hw)


def test_structure_indexing_cat_to_empty():
    d = _dets()
    assert len(d) == 3 and len(d[0]) == 1 and len(d[1:]) == 2 and len(d[[0, 2]]) == 2
    sub = d[d.scores > 2.0]
    assert len(sub) == 0 and sub.embed_map is d.embed_map
    both = CSEDetections.cat([d[:1], d[1:]])
    assert torch.equal(both.E, d.E) and torch.equal(both.boxes_xyxy, d.boxes_xyxy)
    assert d.to("cpu").image_size_hw == (20, 30)
    empty = CSEDetections.empty((5, 6), embed_map=d.embed_map)
    assert len(empty) == 0 and empty.E.shape == (0, 16, 112, 112) and empty.im_segmentation.shape == (0, 5, 6)


@pytest.mark.parametrize("field, value, match", [
    ("boxes_xyxy", torch.zeros(3, 5, dtype=torch.int64), r"boxes_xyxy must be an int64 tensor of shape \[N, 4\]"),
    ("boxes_xyxy", torch.zeros(3, 4), "int64"),
    ("S", torch.zeros(3, 8, 8), "S must be a bool tensor"),
    ("E", torch.zeros(3, 16, 4, 4), "E must be a float tensor"),
    ("im_segmentation", torch.zeros(3, 21, 30, dtype=torch.bool),
     r"im_segmentation must be a bool tensor \[3, 20, 30\]"),
    ("embed_map", torch.zeros(7, 3), r"embed_map must be a float tensor \[V, 16\]"),
    ("scores", torch.zeros(2), r"scores must be a float tensor \[3\]"),
])
def test_structure_validation(field, value, match):
    with pytest.raises(ValueError, match=match):
        dataclasses.replace(_dets(), **{field: value})


def test_cat_rejects_other_image():
    with pytest.raises(ValueError, match="cannot cat"):
        CSEDetections.cat([_dets(), _dets(size_hw=(21, 30))])


def test_postprocess_rounding_and_empty_boxes():
    boxes = torch.tensor([[0.4, 0.5, 10.5, 8.49], [3.2, 4.0, 3.4, 9.0], [1.6, 1.5, 6.5, 3.5]])
    segm = torch.zeros(3, 2, 4, 4)
    segm[:, 1, :2] = 1.0  # top half foreground; bottom half is a tie -> background
    out = CSEModelOutput(boxes_xyxy=boxes, scores=torch.tensor([0.9, 0.8, 0.7]),
                         classes=torch.zeros(3, dtype=torch.long), coarse_segm=segm, embedding=torch.randn(3, 16, 4, 4))
    d = postprocess_cse(out, (12, 12), torch.randn(5, 16))
    # half to even: 0.5 -> 0, 10.5 -> 10, 2.5 -> 2 ; the 3.2..3.4 box is empty after rounding
    assert d.boxes_xyxy.tolist() == [[0, 0, 10, 8], [2, 2, 6, 4]]
    assert torch.equal(d.scores, torch.tensor([0.9, 0.7]))
    assert d.S[:, :2].all() and not d.S[:, 2:].any()
    assert d.im_segmentation[0, 0:4, 0:10].all() and not d.im_segmentation[0, 4:].any()
    assert d.im_segmentation.sum().item() == 4 * 10 + 1 * 4


def test_closest_vertices_matches_brute_force():
    g = torch.Generator().manual_seed(1)
    E = torch.randn(16, 6, 7, generator=g)
    mask = torch.rand(6, 7, generator=g) > 0.3
    vm = torch.nn.functional.normalize(torch.randn(11, 16, generator=g), dim=1)
    ids = closest_vertices(E, mask, vm, chunk=5)
    brute = ((E.permute(1, 2, 0)[..., None, :] - vm) ** 2).sum(-1).argmin(-1)
    assert torch.equal(ids[mask], brute[mask]) and not ids[~mask].any()


@pytest.fixture
def tiny_weights(tmp_path):
    import pickle
    model = build_cse_model(TINY)
    g = torch.Generator().manual_seed(3)
    state = {k: (torch.randn(v.shape, generator=g) * 0.1).numpy() for k, v in model.state_dict().items()}
    for k in state:
        if k.endswith("running_var") or (k.endswith("norm.weight")):
            state[k] = np.abs(state[k]) + 1.0
    path = tmp_path / "tiny.pkl"
    path.write_bytes(pickle.dumps({"model": state, "__author__": "test"}, protocol=2))
    return path


def test_detector_end_to_end_tiny(tiny_weights):
    det = CSEDetector(weights=tiny_weights, config=TINY, device="cpu", score_threshold=0.0)
    assert det._model is None  # lazy
    image = torch.randint(0, 256, (3, 40, 50), dtype=torch.uint8)
    d = det(image)
    assert isinstance(d, CSEDetections) and d.image_size_hw == (40, 50)
    assert d.E.shape[1:] == (16, 112, 112) and d.embed_map.shape == (5, 16)
    assert torch.allclose(d.embed_map.norm(dim=1), torch.ones(5))
    if len(d):
        b = d.boxes_xyxy
        assert (b[:, 0] >= 0).all() and (b[:, 2] <= 50).all() and (b[:, 1] >= 0).all() and (b[:, 3] <= 40).all()
        assert ((b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])).all()
        assert (d.scores > 0.0).all()
    det.score_threshold = 1.0  # nothing passes a strict '> 1'
    none = det(image)
    assert len(none) == 0 and none.E.shape == (0, 16, 112, 112) and none.im_segmentation.shape == (0, 40, 50)
    assert len(det(torch.zeros(3, 0, 5, dtype=torch.uint8))) == 0


@torch.no_grad()
def test_no_box_skips_the_decoder():
    """The whole-image decoder only feeds the per-box heads: with no box it does not run (unless
    a trace asks for its output), and the empty results have the usual shapes and dtype."""
    torch.manual_seed(0)
    cfg = dataclasses.replace(TINY, decoder_num_classes=64)  # ASPP's pooled branch: 2 values per norm group
    model = build_cse_model(cfg).eval()
    calls = []
    model.roi_heads.decoder.register_forward_hook(lambda *_: calls.append(1))
    features = model.backbone(torch.randn(1, 3, 64, 96))
    segm, embed = model.roi_heads.forward_densepose(features, torch.zeros(0, 4))
    assert calls == []
    s = cfg.heatmap_size
    assert segm.shape == (0, cfg.num_coarse_segm_channels, s, s) and embed.shape == (0, cfg.embed_size, s, s)
    assert segm.dtype == embed.dtype == torch.float32
    trace = {}
    model.roi_heads.forward_densepose(features, torch.zeros(0, 4), trace)
    assert calls == [1] and "decoder_out" in trace
    segm, embed = model.roi_heads.forward_densepose(features, torch.tensor([[4.0, 4.0, 40.0, 60.0]]))
    assert calls == [1, 1] and segm.shape[0] == embed.shape[0] == 1


def test_detector_argument_errors(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="score_threshold"):
        CSEDetector(score_threshold=1.5)
    det = CSEDetector(device="cpu", config=TINY)
    with pytest.raises(ValueError, match="uint8"):
        det(torch.zeros(3, 4, 4))
    with pytest.raises(WeightsError, match="does not exist"):
        CSEDetector(weights=tmp_path / "missing.pkl", config=TINY)(torch.zeros(3, 4, 4, dtype=torch.uint8))
    monkeypatch.delenv("DP2_WEIGHTS_DIR", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    with pytest.raises(WeightsError, match="model_final_1d3314.pkl"):
        CSEDetector(weights_dir=tmp_path, download=False, device="cpu")(torch.zeros(3, 4, 4, dtype=torch.uint8))
    assert CSE_WEIGHTS.md5 is None and CSE_WEIGHTS.urls[0].endswith("/250713061/model_final_1d3314.pkl")


def test_yaml_unsupported_options(tmp_path):
    base = tmp_path / "Base.yaml"
    base.write_text("MODEL:\n  RESNETS:\n    DEPTH: 50\n  ROI_DENSEPOSE_HEAD:\n    CSE:\n      EMBEDDERS:\n"
                    "        smpl_27554: {TYPE: vertex_feature, NUM_VERTICES: 9, FEATURE_DIM: 8}\n")
    child = tmp_path / "child.yaml"
    child.write_text("_BASE_: Base.yaml\nMODEL:\n  RESNETS:\n    DEPTH: 101\n"
                     "  ROI_HEADS:\n    SCORE_THRESH_TEST: 0.3\n")
    cfg = config_from_detectron2_yaml(child, num_classes=1)
    assert (cfg.resnet_depth, cfg.num_vertices, cfg.vertex_feature_dim, cfg.score_thresh) == (101, 9, 8, 0.3)
    bad = tmp_path / "bad.yaml"
    bad.write_text("_BASE_: Base.yaml\nMODEL:\n  ROI_DENSEPOSE_HEAD:\n    DEEPLAB: {NONLOCAL_ON: 1}\n  MASK_ON: true\n")
    with pytest.raises(ValueError, match=r"NONLOCAL_ON=1.*|MASK_ON=True"):
        config_from_detectron2_yaml(bad)
    with pytest.raises(ValueError, match="unknown CSEConfig fields"):
        config_from_detectron2_yaml(child, not_a_field=1)


def test_vertex_features_from_init_file_when_checkpoint_lacks_them(tiny_weights, tmp_path):
    import pickle
    data = pickle.loads(tiny_weights.read_bytes())
    key = "roi_heads.embedder.embedder_smpl_27554.features"
    features = data["model"].pop(key)
    stripped = tmp_path / "no_features.pkl"
    stripped.write_bytes(pickle.dumps(data, protocol=2))
    init_dir = tmp_path / "weights"
    init_dir.mkdir()
    (init_dir / "phi_smpl_27554_256.pkl").write_bytes(pickle.dumps({"features": features * 2}, protocol=2))
    det = CSEDetector(weights=stripped, weights_dir=init_dir, download=False, config=TINY, device="cpu")
    got = det.model.roi_heads.embedder.embedder_smpl_27554.features
    assert torch.equal(got, torch.from_numpy(features * 2))


def test_missing_frozen_bn_statistics_default_to_identity(tiny_weights):
    import pickle

    from dp2.detection.cse import load_cse_weights
    state = pickle.loads(tiny_weights.read_bytes())["model"]
    del state["backbone.bottom_up.stem.conv1.norm.running_mean"]
    del state["backbone.bottom_up.stem.conv1.norm.running_var"]
    model = load_cse_weights(build_cse_model(TINY), state)
    bn = model.backbone.bottom_up.stem.conv1.norm
    assert not bn.running_mean.any() and (bn.running_var == 1).all()
