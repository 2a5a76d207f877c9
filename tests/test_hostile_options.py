"""Hostile command lines (issue 10): every bad value, path or file gets one clear line naming it
and a known exit code, never a traceback, a segfault or an abort.

One row per case: the arguments, the exit code expected, and a piece of the one-line message.
Each row runs in its own process (see cli_rows.py), so a crash fails its row with the signal
(returncode -11 for a segfault, -6 for an abort) instead of taking pytest down.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from PIL import Image

from helpers import REPO, make_image
from media_factory import make_clip, make_resolution_change_clip

GAUSSIAN = str(REPO / "configs/anonymizers/traditional/face/gaussian.py")
NO_DISPLAY = {"DISPLAY": None, "WAYLAND_DISPLAY": None}


@dataclass(frozen=True)
class Row:
    id: str
    args: tuple[str, ...]  # after the config; {clip}, {image}, {out}, ... are filled in
    code: int
    message: str  # must appear within one line of stderr; placeholders as in args
    config: str = GAUSSIAN
    env: dict = field(default_factory=dict)
    patch: tuple[str, str] | None = None  # cli_rows.PATCHES
    outputs: tuple[str, ...] = ()  # files (under {out}) that must exist afterwards


ROWS = [
    # Video writer set-up: refused up front, or one line and the folder run goes on.
    Row("et_inf", ("-i", "{clip}", "-o", "{out}/o.mp4", "--et", "inf"), 2,
        "--end-time/--et: inf is not a finite number of seconds"),
    Row("st_nan", ("-i", "{clip}", "-o", "{out}/o.mp4", "--st", "nan"), 2,
        "--start-time/--st: nan is not a finite number of seconds"),
    Row("et_before_st", ("-i", "{clip}", "-o", "{out}/o.mp4", "--st", "1", "--et", "0.5"), 2,
        "--end-time (0.5) must be after --start-time (1.0)"),
    Row("et_zero", ("-i", "{clip}", "-o", "{out}/o.mp4", "--et", "0"), 2,
        "--end-time (0.0) must be after --start-time (0.0)"),
    Row("fps_inf", ("-i", "{clip}", "-o", "{out}/o.mp4", "--fps", "inf"), 2, "--fps: inf is not a finite frame rate"),
    Row("codec_aac", ("-i", "{clip}", "-o", "{out}/o.mp4", "--codec", "aac"), 2,
        "'aac' is an audio encoder, not a video encoder; use e.g. libx264"),
    Row("codec_mov_text", ("-i", "{clip}", "-o", "{out}/o.mp4", "--codec", "mov_text"), 2,
        "'mov_text' is a subtitle encoder, not a video encoder"),
    Row("codec_unknown", ("-i", "{clip}", "-o", "{out}/o.mp4", "--codec", "nope"), 2,
        "'nope' is not a video encoder of this PyAV/FFmpeg build"),
    Row("writer_cannot_open", ("-i", "{clip}", "-o", "{out}/o.mp4"), 1,
        "clip.mp4: [Errno 13] Permission denied: '{out}/o.mp4'",
        patch=("writer_fails_for", "o.mp4")),
    Row("folder_writer_cannot_open_in_a_subfolder", ("-i", "{folder}", "-o", "{out}/f"), 1,
        "sub/clip.mp4: [Errno 13] Permission denied", patch=("writer_fails_for", "/sub/"), outputs=("f/a.mp4",)),
    # Video content.
    Row("resolution_changes_mid_stream", ("-i", "{sizes}", "-o", "{out}/o.mkv"), 0,
        "sizes.mkv: resolution changes mid-stream (64x48 -> 96x80 at t=0.400 s)", outputs=("o.mkv",)),
    Row("avi_drops_the_audio_lead_in", ("-i", "{late}", "-o", "{out}/o.avi"), 0,
        "AVI can't start audio before the video", outputs=("o.avi",)),
    # Option values.
    Row("dst_1", ("-i", "{image}", "-o", "{out}/o.png", "--dst", "1"), 2, "1.0 is not in the range 0<=x<1"),
    Row("seed_negative", ("-i", "{image}", "-o", "{out}/o.png", "--seed=-5"), 2,
        "-5 is not in the range 0<=x<=4294967295"),
    Row("seed_huge", ("-i", "{image}", "-o", "{out}/o.png", "--seed", str(2**70)), 2,
        f"{2**70} is not in the range 0<=x<=4294967295"),
    # Paths the OS refuses to look at, and a cache folder that cannot be one.
    Row("output_name_too_long", ("-i", "{image}", "-o", "{out}/" + "a" * 300 + ".png"), 2, "File name too long"),
    Row("input_name_too_long", ("-i", "{out}/" + "a" * 300 + ".png", "-o", "{out}/o.png"), 2, "File name too long"),
    Row("cache_dir_is_a_file", ("-i", "{image}", "-o", "{out}/o.png", "--cache", "--cache-dir", "{image}"), 2,
        "--cache-dir: cannot use {image} as the cache folder (Not a directory)"),
    # --opt values a component refuses when it is built.
    Row("opt_upscale_0", ("-i", "{image}", "-o", "{out}/o.png", "--opt", "detector.upscale=0"), 2,
        "cannot build anonymizer.detector (dp2.detection.centerface.CenterFaceDetector): upscale"),
    Row("opt_sigma_fraction_0",
        ("-i", "{image}", "-o", "{out}/o.png", "--opt", "anonymizer.face.generator.sigma_fraction=0"), 2,
        "cannot build anonymizer.face.generator (dp2.generation.classic.GaussianBlur): sigma_fraction"),
    Row("opt_mask_scale_0", ("-i", "{image}", "-o", "{out}/o.png", "--opt", "anonymizer.face.mask_scale=0"), 2,
        "cannot build anonymizer.face (dp2.stages.RegionFilterStage): mask_scale"),
    # Replacing a node that builds an object is refused before anything is built (--opt sets fields only).
    Row("opt_face_none", ("-i", "{image}", "-o", "{out}/o.png", "--opt", "anonymizer.face=None"), 2,
        "override anonymizer.face: this node builds dp2.stages.RegionFilterStage; overrides set its fields"),
    Row("opt_nan", ("-i", "{image}", "-o", "{out}/o.png", "--opt", "detector.score_threshold=nan"), 2,
        "cannot build anonymizer.detector"),
    # Config files that fail.
    Row("config_raises", ("-i", "{image}", "-o", "{out}/o.png"), 2,
        "raises.py line 2: ZeroDivisionError: division by zero", config="{raises}"),
    Row("config_syntax_error", ("-i", "{image}", "-o", "{out}/o.png"), 2, "broken.py: syntax error on line 1",
        config="{broken}"),
    Row("config_exits", ("-i", "{image}", "-o", "{out}/o.png"), 2, "exits.py line 2: SystemExit: 3",
        config="{exits}"),
    # Camera and window.
    Row("webcam_without_camera", ("--webcam", "3"), 1, "cannot open webcam 3", env={"DISPLAY": ":99"}),
    Row("webcam_without_display", ("--webcam", "0"), 2, "--webcam shows the anonymized stream in a window, but",
        env=NO_DISPLAY),
    Row("visualize_without_display", ("-i", "{image}", "-o", "{out}/o.png", "-v"), 0,
        "-v/--visualize: cannot show a window", env=NO_DISPLAY, outputs=("o.png",)),
]


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("hostile")
    image = root / "face.png"
    Image.fromarray(make_image(64, 80)).save(image)
    folder = root / "folder"
    (folder / "sub").mkdir(parents=True)
    make_clip(folder / "a.mp4", audio_codec=None)
    make_clip(folder / "sub" / "clip.mp4", audio_codec=None)
    configs = {"raises": "x = 1\ny = x / 0\n", "broken": "x = (\n", "exits": "import sys\nsys.exit(3)\n"}
    for name, text in configs.items():
        (root / f"{name}.py").write_text(text)
    return {"root": str(root), "clip": str(make_clip(root / "clip.mp4")), "image": str(image), "folder": str(folder),
            "sizes": str(make_resolution_change_clip(root / "sizes.mkv")),
            "late": str(make_clip(root / "late.mp4", video_delay_s=0.5)),
            **{name: str(root / f"{name}.py") for name in configs}}


@pytest.fixture(scope="module")
def results(media) -> dict[str, tuple[Row, dict, Path, dict]]:
    """Every row, run once (in one runner process that forks a child per row)."""
    requests, outs, all_values = [], [], []
    for row in ROWS:
        out = Path(media["root"]) / "out" / row.id
        out.mkdir(parents=True)
        values = {**media, "out": str(out)}
        args = [row.config.format(**values), *(a.format(**values) for a in row.args)]
        requests.append({"args": args, "cwd": str(out), "env": {"DP2_NO_PROGRESS": "1", **row.env},
                         "patch": list(row.patch) if row.patch else None, "timeout": 180})
        outs.append(out)
        all_values.append(values)
    tests = Path(__file__).resolve().parent
    done = subprocess.run([sys.executable, str(tests / "cli_rows.py")], input=json.dumps(requests),
                          capture_output=True, text=True, cwd=REPO, timeout=1800,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(tests)])})
    assert done.returncode == 0, done.stderr[-3000:]
    return {row.id: (row, result, out, values) for row, result, out, values in
            zip(ROWS, json.loads(done.stdout), outs, all_values)}


@pytest.mark.parametrize("row_id", [row.id for row in ROWS])
def test_hostile_command_line(results, row_id):
    row, result, out, values = results[row_id]
    output = result["stdout"] + result["stderr"]
    assert result["returncode"] == row.code, f"exit {result['returncode']} (negative: killed by that signal)\n{output}"
    assert "Traceback" not in output, output
    message = row.message.format(**values)
    assert any(message in line for line in result["stderr"].splitlines()), f"no line has {message!r}\n{output}"
    for name in row.outputs:
        assert (out / name).is_file(), f"{name} was not written\n{output}"
