"""TriA-GAN (FB_triagan) vs golden data made with the original DeepPrivacy2 code.

Golden data: ``../shared/conformance/generators/triagan_mini.*`` and
``manifests/triagan_L_im288.json`` (see ``TRIAGAN_VITPOSE.md`` there).

Tolerance: outputs are compared with atol 1e-4. The sidecar's float64 rerun of the original
moves them by up to 1.6e-5, and its batch-1 vs batch-2 outputs differ by 1.0e-5, so fp32 results
are not reproducible bit for bit across kernels; ours stay within 2e-5 of the golden ones.
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
from dp2.generation.triagan import TriaConv2d, TriaGAN, keypoint_maps, map_triagan_checkpoint
from dp2.ops.joint_map import draw_joint_map
from dp2.weights import load_checkpoint, load_generator_state

CONFORMANCE = Path(__file__).resolve().parents[2] / ".." / "shared" / "conformance"
IMG_ATOL = 1e-4
W_ATOL = 1e-5


@pytest.fixture(scope="module")
def conformance() -> Path:
    if not (CONFORMANCE / "generators" / "triagan_mini.ckpt").is_file():
        pytest.skip("../shared/conformance (TriA-GAN golden data) not found")
    torch.set_num_threads(min(2, torch.get_num_threads()))
    return CONFORMANCE


@pytest.fixture(scope="module")
def sidecar(conformance) -> dict:
    return json.loads((conformance / "generators" / "triagan_mini.json").read_text())


@pytest.fixture(scope="module")
def golden(conformance) -> dict[str, torch.Tensor]:
    with np.load(conformance / "generators" / "triagan_mini.npz") as data:
        return {k: torch.from_numpy(data[k]) for k in data.files}


@pytest.fixture(scope="module")
def mini(conformance) -> TriaGAN:
    G = build_generator("triagan", mini=True)
    load_generator_state(G, load_checkpoint(conformance / "generators" / "triagan_mini.ckpt"))
    return G.eval()


def _max_err(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a.double() - b.double()).abs().max().item()


def test_mini_kwargs_match_sidecar(sidecar):
    args = sidecar["constructor_args"]
    for key, value in generator_kwargs("triagan", mini=True).items():
        expected = args[key]
        assert (list(value) if isinstance(value, tuple) else value) == expected, key
    G = build_generator("triagan", mini=True)
    assert sum(p.numel() for p in G.parameters()) == sidecar["num_parameters"]
    ckpt = load_checkpoint(CONFORMANCE / "generators" / "triagan_mini.ckpt")["EMA_generator"]
    assert list(G.state_dict()) == list(ckpt)


def test_mini_latents_match_golden(mini, golden):
    with torch.inference_mode():
        assert _max_err(mini.style_net.w_avg, golden["w_avg"]) == 0
        assert _max_err(mini.style_net(golden["z"]), golden["w_mapped"]) <= W_ATOL
        for name, t in (("0", 0.0), ("05", 0.5), ("1", 1.0)):
            assert _max_err(mini.map_latent(golden["z"], t), golden[f"w_trunc{name}"]) <= W_ATOL


@pytest.mark.parametrize("name", ["0", "05", "1"])
def test_mini_outputs_match_golden(mini, golden, name):
    g = golden
    with torch.inference_mode():
        out, unmasked = mini.synthesize(g["img"], g["mask"], g[f"w_trunc{name}"], maskrcnn_mask=g["maskrcnn_mask"],
                                        keypoints=g["keypoints"], joint_map=g["joint_map"])
    errors = {"out": _max_err(out, g[f"out_trunc{name}"]), "unmasked": _max_err(unmasked, g[f"unmasked_trunc{name}"])}
    if name == "05":
        errors["anon_0_255"] = _max_err(((out + 1) / 2).clamp(0, 1) * 255, g["anon_0_255_trunc05"]) / 255
    logging.getLogger(__name__).info("triagan trunc%s max abs errors: %s", name, errors)
    for key, err in errors.items():
        assert err <= IMG_ATOL, f"trunc{name} {key}: max |diff| {err:.3g} > {IMG_ATOL}"
    # Known pixels come back unchanged (DP2 pastes them: mask * img).
    keep = g["mask"].expand_as(out) > 0.5
    assert torch.equal(out[keep], g["img"][keep])


def test_forward_contract_equals_synthesize(mini, golden):
    """The generator contract (img in [-1, 1], conditions by name) gives DP2's output."""
    g = golden
    with torch.inference_mode():
        w = mini.map_latent(g["z"][1:], 0.5)
        out = mini(g["img"][1:], g["mask"][1:], w, maskrcnn_mask=g["maskrcnn_mask"][1:],
                   keypoints=g["keypoints"][1:], joint_map=g["joint_map"][1:])
    assert _max_err(out, g["out_trunc05"][1:]) <= IMG_ATOL
    with pytest.raises(TypeError, match="unexpected conditions"):
        mini(g["img"][:1], g["mask"][:1], w, embedding=torch.zeros(1))


def test_joint_map_from_golden_keypoints(golden):
    jm = draw_joint_map(golden["keypoints"], (288, 160))
    assert torch.equal(jm, golden["joint_map"])


def test_keypoint_maps_one_pixel_per_visible_keypoint(golden):
    kp = golden["keypoints"]
    maps = keypoint_maps(kp, (288, 160))
    assert maps.shape == (2, 17, 288, 160)
    assert torch.equal(maps.sum(dim=(2, 3)), (kp[..., 2] > 0).float())
    y, x = divmod(int(maps[0, 0].flatten().argmax()), 160)
    assert (x, y) == (round(float(kp[0, 0, 0] * 160)), round(float(kp[0, 0, 1] * 288)))


def test_full_size_layout_matches_manifest(conformance):
    manifest = json.loads((conformance / "manifests" / "triagan_L_im288.json").read_text())
    with torch.device("meta"):
        G = build_generator("triagan")
    sd = G.state_dict()
    assert [(k, list(v.shape)) for k, v in sd.items()] == [(e["key"], e["shape"]) for e in manifest["state_dict"]]
    params = dict(G.named_parameters())
    for e in manifest["state_dict"]:
        assert (e["kind"] == "parameter") == (e["key"] in params), e["key"]
    assert len(sd) == manifest["state_dict_keys"] == 436
    assert sum(p.numel() for p in G.parameters()) == manifest["num_parameters"] == 124_212_639
    assert G.imsize == tuple(manifest["imsize"])
    args = manifest["constructor_args"]
    assert G.z_channels == args["z_channels"] and G.w_dim == args["w_dim"]
    ours = generator_kwargs("triagan")
    for key in ("dim", "num_resnet_blocks", "n_middle_blocks", "z_channels", "w_dim", "norm_enc", "norm_dec",
                "use_maskrcnn_mask", "input_keypoints", "input_joint", "n_keypoints", "layer_scale", "use_noise"):
        assert ours[key] == args[key], key
    assert list(ours["dim_mults"]) == args["dim_mults"]
    from_rgb = manifest["from_rgb"]
    assert (G.from_rgb.in_channels, G.from_rgb.out_channels, G.from_rgb.kernel_size) == (
        from_rgb["in_channels"], from_rgb["out_channels"], from_rgb["kernel"])
    assert G.from_rgb.weight_gain == pytest.approx(from_rgb["weight_gain"], rel=1e-12)
    assert G.from_rgb.weight_gain == pytest.approx(1 / math.sqrt(7 * 49), rel=1e-12)


def test_encoder_has_no_noise_and_decoder_has(mini):
    convs = {name: m for name, m in mini.named_modules() if isinstance(m, TriaConv2d)}
    assert not any(m.use_noise for name, m in convs.items() if name.startswith("encoder."))
    assert all(m.use_noise for name, m in convs.items()
               if name.startswith(("decoder.layers.", "decoder.middle_blocks.")) and ".skip" not in name)


def test_ckpt_mapper_renames_progressive_to_rgb(conformance, caplog):
    state = dict(load_checkpoint(conformance / "generators" / "triagan_mini.ckpt")["EMA_generator"])
    weight, bias = state.pop("decoder.to_rgb.weight"), state.pop("decoder.to_rgb.bias")
    state["decoder.to_rgb.0.weight"] = torch.zeros_like(weight)
    state["decoder.to_rgb.0.bias"] = torch.zeros_like(bias)
    state["decoder.to_rgb.5.weight"] = weight
    state["decoder.to_rgb.5.bias"] = bias
    assert set(map_triagan_checkpoint(state)) == set(state) - {
        "decoder.to_rgb.0.weight", "decoder.to_rgb.0.bias", "decoder.to_rgb.5.weight", "decoder.to_rgb.5.bias"
    } | {"decoder.to_rgb.weight", "decoder.to_rgb.bias"}
    G = build_generator("triagan", mini=True)
    with caplog.at_level(logging.WARNING, logger="dp2.weights"):
        load_generator_state(G, {"EMA_generator": state})
    assert "missing" not in caplog.text and "unexpected" not in caplog.text
    assert torch.equal(G.decoder.to_rgb.weight.detach(), weight)
    assert torch.equal(G.decoder.to_rgb.bias.detach(), bias)


def test_missing_keypoints_are_rejected_with_shape(mini, golden):
    g = golden
    w = mini.map_latent(g["z"][:1], 0.0)
    with pytest.raises(ValueError, match=r"keypoints must have shape \[1, 17, 3\], got None"):
        mini.synthesize(g["img"][:1], g["mask"][:1], w, maskrcnn_mask=g["maskrcnn_mask"][:1],
                        joint_map=g["joint_map"][:1])
