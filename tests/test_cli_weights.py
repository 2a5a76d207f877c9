"""``dp2-anonymize weights``: lists, downloads (from a server on 127.0.0.1) and verifies every file of
every generative config; the missing-weights error of a run is short and says what to run.

Every model of the catalog is swapped for a small stand-in file with the same name and its own
md5, served locally, so nothing real is fetched.
"""
from __future__ import annotations

import dataclasses
import hashlib
import http.server
import threading

import pytest
from click.testing import CliRunner
from PIL import Image

import dp2.weights as weights
import dp2.weights_catalog as catalog
from dp2.cli import main
from dp2.config_names import list_configs

from helpers import make_image


def _content(filename: str) -> bytes:
    return f"stand-in weights for {filename}\n".encode() * 50


@pytest.fixture(scope="module")
def server():
    """127.0.0.1 server: /ok/<name> serves the stand-in, everything else is 404; records each path."""
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server API)
            hits.append(self.path)
            if not self.path.startswith("/ok/"):
                self.send_error(404)
                return
            body = _content(self.path.removeprefix("/ok/"))
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", hits
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


@pytest.fixture
def local_models(server, tmp_path, monkeypatch):
    """Every catalog file served by the local server: first URL dead (404), then the mirror."""
    base, _ = server
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.delenv(weights.WEIGHTS_ENV_VAR, raising=False)
    monkeypatch.setattr(weights, "_verified", {})
    for key, model in list(catalog.MODELS.items()):
        files = tuple(dataclasses.replace(spec, md5=hashlib.md5(_content(spec.filename)).hexdigest(), sha256=None,
                                          urls=(f"{base}/dead/{spec.filename}", f"{base}/ok/{spec.filename}"))
                      for spec in model.files)
        monkeypatch.setitem(catalog.MODELS, key, dataclasses.replace(model, files=files))
    return tmp_path


def _generative_configs() -> list[str]:
    names = []
    for info in list_configs():
        if info.kind == "anonymizer" and any(n.model.key in ("fdf256", "fdf128", "deep_privacy1", "fdh_cse",
                                                               "fdh_nocse") for n in info.models):
            names.append(info.name)
    return names


def test_every_generative_config_is_covered():
    names = _generative_configs()
    assert {"face", "face_fdf128", "deep_privacy1", "FB_cse", "FB_cse_mask_face", "FB_nocse"} <= set(names)


@pytest.mark.parametrize("name", _generative_configs())
def test_weights_lists_downloads_and_verifies_every_file(local_models, server, name):
    store = local_models / "store"
    runner = CliRunner()
    listed = runner.invoke(main, ["weights", name, "--dir", str(store)])
    assert listed.exit_code == 1, listed.output  # nothing there yet
    needs = [n for n in next(i for i in list_configs() if i.name == name).models if n.model.files]
    for need in needs:
        model = catalog.MODELS[need.model.key]
        assert model.name in listed.output
        for spec in model.files:
            assert f"file      {spec.filename}" in listed.output
            assert spec.md5 in listed.output
            official, mirror = spec.urls
            assert f"{official}  (official)" in listed.output and f"{mirror}  (mirror)" in listed.output
    assert "MISSING" in listed.output and str(store) in listed.output

    fetched = runner.invoke(main, ["weights", name, "--dir", str(store), "--download"])
    assert fetched.exit_code == 0, fetched.output
    for need in needs:
        for spec in catalog.MODELS[need.model.key].files:
            assert (store / spec.filename).read_bytes() == _content(spec.filename)
    again = runner.invoke(main, ["weights", name, "--dir", str(store)])
    assert again.exit_code == 0, again.output
    assert "MISSING" not in again.output and again.output.count("present, verified: ") == sum(
        len(catalog.MODELS[n.model.key].files) for n in needs)


def test_a_wrong_file_is_reported_and_replaced_on_download(local_models):
    store = local_models / "store"
    store.mkdir()
    spec = catalog.MODELS["fdf256"].files[0]
    (store / spec.filename).write_bytes(b"not the weights")
    runner = CliRunner()
    listed = runner.invoke(main, ["weights", "face_centerface", "--dir", str(store)])
    assert listed.exit_code == 1 and "BROKEN" in listed.output and "md5" in listed.output
    fixed = runner.invoke(main, ["weights", "face_centerface", "--dir", str(store), "--download"])
    assert fixed.exit_code == 0, fixed.output
    assert (store / spec.filename).read_bytes() == _content(spec.filename)


def test_offline_configs_need_nothing(local_models):
    result = CliRunner().invoke(main, ["weights", "traditional/face/gaussian"])
    assert result.exit_code == 0, result.output
    assert "no weights to download" in result.output and "CenterFace" in result.output


def test_a_run_with_missing_weights_fails_with_a_short_message(local_models, server, monkeypatch, tmp_path):
    import dp2.generation.build as build

    base, _ = server
    dead = dataclasses.replace(weights.FDF256_WEIGHTS, urls=(f"{base}/dead/{weights.FDF256_WEIGHTS.filename}",))
    monkeypatch.setitem(build._WEIGHTS, "fdf256", dead)
    monkeypatch.setitem(catalog.MODELS, "fdf256", dataclasses.replace(catalog.MODELS["fdf256"], files=(dead,)))
    image = tmp_path / "in.png"
    Image.fromarray(make_image(64, 80)).save(image)
    result = CliRunner().invoke(main, ["face_centerface", "-i", str(image), "-o", str(tmp_path / "out.png")])
    assert result.exit_code == 1, result.output
    error = result.output[result.output.index("error:"):]
    assert "FDF256 face generator" in error
    assert "89660f04-5c11-4d...daddbfa45c9e" in error
    assert "weights face_centerface --download" in error
    assert error.count(dead.filename) == 0  # the 100-character name is shortened
    assert len(error) < 500, error


def test_no_verify_weights_warning_names_the_flag_and_hides_torch_advice(local_models, monkeypatch, tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    (store / weights.FDF256_WEIGHTS.filename).write_bytes(b"corrupt")
    image = tmp_path / "in.png"
    Image.fromarray(make_image(64, 80)).save(image)
    monkeypatch.setattr(weights, "_warned", set())
    result = CliRunner().invoke(main, ["face_centerface", "-i", str(image), "-o", str(tmp_path / "out.png"),
                                       "--weights-dir", str(store), "--no-verify-weights"])
    assert result.exit_code == 1, result.output
    assert "--no-verify-weights: using" in result.output
    assert "DP2_VERIFY_WEIGHTS" not in result.output
    assert "weights_only" not in result.output and "could not load checkpoint" in result.output
