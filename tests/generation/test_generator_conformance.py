"""Generators vs. golden data made with the original DeepPrivacy2 code.

Golden data: ``<repo>/../shared/conformance`` (see its README): reduced-width
("mini") checkpoints with reference outputs, and full-size state-dict manifests.
"""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from dp2.generation.build import build_generator, generator_kwargs
from dp2.generation.deep_privacy1 import MSGGenerator, remap_legacy_dp1_keys
from dp2.generation.layers import Conv2d, FullyConnectedLayer
from dp2.generation.stylegan_unet import StyleGANUnet
from dp2.weights import WeightsError, load_checkpoint, load_generator_state

CONFORMANCE = Path(__file__).resolve().parents[2] / ".." / "shared" / "conformance"
STYLEGAN_MODELS = ["fdf256", "fdf128", "fdh_cse", "fdh_nocse"]
IMG_ATOL = 1e-4
W_ATOL = 1e-5


@pytest.fixture(scope="module")
def conformance() -> Path:
    if not CONFORMANCE.is_dir():
        pytest.skip("../shared/conformance not found: golden data absent")
    torch.set_num_threads(min(2, torch.get_num_threads()))
    return CONFORMANCE


def _sidecar(conformance: Path, model: str) -> dict:
    return json.loads((conformance / "generators" / f"{model}_mini.json").read_text())


def _golden(conformance: Path, model: str) -> dict[str, torch.Tensor]:
    with np.load(conformance / "generators" / f"{model}_mini.npz") as data:
        return {k: torch.from_numpy(data[k]) for k in data.files}


def _load_mini(conformance: Path, model: str):
    meta = _sidecar(conformance, model)
    if model == "deep_privacy1":
        G = MSGGenerator(channels=meta["constructor_args"]["res2channels"])
    else:
        G = StyleGANUnet(**meta["constructor_args"])
    ckpt = load_checkpoint(conformance / "generators" / f"{model}_mini.ckpt")
    load_generator_state(G, ckpt)
    return G.eval()


def _max_err(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a.double() - b.double()).abs().max().item()


# -- mini generators vs golden outputs ----------------------------------------------------

@pytest.mark.parametrize("model", STYLEGAN_MODELS)
def test_stylegan_mini_matches_golden(conformance, model):
    G = _load_mini(conformance, model)
    g = _golden(conformance, model)
    cse = {}
    if G.input_cse:
        cse = dict(embedding=g["embedding"], E_mask=g["E_mask"])
    errors: dict[str, float] = {}
    with torch.inference_mode():
        errors["w_avg"] = _max_err(G.style_net.w_avg, g["w_avg"])
        errors["w_mapped"] = _max_err(G.style_net(g["z"]), g["w_mapped"])
        for name, t in [("0", 0.0), ("05", 0.5), ("1", 1.0)]:
            w = G.map_latent(g["z"][:1], truncation_value=t)
            errors[f"w_trunc{name}"] = _max_err(w, g[f"w_trunc{name}"])
            out = G.synthesize(g["condition"][:1], g["mask"][:1], g[f"w_trunc{name}"],
                               **{k: v[:1] for k, v in cse.items()})
            errors[f"out_trunc{name}"] = _max_err(out, g[f"out_trunc{name}"])
        # Batch of two through the public contract: img in [-1, 1], condition = img * mask.
        img = (g["img_uint8"].float() - 127.5) / 127.5
        w = G.map_latent(g["z"], truncation_value=0.5)
        errors["w_b2_trunc05"] = _max_err(w, g["w_b2_trunc05"])
        errors["out_b2_trunc05"] = _max_err(G(img, g["mask"], w, **cse), g["out_b2_trunc05"])
        assert G.supports_multi_modal_truncation == ("w_centers" in g)
        if "w_centers" in g:
            errors["w_centers"] = _max_err(G.style_net.w_centers, g["w_centers"])
            w = G.map_latent(g["z"][:1], 0.5, center_index=torch.tensor([3]))
            errors["w_mm3_trunc05"] = _max_err(w, g["w_mm3_trunc05"])
            out = G.synthesize(g["condition"][:1], g["mask"][:1], g["w_mm3_trunc05"],
                               **{k: v[:1] for k, v in cse.items()})
            errors["out_mm3_trunc05"] = _max_err(out, g["out_mm3_trunc05"])
            w = G.map_latent(g["z"], 0.5, center_index=torch.tensor([3, 10]))
            errors["w_b2_mm_trunc05"] = _max_err(w, g["w_b2_mm_trunc05"])
            out = G.synthesize(g["condition"], g["mask"], g["w_b2_mm_trunc05"], **cse)
            errors["out_b2_mm_trunc05"] = _max_err(out, g["out_b2_mm_trunc05"])
    logging.getLogger(__name__).info("%s max abs errors: %s", model, errors)
    for key, err in errors.items():
        tol = IMG_ATOL if key.startswith("out_") else W_ATOL
        assert err <= tol, f"{model} {key}: max |diff| {err:.3g} > {tol}"


def test_deep_privacy1_mini_matches_golden(conformance):
    G = _load_mini(conformance, "deep_privacy1")
    g = _golden(conformance, "deep_privacy1")
    z = g["z"][:1]
    cases = {"out_z": z, "out_zeros": torch.zeros_like(z), "out_half_z": 0.5 * z}
    errors = {}
    with torch.inference_mode():
        for key, zz in cases.items():
            out = G.synthesize(g["condition"][:1], g["mask"][:1], g["keypoints"][:1], zz)
            errors[key] = _max_err(out, g[key])
        img = (g["img_uint8"].float() - 127.5) / 127.5
        latent = G.map_latent(g["z"], truncation_value=0.3)
        assert latent is g["z"]  # DP1: no mapping, truncation has no effect
        errors["out_b2_z"] = _max_err(G(img, g["mask"], latent, keypoints=g["keypoints"]), g["out_b2_z"])
    logging.getLogger(__name__).info("deep_privacy1 max abs errors: %s", errors)
    for key, err in errors.items():
        assert err <= IMG_ATOL, f"deep_privacy1 {key}: max |diff| {err:.3g} > {IMG_ATOL}"


def test_channels_last_gives_same_result(conformance):
    G = _load_mini(conformance, "fdf128").to(memory_format=torch.channels_last)
    g = _golden(conformance, "fdf128")
    with torch.inference_mode():
        out = G.synthesize(g["condition"][:1].contiguous(memory_format=torch.channels_last),
                           g["mask"][:1].contiguous(memory_format=torch.channels_last),
                           g["w_trunc05"])
    assert _max_err(out, g["out_trunc05"]) <= IMG_ATOL


def test_build_generator_mini_matches_sidecar(conformance):
    for model in STYLEGAN_MODELS:
        args = _sidecar(conformance, model)["constructor_args"]
        ours = generator_kwargs(model, mini=True)
        for key, value in ours.items():
            expected = args[key]
            assert (list(value) if isinstance(value, tuple) else value) == expected, (model, key)
    dp1 = _sidecar(conformance, "deep_privacy1")["constructor_args"]["res2channels"]
    assert {str(k): v for k, v in generator_kwargs("deep_privacy1", mini=True)["channels"].items()} == dp1


# -- loader behaviour ---------------------------------------------------------------------

def test_lenient_load_drops_mismatched_and_warns(conformance, caplog):
    ckpt = load_checkpoint(conformance / "generators" / "fdf128_mini.ckpt")
    state = dict(ckpt["EMA_generator"])
    state["to_rgb.bias"] = torch.zeros(5)          # wrong shape -> dropped
    state["not_a_key.weight"] = torch.zeros(1)     # unexpected -> warned
    del state["from_rgb.bias"]                     # missing -> warned
    G = build_generator("fdf128", mini=True)
    before = G.to_rgb.bias.detach().clone()
    with caplog.at_level(logging.WARNING, logger="dp2.weights"):
        load_generator_state(G, {"EMA_generator": state})
    text = caplog.text
    assert "to_rgb.bias" in text and "not_a_key.weight" in text and "from_rgb.bias" in text
    assert torch.equal(G.to_rgb.bias.detach(), before)
    assert torch.equal(G.to_rgb.weight.detach(), state["to_rgb.weight"])


def test_dp1_legacy_keys_are_remapped(conformance):
    ckpt = load_checkpoint(conformance / "generators" / "deep_privacy1_mini.ckpt")
    state = ckpt["running_average_generator"]["parameters"]
    legacy = {}
    for key, value in state.items():
        new = key
        for prefix in ("decoder.basic_block", "decoder.skip_connection", "encoder.basic_block"):
            if key.startswith(prefix):
                res, _, tail = key[len(prefix):].partition(".")
                new = f"{prefix}{int(math.log2(int(res) // 4))}.{tail}"
        if key.startswith("from_rgb."):
            new = "encoder.from_rgb.conv.layers." + key[len("from_rgb."):]
        legacy[new] = value
    legacy["decoder.to_rgb.weight"] = torch.zeros(1)
    assert "encoder.basic_block0.layers.0.weight" in legacy
    assert remap_legacy_dp1_keys(legacy).keys() == state.keys()
    G = build_generator("deep_privacy1", mini=True)
    load_generator_state(G, {"running_average_generator": {"parameters": legacy}})
    for key, value in G.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_dp1_strict_load_rejects_missing_keys(conformance):
    ckpt = load_checkpoint(conformance / "generators" / "deep_privacy1_mini.ckpt")
    state = dict(ckpt["running_average_generator"]["parameters"])
    del state["decoder.pose_fcnn.pose_preprocessor.1.linear.weight"]
    with pytest.raises(WeightsError, match="pose_preprocessor"):
        load_generator_state(build_generator("deep_privacy1", mini=True),
                             {"running_average_generator": {"parameters": state}})


# -- full-size layouts vs manifests -------------------------------------------------------

def _manifest(conformance: Path, model: str) -> dict:
    return json.loads((conformance / "manifests" / f"{model}.json").read_text())


def _module_hparams(module) -> dict:
    if isinstance(module, Conv2d):
        return dict(in_channels=module.in_channels, out_channels=module.out_channels,
                    kernel_size=module.kernel_size, up=module.up, down=module.down,
                    activation=module.activation, act_gain=module.act_gain,
                    conv_clamp=module.conv_clamp, weight_gain=module.weight_gain,
                    bias_gain=module.bias_gain, has_bias=module.bias is not None,
                    instance_norm_after_conv=module.norm, modulated_by_w=module.w_dim is not None,
                    padding=module.padding)
    if isinstance(module, FullyConnectedLayer):
        return dict(in_features=module.in_features, out_features=module.out_features,
                    activation=module.activation, weight_gain=module.weight_gain,
                    bias_gain=module.bias_gain)
    if hasattr(module, "ws_scale"):
        return dict(in_channels=module.in_channels, out_channels=module.out_channels,
                    kernel_size=module.kernel_size[0], padding=list(module.padding),
                    ws_scale=module.ws_scale)
    if hasattr(module, "wt_scale"):
        return dict(in_features=module.in_features, out_features=module.out_features,
                    wtScale=module.wt_scale)
    raise AssertionError(f"no hyper-parameters known for {type(module).__name__}")


def _assert_same(expected, actual, where: str) -> None:
    if isinstance(expected, float) and actual is not None:
        assert actual == pytest.approx(expected, rel=1e-12), where
    else:
        assert actual == expected, where


@pytest.mark.parametrize("model", STYLEGAN_MODELS + ["deep_privacy1"])
def test_full_size_layout_matches_manifest(conformance, model):
    manifest = _manifest(conformance, model)
    with torch.device("meta"):
        if model == "deep_privacy1":
            G = MSGGenerator()
        else:
            args = dict(manifest["constructor_args"])
            G = StyleGANUnet(**args)
    sd = G.state_dict()
    expected = [(e["key"], e["shape"]) for e in manifest["state_dict"]]
    assert [(k, list(v.shape)) for k, v in sd.items()] == expected
    params = dict(G.named_parameters())
    for e in manifest["state_dict"]:
        assert (e["kind"] == "parameter") == (e["key"] in params), e["key"]
    assert len(sd) == manifest["num_state_dict_keys"]
    assert sum(p.numel() for p in G.parameters()) == manifest["num_parameters"]
    assert G.imsize == tuple(manifest["imsize"])
    assert G.z_channels == manifest["z_channels"]
    modules = dict(G.named_modules())
    for entry in manifest["modules"]:
        name = entry["name"]
        ours = _module_hparams(modules[name])
        for key, value in entry.items():
            if key in ("name", "type", "note", "demodulation"):
                continue
            _assert_same(value, ours[key], f"{model} {name}.{key}")


def test_deep_privacy1_counts_match_facts(conformance):
    with torch.device("meta"):
        G = MSGGenerator()
    assert len(G.state_dict()) == 80
    assert sum(p.numel() for p in G.parameters()) == 47_387_586
