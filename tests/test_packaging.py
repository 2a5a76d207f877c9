"""The wheel: every config inside, typed, licensed, one console script, no top-level ``anonymize``.

The wheel is built from a copy of the sources (``pip wheel --no-deps --no-build-isolation``: no
network, a few seconds), so the checkout gets no build/ or egg-info folder.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from helpers import REPO

pytest.importorskip("setuptools", reason="building the wheel needs setuptools (pip install 'dp2-anonymizer[test]')")

SOURCES = ("pyproject.toml", "setup.py", "README.md", "LICENSE", "dp2", "configs")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    src = tmp_path_factory.mktemp("src")
    for name in SOURCES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(path, src / name)
    out = tmp_path_factory.mktemp("wheel")
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                             "-w", str(out), str(src)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    (path,) = out.glob("*.whl")
    with zipfile.ZipFile(path) as archive:
        yield archive


def test_the_wheel_holds_every_config(wheel):
    names = set(wheel.namelist())
    configs = sorted(p.relative_to(REPO / "configs").as_posix() for p in (REPO / "configs").rglob("*.py"))
    assert configs, "no configs in the checkout"
    missing = [c for c in configs if f"dp2/configs/{c}" not in names]
    assert not missing, f"configs missing from the wheel: {missing}"


def test_the_wheel_has_no_top_level_anonymize_module_and_one_package(wheel):
    top = {name.split("/")[0] for name in wheel.namelist() if not name.split("/")[0].endswith(".dist-info")}
    assert top == {"dp2"}, top


def test_the_wheel_is_typed_licensed_and_installs_the_command(wheel):
    names = wheel.namelist()
    assert "dp2/py.typed" in names
    assert "dp2/__main__.py" in names
    info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
    assert info.startswith("dp2_anonymizer-")
    assert any(n.startswith(f"{info}/") and n.endswith("LICENSE") for n in names)
    metadata = wheel.read(f"{info}/METADATA").decode()
    assert "Name: dp2-anonymizer" in metadata and "License-Expression: Apache-2.0" in metadata
    for extra in ("ray", "selfie", "test"):
        assert f"Provides-Extra: {extra}" in metadata
    assert "dp2-anonymize = dp2.cli:main" in wheel.read(f"{info}/entry_points.txt").decode()


def test_requirements_install_no_ray_by_default():
    """The README's first command installs the main job and the tests; Ray comes from its own file."""
    lines = [ln.strip() for ln in (REPO / "requirements.txt").read_text().splitlines()
             if ln.strip() and not ln.startswith("#")]
    assert not any("ray" in ln for ln in lines), lines
    assert "-e .[test]" in lines
    assert "ray" in (REPO / "requirements-ray.txt").read_text()
    assert "requirements-ray.txt" in (REPO / ".ci" / "run").read_text()  # CI keeps running the Ray tests
