"""A light command line: no heavy import before a run; configs by name from any folder; python -m dp2.

Each test runs a fresh interpreter in another folder (tmp_path), with the checkout on PYTHONPATH,
as a user of the installed package would.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import REPO, make_image

HEAVY = ("torch", "cv2", "onnxruntime", "av", "torchvision", "numpy")


def _run(args, cwd: Path, timeout: float = 120, **env) -> subprocess.CompletedProcess:
    environ = {**os.environ, "PYTHONPATH": str(REPO), "DP2_NO_PROGRESS": "1", **env}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=environ, capture_output=True, text=True,
                          timeout=timeout)


def test_importing_the_cli_imports_nothing_heavy(tmp_path):
    code = ("import sys, dp2.cli, dp2.cli_weights, dp2.config_names, dp2.weights_catalog; "
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    result = _run(["-c", code], tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_the_run_layer_imports_neither_click_nor_anything_heavy(tmp_path):
    # dp2.run builds runs for the CLI, the Python API and Ray workers; click comes with the CLI only.
    code = f"import sys, dp2.run; print(sorted(m for m in {[*HEAVY, 'click', 'dp2.cli']!r} if m in sys.modules))"
    result = _run(["-c", code], tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("args", [["--help"], ["--list-configs"], ["face", "-i", "missing.jpg"],
                                  ["facee", "-i", "x.jpg"], ["weights", "face"]])
def test_help_listing_and_usage_errors_import_nothing_heavy(tmp_path, args):
    code = ("import sys, runpy; sys.argv = ['dp2-anonymize', *sys.argv[1:]]\n"
            "try:\n    runpy.run_module('dp2', run_name='__main__')\n"
            "except SystemExit:\n    pass\n"
            f"print('HEAVY', sorted(m for m in {HEAVY!r} if m in sys.modules))")
    result = _run(["-c", code, *args], tmp_path, TORCH_HOME=str(tmp_path / "torch"))
    assert "HEAVY []" in result.stdout, result.stdout + result.stderr


def test_python_m_dp2_and_dp2_cli_are_the_command(tmp_path):
    for module in ("dp2", "dp2.cli"):
        result = _run(["-m", module, "--help"], tmp_path)
        assert result.returncode == 0, result.stderr
        assert "Usage:" in result.stdout and "--list-configs" in result.stdout
        assert "dp2-anonymize traditional/face/gaussian" in result.stdout
        assert "weights face --download" in result.stdout


def test_list_configs_names_every_config_with_its_purpose_and_weights(tmp_path):
    result = _run(["-m", "dp2", "--list-configs"], tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for path in (REPO / "configs").rglob("*.py"):
        rel = path.relative_to(REPO / "configs").with_suffix("").as_posix()
        name = rel.removeprefix("anonymizers/")
        assert f"  {name} " in out, f"{name} missing from --list-configs"
    lines = out.splitlines()
    face = next(i for i, line in enumerate(lines) if line.startswith("  face "))
    assert "FDF256" in lines[face] and "weights: DSFD, FDF256 generator" in lines[face + 1]
    gaussian = next(i for i, line in enumerate(lines) if line.startswith("  traditional/face/gaussian "))
    assert "none to download" in lines[gaussian + 1]


@pytest.fixture
def photo(tmp_path) -> Path:
    path = tmp_path / "photo.png"
    Image.fromarray(make_image(64, 80)).save(path)
    return path


@pytest.mark.parametrize("name", ["traditional/face/maskout_black", "configs/anonymizers/traditional/face/maskout_black.py",
                                  "maskout_black", "traditional/face/maskout_black.py"])
def test_configs_by_name_from_any_folder(tmp_path, photo, name):
    result = _run(["-m", "dp2", name, "-i", photo.name, "-o", "out.png", "--print-config"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "MaskOut" in result.stdout and "fill: black" in result.stdout


def test_a_run_by_name_from_another_folder(tmp_path, photo):
    result = _run(["-m", "dp2", "traditional/face/gaussian", "-i", photo.name, "-o", "out.png"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out.png").is_file()
    assert result.stderr.startswith("anonymized photo.png: ")  # one summary, no log lines


def test_unknown_and_ambiguous_names_are_usage_errors_with_suggestions(tmp_path):
    result = _run(["-m", "dp2", "facee", "-i", "x.jpg"], tmp_path)
    assert result.returncode == 2 and "did you mean face" in result.stderr
    result = _run(["-m", "dp2", "gaussian", "-i", "x.jpg"], tmp_path)
    assert result.returncode == 2
    assert "traditional/body/gaussian, traditional/face/gaussian" in result.stderr


def test_a_user_config_imports_the_bundled_ones(tmp_path, photo):
    mine = tmp_path / "mine.py"
    mine.write_text('"""Pixelation, 4 blocks."""\n'
                    "from dp2.config import LazyCall as L\n"
                    "from dp2.generation.classic import Pixelate\n"
                    "from dp2.configs.anonymizers.traditional.face.gaussian import anonymizer, detector\n\n"
                    "anonymizer.face.generator = L(Pixelate)(blocks=4)\n")
    result = _run(["-m", "dp2", "mine.py", "-i", photo.name, "--print-config"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Pixelate" in result.stdout and "blocks: 4" in result.stdout and "CenterFaceDetector" in result.stdout
    # A folder import too, and the bundled file stays unchanged for the next user.
    (tmp_path / "other.py").write_text("from dp2.configs.anonymizers import face\nanonymizer = face.anonymizer\n"
                                       "detector = face.detector\ngenerator = face.generator\n")
    result = _run(["-m", "dp2", "other.py", "-i", photo.name, "--print-config"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "DSFDFaceDetector" in result.stdout


def test_python_api_builds_configs_by_name():
    from dp2.api import anonymize_array, build_anonymizer

    anonymizer = build_anonymizer("traditional/face/maskout_black", ["detector.upscale=None"])
    out = anonymize_array(anonymizer, make_image(64, 80))
    assert out.shape == (64, 80, 3) and out.dtype == np.uint8


def test_device_gpu_is_a_short_usage_error(tmp_path, photo):
    result = _run(["-m", "dp2", "traditional/face/gaussian", "-i", photo.name, "--device", "gpu"], tmp_path)
    assert result.returncode == 2
    assert "'gpu': expected cpu, cuda, cuda:N or mps" in result.stderr
    assert len(result.stderr.strip().splitlines()[-1]) < 120
