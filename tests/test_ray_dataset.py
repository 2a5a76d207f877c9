"""Folder runs on a local Ray cluster (2 CPUs): the single-machine bytes, no file lost or done twice.

One Ray session serves the whole module (starting Ray takes seconds); workers import the test
detectors of ``helpers`` through PYTHONPATH.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'dp2-anonymizer[ray]'")
pytest.importorskip("ray.data", reason="Ray Data is not installed: pip install 'dp2-anonymizer[ray]'")

from click.testing import CliRunner  # noqa: E402
from PIL import Image  # noqa: E402

import dp2  # noqa: E402
from dp2.cli import main  # noqa: E402
from dp2.io.manifest import MANIFEST_NAME  # noqa: E402

from helpers import FIXED_CONFIG, REPO, WORKER_HAZARD_CONFIG, make_image  # noqa: E402
from media_factory import make_clip  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context")  # Ray's own, on copying
TESTS = Path(__file__).resolve().parent
ODD_SIZE_HW = (41, 53)  # the one image of this size is where the test detectors kill their worker


@pytest.fixture(scope="module")
def cluster():
    """A local Ray cluster for this module; returns its address (for drivers in other processes)."""
    with pytest.MonkeyPatch.context() as mp:
        # The raylet passes its environment to every worker, whichever driver started it.
        mp.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])))
        mp.setenv("DP2_NO_PROGRESS", "1")
        ray.init(num_cpus=2, include_dashboard=False, object_store_memory=200 * 2**20, log_to_driver=False)
        try:
            yield ray.get_runtime_context().gcs_address
        finally:
            ray.shutdown()


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """30 small images (some in sub-folders, one of ODD_SIZE_HW), 2 short clips, a broken file."""
    src = tmp_path_factory.mktemp("dataset") / "in"
    (src / "a" / "b").mkdir(parents=True)
    for i in range(30):
        h, w = ODD_SIZE_HW if i == 17 else (40 + i % 3, 50)
        sub = ("a/b", "a", ".")[i % 3]
        Image.fromarray(make_image(h, w, seed=i)).save(src / sub / f"img{i:02d}.{'png' if i % 2 else 'jpg'}")
    make_clip(src / "clip_audio.mp4")
    make_clip(src / "a" / "clip_silent.mp4", audio_codec=None, frame_times=[i / 25 for i in range(20)])
    (src / "broken.jpg").write_bytes(b"not a jpeg")
    return src


@pytest.fixture(scope="module")
def reference(folder, tmp_path_factory) -> Path:
    """The single-machine folder run, as a user makes it: the command in a fresh process."""
    root = tmp_path_factory.mktemp("reference")
    config = root / "fixed.py"
    config.write_text(FIXED_CONFIG.format(generator="MaskOut", args="fill='black'", boxes=[[20, 16, 44, 40]]))
    result = subprocess.run([sys.executable, str(REPO / "anonymize.py"), str(config), "-i", str(folder),
                             "-o", str(root / "out"), "-q"], capture_output=True, text=True)
    assert result.returncode == 1, result.stderr  # broken.jpg
    return root / "out"


def hazard_config(path: Path, detector: str, **args) -> Path:
    arguments = ", ".join(f"{k}={v!r}" for k, v in args.items())
    path.write_text(WORKER_HAZARD_CONFIG.format(detector=detector, args=arguments))
    return path


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / MANIFEST_NAME).read_text().splitlines()]


def outputs(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()
            and p.name != MANIFEST_NAME}


def assert_each_file_done_once(out: Path, reference: Path) -> None:
    """Every listed file has exactly one ok record (broken.jpg only failed ones), the outputs are
    the reference's bytes, and no temporary is left."""
    by_file: dict[str, list[str]] = {}
    for r in records(out):
        by_file.setdefault(r["input"], []).append(r["status"])
    expected = {r["input"] for r in records(reference)}
    assert set(by_file) == expected and len(expected) == 33
    assert all(statuses == ["ok"] for name, statuses in by_file.items() if name != "broken.jpg"), by_file
    assert set(by_file["broken.jpg"]) == {"failed"}
    ours, theirs = outputs(out), outputs(reference)
    assert sorted(ours) == sorted(theirs)  # nothing extra: no temporaries left
    assert [name for name in ours if ours[name] != theirs[name]] == [], "outputs differ from the single-machine run"


@dataclass
class RayRun:
    input: Path
    out: Path
    config: Path
    marker: Path
    summary: object


@pytest.fixture(scope="module")
def ray_run(cluster, folder, tmp_path_factory) -> RayRun:
    """A Ray run on 2 workers during which the worker processing the ODD_SIZE_HW image dies once."""
    root = tmp_path_factory.mktemp("ray")
    marker = root / "died_once"
    config = hazard_config(root / "dies_once.py", "DyingDetector", die_on_size_hw=list(ODD_SIZE_HW),
                           once_marker=str(marker))
    summary = dp2.anonymize_dataset(config, folder, root / "out", num_workers=2, batch_size=4, max_retries=2)
    return RayRun(folder, root / "out", config, marker, summary)


def test_killed_worker_loses_nothing_and_bytes_match_single_machine(ray_run, reference):
    assert ray_run.marker.exists(), "the worker was killed"
    assert_each_file_done_once(ray_run.out, reference)
    summary = ray_run.summary
    assert (summary.files, summary.anonymized, summary.skipped) == (33, 32, 0)
    assert [rel for rel, _ in summary.failures] == ["broken.jpg"]
    assert "not a readable image" in summary.failures[0][1]
    ours = {r["input"]: r for r in records(ray_run.out)}
    for r in records(reference):  # the single-machine manifest's detections and frame counts
        assert (ours[r["input"]]["detections"], ours[r["input"]]["frames"]) == (r["detections"], r["frames"])
    assert ours["clip_audio.mp4"]["frames"] == 50 and ours["clip_audio.mp4"]["detections"] == {"faces": 50}


def test_rerun_skips_what_is_done_and_retries_failures(ray_run, reference):
    before = len(records(ray_run.out))
    summary = dp2.anonymize_dataset(ray_run.config, ray_run.input, ray_run.out, num_workers=2, max_retries=0)
    assert (summary.skipped, summary.anonymized, len(summary.failures)) == (32, 0, 1)
    assert [r["input"] for r in records(ray_run.out)[before:]] == ["broken.jpg"]
    assert_each_file_done_once(ray_run.out, reference)


def test_worker_dying_on_every_try_fails_that_file_only(cluster, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for i in range(4):
        h, w = ODD_SIZE_HW if i == 2 else (40, 50)
        Image.fromarray(make_image(h, w, seed=i)).save(src / f"img{i}.png")
    config = hazard_config(tmp_path / "always_dies.py", "DyingDetector", die_on_size_hw=list(ODD_SIZE_HW))
    summary = dp2.anonymize_dataset(config, src, tmp_path / "out", num_workers=2, batch_size=4, max_retries=0)
    assert summary.anonymized == 3
    assert [rel for rel, _ in summary.failures] == ["img2.png"]
    assert "worker process died" in summary.failures[0][1]
    assert sorted((r["input"], r["status"]) for r in records(tmp_path / "out")) == [
        ("img0.png", "ok"), ("img1.png", "ok"), ("img2.png", "failed"), ("img3.png", "ok")]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["dp2_manifest.jsonl", "img0.png", "img1.png",
                                                                     "img3.png"]


def test_cli_driver_killed_midway_then_rerun(cluster, folder, reference, tmp_path):
    config = hazard_config(tmp_path / "slow.py", "SlowDetector", delay_s=0.1)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))}
    args = [str(config), "-i", str(folder), "-o", str(out), "--ray", cluster, "--ray-batch-size", "2"]
    driver = subprocess.Popen([sys.executable, str(REPO / "anonymize.py"), *args], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not ((out / MANIFEST_NAME).exists() and len(records(out)) >= 4):
            assert driver.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        driver.kill()
        driver.wait()
    first = len(records(out))
    assert first < 33
    result = CliRunner().invoke(main, [*args, "-q"])
    assert result.exit_code == 1, result.output  # broken.jpg, listed
    assert "1 file failed:" in result.output and "broken.jpg" in result.output
    assert "already done in an earlier run" in result.output
    assert_each_file_done_once(out, reference)
