"""The weights manager knows FB_triagan's files (TriA-GAN L_im288, ViTPose-H), offline."""
from __future__ import annotations

import json

import pytest

import dp2.weights as weights
from dp2.detection.vitpose import VITPOSE_H_WEIGHTS, VITPOSE_WEIGHTS, ViTPoseDetector
from dp2.generation.build import GENERATOR_KINDS, _WEIGHTS
from dp2.weights import TRIAGAN_WEIGHTS, WeightsError, resolve_weights

from helpers import CONFORMANCE

LOKE = "https://api.loke.aws.unit.no/dlr-gui-backend-resources-content/v2/contents/links/"
TRIAGAN_ID = "e62a306a-5295-47dd-8a0e-4f7c05b9ecd44c9fbc76-5ce2-4dd0-9454-04776bef2745659fbec7-fa0a-485b-8501-c94a2439b601"
VITPOSE_H_ID = "a33b6ada-4d2f-4ef7-8f83-b33f58b69f5b2a62e181-2131-467d-a900-027157a08571d761fad4-785b-4b84-8596-8932c7857e44"


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.delenv(weights.WEIGHTS_ENV_VAR, raising=False)
    monkeypatch.delenv(weights.VERIFY_ENV_VAR, raising=False)
    monkeypatch.setattr(weights, "_verified", {})
    return tmp_path


def test_triagan_spec_is_dp2s():
    assert "triagan" in GENERATOR_KINDS and _WEIGHTS["triagan"] is TRIAGAN_WEIGHTS
    assert TRIAGAN_WEIGHTS.filename == TRIAGAN_ID  # DP2's torch-hub cache name (URL basename)
    assert TRIAGAN_WEIGHTS.md5 == "b649410e831b45f7800a89c738b411ce"
    assert TRIAGAN_WEIGHTS.urls[0] == LOKE + TRIAGAN_ID
    manifest = CONFORMANCE / "manifests" / "triagan_L_im288.json"
    if manifest.is_file():
        m = json.loads(manifest.read_text())
        assert (TRIAGAN_WEIGHTS.urls[0], TRIAGAN_WEIGHTS.md5) == (m["checkpoint_model_url"], m["checkpoint_md5"])


def test_vitpose_specs_are_dp2s():
    assert VITPOSE_H_WEIGHTS.filename == "vit-h-multi-coco-dbc06d4337.pth"
    assert VITPOSE_H_WEIGHTS.urls == (LOKE + VITPOSE_H_ID,)
    assert VITPOSE_H_WEIGHTS.md5 is None and VITPOSE_H_WEIGHTS.sha256 is None  # DP2 publishes none
    assert VITPOSE_WEIGHTS["vit_base"].filename == "vit-b-multi-coco-595b5e128b.pth"
    assert VITPOSE_WEIGHTS["vit_large"].filename == "vit-l-multi-coco-9475d27cec.pth"
    assert ViTPoseDetector().weight_spec is VITPOSE_H_WEIGHTS


def test_triagan_file_is_verified_by_md5(env):
    d = env / "w"
    d.mkdir()
    (d / TRIAGAN_WEIGHTS.filename).write_bytes(b"not the checkpoint")
    with pytest.raises(WeightsError) as err:
        resolve_weights(TRIAGAN_WEIGHTS, weights_dir=d, download=False)
    text = str(err.value)
    assert "b649410e831b45f7800a89c738b411ce" in text and TRIAGAN_ID in text and "Downloading is disabled" in text


def test_triagan_file_found_by_name_without_verification(env, monkeypatch):
    d = env / "w"
    d.mkdir()
    (d / TRIAGAN_WEIGHTS.filename).write_bytes(b"own fine-tuned checkpoint")
    monkeypatch.setenv(weights.VERIFY_ENV_VAR, "0")
    assert resolve_weights(TRIAGAN_WEIGHTS, weights_dir=d, download=False) == d / TRIAGAN_WEIGHTS.filename


def test_vitpose_found_in_the_torch_hub_cache(env):
    cache = env / "torch_home" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    (cache / VITPOSE_H_WEIGHTS.filename).write_bytes(b"x")
    assert ViTPoseDetector(download=False).weights_file() == cache / VITPOSE_H_WEIGHTS.filename


def test_missing_vitpose_names_file_and_url(env):
    with pytest.raises(WeightsError) as err:
        ViTPoseDetector(download=False).weights_file()
    text = str(err.value)
    assert VITPOSE_H_WEIGHTS.filename in text and VITPOSE_H_ID in text and "no published checksum" in text
