"""Folder runs record a manifest, resume where they stopped, and seed each file by its path."""
import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from dp2.cli import main
from dp2.io.manifest import MANIFEST_NAME, file_seed

from helpers import make_image


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def make_folder(root, n=3):
    for i in range(n):
        (root / "sub").mkdir(parents=True, exist_ok=True)
        Image.fromarray(make_image(40, 50, seed=i)).save(root / ("sub" if i % 2 else ".") / f"img{i}.png")
    (root / "broken.jpg").write_bytes(b"not a jpeg")


def records(folder):
    lines = (folder / MANIFEST_NAME).read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_manifest_lists_every_file_and_rerun_skips_done(tmp_path, fixed_config):
    src, out = tmp_path / "in", tmp_path / "out"
    make_folder(src)
    assert run(fixed_config, "-i", src, "-o", out).exit_code == 1  # broken.jpg
    first = {r["input"]: r for r in records(out)}
    assert set(first) == {"img0.png", "sub/img1.png", "img2.png", "broken.jpg"}
    assert first["broken.jpg"]["status"] == "failed" and "broken.jpg" in first["broken.jpg"]["error"]
    assert first["img0.png"]["status"] == "ok" and first["img0.png"]["detections"] == {"faces": 1}
    mtime = (out / "img0.png").stat().st_mtime_ns
    # Second run: the three finished files are skipped, the broken one is retried (and fails again).
    again = run(fixed_config, "-i", src, "-o", out)
    assert again.exit_code == 1 and "3 files already done" in again.output
    assert (out / "img0.png").stat().st_mtime_ns == mtime
    assert [r["input"] for r in records(out)][4:] == ["broken.jpg"]
    # A changed input is redone; so is everything when the settings change.
    Image.fromarray(make_image(40, 50, seed=9)).save(src / "img0.png")
    redo = run(fixed_config, "-i", src, "-o", out)
    assert "2 files already done" in redo.output
    changed = run(fixed_config, "-i", src, "-o", out, "--dst", "0.9")
    assert "already done" not in changed.output
    assert run(fixed_config, "-i", src, "-o", out, "--no-resume").exit_code == 1


def test_killed_run_resumes_without_duplicates(tmp_path, fixed_config, monkeypatch):
    from dp2 import dataset

    src, out = tmp_path / "in", tmp_path / "out"
    make_folder(src)
    (src / "broken.jpg").unlink()
    calls = {"n": 0}
    original = dataset.anonymize_image_file

    def dies_on_second(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(dataset, "anonymize_image_file", dies_on_second)
    assert run(fixed_config, "-i", src, "-o", out).exit_code == 130
    monkeypatch.setattr(dataset, "anonymize_image_file", original)
    assert run(fixed_config, "-i", src, "-o", out).exit_code == 0
    recs = records(out)
    assert sorted(r["input"] for r in recs) == ["img0.png", "img2.png", "sub/img1.png"], "each file done once"
    assert all(r["status"] == "ok" for r in recs)
    assert not [p for p in out.rglob("*") if ".partial" in p.name]


def test_file_seed_depends_only_on_seed_and_path():
    assert file_seed(0, "a.jpg") == file_seed(0, "a.jpg")
    assert len({file_seed(0, f"{i}.jpg") for i in range(100)}) == 100
    assert file_seed(0, "a.jpg") != file_seed(1, "a.jpg")


def test_torn_last_line_is_skipped_and_kept_apart(tmp_path, fixed_config):
    # A run killed while writing its manifest leaves a line without newline; the next run's
    # records must not be glued to it.
    src, out = tmp_path / "in", tmp_path / "out"
    make_folder(src)
    (src / "broken.jpg").unlink()
    out.mkdir()
    (out / MANIFEST_NAME).write_text('{"input": "img0.png", "sta')
    assert run(fixed_config, "-i", src, "-o", out).exit_code == 0
    lines = (out / MANIFEST_NAME).read_text().splitlines()
    assert lines[0] == '{"input": "img0.png", "sta'
    assert sorted(json.loads(line)["input"] for line in lines[1:]) == ["img0.png", "img2.png", "sub/img1.png"]


def test_import_dp2_needs_no_ray():
    code = ("import sys, dp2, dp2.cli, dp2.dataset, dp2.distributed.ray_backend; "
            "assert callable(dp2.anonymize_dataset); assert 'ray' not in sys.modules, 'ray imported'")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


def test_dataset_api_checks_option_names(tmp_path, fixed_config):
    import dp2

    with pytest.raises(TypeError, match="did you mean max_res"):
        dp2.anonymize_dataset(fixed_config, tmp_path, tmp_path / "out", max_resolution=512)
    with pytest.raises(ValueError, match="max_res"):
        dp2.anonymize_dataset(fixed_config, tmp_path, tmp_path / "out", max_res=0)


def test_ray_needs_a_folder(tmp_path, fixed_config):
    image = tmp_path / "a.png"
    Image.fromarray(make_image(40, 50)).save(image)
    result = run(fixed_config, "-i", image, "-o", tmp_path / "b.png", "--ray")
    assert result.exit_code == 2 and "-i must be a folder" in result.output
