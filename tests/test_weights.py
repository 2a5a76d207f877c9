"""Weights manager: lookup order, download with mirrors, hash checks, checkpoint loading."""
from __future__ import annotations

import hashlib
import http.server
import io
import threading
from pathlib import Path

import pytest
import torch

import dp2.weights as weights
from dp2.generation.stylegan_unet import StyleGANUnet
from dp2.weights import (WeightSpec, WeightsError, load_checkpoint, load_generator_state,
                         resolve_weights)

FILENAME = "0123abcd-tiny-generator-link-id"


def _tiny_generator() -> StyleGANUnet:
    return StyleGANUnet(imsize=(16, 16), cnum=4, max_cnum_mul=2, z_channels=8, w_dim=8).eval()


@pytest.fixture(scope="module")
def checkpoint_bytes() -> bytes:
    torch.manual_seed(0)
    G = _tiny_generator()
    buf = io.BytesIO()
    torch.save({"EMA_generator": G.state_dict(), "w_centers": torch.randn(4, 8)}, buf)
    return buf.getvalue()


@pytest.fixture(scope="module")
def server(checkpoint_bytes):
    """HTTP server on 127.0.0.1: /good/<name> serves the checkpoint, /bad/<name> a corrupt copy."""
    files = {f"/good/{FILENAME}": checkpoint_bytes,
             f"/bad/{FILENAME}": checkpoint_bytes[:-10] + b"0123456789"}
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server API)
            hits.append(self.path)
            body = files.get(self.path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield base, hits
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


@pytest.fixture
def env(tmp_path, monkeypatch):
    """Empty TORCH_HOME, no DP2_WEIGHTS_DIR, and a cold hash cache."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.delenv(weights.WEIGHTS_ENV_VAR, raising=False)
    monkeypatch.setattr(weights, "_verified", {})
    return tmp_path


def _spec(checkpoint_bytes: bytes, *urls: str) -> WeightSpec:
    return WeightSpec(FILENAME, hashlib.md5(checkpoint_bytes).hexdigest(), urls=tuple(urls),
                      sha256=hashlib.sha256(checkpoint_bytes).hexdigest())


def _cache_dir(env: Path) -> Path:
    return env / "torch_home" / "hub" / "checkpoints"


def test_download_verifies_and_caches(env, server, checkpoint_bytes):
    base, hits = server
    spec = _spec(checkpoint_bytes, f"{base}/good/{FILENAME}")
    path = resolve_weights(spec, progress=False)
    assert path == _cache_dir(env) / FILENAME
    assert path.read_bytes() == checkpoint_bytes
    assert [p.name for p in path.parent.iterdir()] == [FILENAME]  # no temp files left
    n_hits = len(hits)
    assert resolve_weights(spec, progress=False) == path  # second call: cached, no download
    assert len(hits) == n_hits


def test_mirror_fallback(env, server, checkpoint_bytes, caplog):
    base, _ = server
    spec = _spec(checkpoint_bytes, f"{base}/missing/{FILENAME}", f"{base}/good/{FILENAME}")
    path = resolve_weights(spec, progress=False)
    assert path.read_bytes() == checkpoint_bytes
    assert "404" in caplog.text


def test_corrupt_download_raises_and_leaves_nothing(env, server, checkpoint_bytes):
    base, _ = server
    url = f"{base}/bad/{FILENAME}"
    spec = _spec(checkpoint_bytes, url)
    with pytest.raises(WeightsError) as info:
        resolve_weights(spec, progress=False)
    message = str(info.value)
    assert FILENAME in message and spec.md5 in message and url in message
    assert "manually" in message
    cache = _cache_dir(env)
    assert not (cache / FILENAME).exists()
    assert list(cache.iterdir()) == []


def test_all_urls_failing_lists_them(env, server, checkpoint_bytes):
    base, _ = server
    urls = (f"{base}/nope1/{FILENAME}", f"{base}/nope2/{FILENAME}")
    with pytest.raises(WeightsError) as info:
        resolve_weights(_spec(checkpoint_bytes, *urls), progress=False)
    assert all(u in str(info.value) for u in urls)


def test_env_dir_lookup_works_offline(env, checkpoint_bytes, monkeypatch):
    local = env / "my_weights"
    local.mkdir()
    (local / FILENAME).write_bytes(checkpoint_bytes)
    monkeypatch.setenv(weights.WEIGHTS_ENV_VAR, str(local))
    spec = _spec(checkpoint_bytes, "http://127.0.0.1:9/unreachable")
    assert resolve_weights(spec, download=False) == local / FILENAME


def test_explicit_dir_wins_over_env(env, checkpoint_bytes, monkeypatch):
    first, second = env / "a", env / "b"
    for d in (first, second):
        d.mkdir()
        (d / FILENAME).write_bytes(checkpoint_bytes)
    monkeypatch.setenv(weights.WEIGHTS_ENV_VAR, str(second))
    spec = _spec(checkpoint_bytes)
    assert resolve_weights(spec, weights_dir=first, download=False) == first / FILENAME


def test_missing_without_download_errors_clearly(env, checkpoint_bytes):
    spec = _spec(checkpoint_bytes, "https://example.invalid/" + FILENAME)
    with pytest.raises(WeightsError) as info:
        resolve_weights(spec, download=False)
    message = str(info.value)
    assert FILENAME in message and spec.md5 in message
    assert "disabled" in message and str(_cache_dir(env)) in message
    assert "https://example.invalid/" in message


def test_corrupt_local_file_is_rejected(env, checkpoint_bytes):
    local = env / "w"
    local.mkdir()
    (local / FILENAME).write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="wrong hash"):
        resolve_weights(_spec(checkpoint_bytes), weights_dir=local, download=False)


def test_corrupt_cache_file_is_replaced_by_download(env, server, checkpoint_bytes):
    base, _ = server
    cache = _cache_dir(env)
    cache.mkdir(parents=True)
    (cache / FILENAME).write_bytes(b"truncated")
    path = resolve_weights(_spec(checkpoint_bytes, f"{base}/good/{FILENAME}"), progress=False)
    assert path.read_bytes() == checkpoint_bytes


def test_local_hash_is_memoised(env, checkpoint_bytes, monkeypatch):
    local = env / "w"
    local.mkdir()
    (local / FILENAME).write_bytes(checkpoint_bytes)
    spec = _spec(checkpoint_bytes)
    resolve_weights(spec, weights_dir=local, download=False)

    def boom(*args, **kwargs):
        raise AssertionError("hash recomputed")

    monkeypatch.setattr(weights.hashlib, "new", boom)
    assert resolve_weights(spec, weights_dir=local, download=False) == local / FILENAME


def test_spec_without_md5(env, server, checkpoint_bytes):
    base, _ = server
    url = f"{base}/good/{FILENAME}"
    sha_only = WeightSpec(FILENAME, None, urls=(url,), sha256=hashlib.sha256(checkpoint_bytes).hexdigest())
    assert resolve_weights(sha_only, progress=False).read_bytes() == checkpoint_bytes
    wrong = WeightSpec(FILENAME, None, urls=(f"{base}/bad/{FILENAME}",),
                       sha256=hashlib.sha256(b"other").hexdigest())
    (_cache_dir(env) / FILENAME).unlink()
    with pytest.raises(WeightsError, match="sha256"):
        resolve_weights(wrong, progress=False)
    # No published checksum at all: the file is recognised by name.
    name_only = WeightSpec(FILENAME, None, urls=(url,))
    assert resolve_weights(name_only, progress=False).read_bytes() == checkpoint_bytes


def test_load_downloaded_checkpoint_into_generator(env, server, checkpoint_bytes):
    base, _ = server
    path = resolve_weights(_spec(checkpoint_bytes, f"{base}/good/{FILENAME}"), progress=False)
    ckpt = load_checkpoint(path)
    G = _tiny_generator()
    assert not G.supports_multi_modal_truncation
    load_generator_state(G, ckpt)
    for key, value in ckpt["EMA_generator"].items():
        assert torch.equal(G.state_dict()[key], value), key
    assert torch.equal(G.style_net.w_centers, ckpt["w_centers"])
    assert "style_net.w_centers" in G.state_dict()
    assert G.supports_multi_modal_truncation
    z = torch.randn(2, 8)
    w = G.map_latent(z, 0.0, center_index=torch.tensor([1, 3]))
    assert torch.equal(w, ckpt["w_centers"][[1, 3]])
    with torch.inference_mode():
        out = G(torch.zeros(2, 3, 16, 16), torch.ones(2, 1, 16, 16), w)
    assert torch.equal(out, torch.zeros(2, 3, 16, 16))  # mask == 1: pixels kept


def test_load_checkpoint_rejects_non_tensor_pickles(tmp_path):
    import pickle

    path = tmp_path / "evil.ckpt"
    path.write_bytes(pickle.dumps({"x": object()}, protocol=2))
    with pytest.raises(WeightsError, match="not a tensors-only checkpoint") as info:
        load_checkpoint(path)
    assert "weights_only" not in str(info.value)  # torch's advice to load it unsafely stays out


def test_unknown_layout_raises():
    with pytest.raises(WeightsError, match="layout"):
        load_generator_state(_tiny_generator(), {"foo": 1})


def test_official_specs_are_well_formed():
    for spec in (weights.FDF256_WEIGHTS, weights.FDF128_WEIGHTS, weights.DP1_WEIGHTS,
                 weights.FDH_CSE_WEIGHTS, weights.FDH_NOCSE_WEIGHTS):
        assert spec.urls and all(u.endswith("/" + spec.filename) for u in spec.urls)
        assert spec.urls[0].startswith(("https://api.loke.aws.unit.no/", "https://folk.ntnu.no/"))
    assert any("deep_privacy2_face" in u for u in weights.FDF256_WEIGHTS.urls)
    assert any("haakohu/deep_privacy2/" in u for u in weights.FDH_CSE_WEIGHTS.urls)
    with pytest.raises(ValueError):
        WeightSpec("a/b", "0" * 32)
    with pytest.raises(ValueError):
        WeightSpec("x", "nothex")
