"""What a run prints: bars on a terminal (checked through a pseudo-terminal) with warnings above them,
never inside; plain progress lines without a terminal; counts in words; INFO only with --verbose."""
from __future__ import annotations

import io
import os
import re
import select
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

import dp2.progress as progress
from dp2.cli import main
from dp2.cli_output import count, counts

from helpers import REPO, make_image
from media_factory import N, make_clip

pty = pytest.importorskip("pty", reason="pseudo-terminals need a POSIX system")
fcntl = pytest.importorskip("fcntl")
termios = pytest.importorskip("termios")

CHATTY = """
from dp2.anonymizer import Anonymizer
from dp2.stages import RegionFilterStage
from dp2.config import LazyCall as L
from dp2.generation.classic import MaskOut
from helpers import ChattyFixedDetector

detector = L(ChattyFixedDetector)(boxes=[[10, 10, 30, 30]])
anonymizer = L(Anonymizer)(detector="${detector}", face=L(RegionFilterStage)(generator=L(MaskOut)(fill="black")))
"""
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@pytest.fixture
def mixed_folder(tmp_path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(make_image(48, 64, seed=i)).save(folder / f"photo{i}.png")
    make_clip(folder / "clip.mp4")
    return folder


def _run_in_pty(args: list[str], cwd: Path, timeout: float = 240) -> tuple[int, str]:
    """Run ``python -m dp2 ARGS`` with a pseudo-terminal as stdin, stdout and stderr."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))  # 30 rows, 100 columns
    env = {k: v for k, v in os.environ.items() if k != "DP2_NO_PROGRESS"}
    env.update(PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "tests")]), COLUMNS="100", LINES="30",
               TERM="xterm")
    proc = subprocess.Popen([sys.executable, "-m", "dp2", *args], cwd=cwd, env=env, stdin=slave, stdout=slave,
                            stderr=slave, close_fds=True)
    os.close(slave)
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
        code = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    return code, b"".join(chunks).decode("utf-8", "replace")


def test_bars_on_a_terminal_with_warnings_above_them_never_inside(tmp_path, mixed_folder):
    config = tmp_path / "chatty.py"
    config.write_text(CHATTY)
    code, raw = _run_in_pty([str(config), "-i", str(mixed_folder), "-o", str(tmp_path / "out")], tmp_path)
    assert code == 0, raw
    segments = [ANSI.sub("", s).strip() for s in re.split(r"[\r\n]", raw)]
    segments = [s for s in segments if s]
    bars = [s for s in segments if re.search(r"\|\s*\d+/\d+ \[", s)]
    assert any(s.startswith("files:") for s in bars), raw      # the files bar
    assert any(s.startswith("clip.mp4:") for s in bars), raw   # the frames bar of the video
    warnings = [s for s in segments if "chatty detector saw" in s]
    assert len(warnings) >= 3 + N // 2, raw
    glued = [s for s in warnings if not s.startswith("warning: chatty detector saw a ")]
    assert not glued, f"log text inside a bar line: {glued[:3]}"
    assert not [s for s in segments if s.startswith("INFO") or " INFO " in s], raw
    summary = [s for s in segments if s.startswith("anonymized ")]
    assert summary == [f"anonymized 4 files (3 images, 1 video with {N} frames): "
                       f"{3 + N} faces -> {tmp_path / 'out'}"], summary


def test_without_a_terminal_progress_comes_as_plain_lines(monkeypatch):
    monkeypatch.delenv("DP2_NO_PROGRESS", raising=False)
    monkeypatch.setattr(progress, "LINE_INTERVAL_S", 0.0)
    stream = io.StringIO()
    bar = progress.progress_bar(total=3, desc="files", unit="file", stream=stream)
    for _ in range(3):
        bar.update(1)
    bar.close()
    text = stream.getvalue()
    assert "\r" not in text and "\x1b" not in text
    lines = text.splitlines()
    assert lines and all(line.startswith("files:") for line in lines), text
    assert any("3/3" in line for line in lines), text


def test_a_bar_prints_at_most_a_line_per_interval(monkeypatch):
    monkeypatch.delenv("DP2_NO_PROGRESS", raising=False)
    stream = io.StringIO()
    bar = progress.progress_bar(total=1000, desc="clip.mp4", stream=stream)
    for _ in range(1000):  # well under LINE_INTERVAL_S
        bar.update(1)
    bar.close()
    assert len(stream.getvalue().splitlines()) <= 2, stream.getvalue()


def test_counts_read_naturally():
    assert count(1, "face") == "1 face" and count(2, "face") == "2 faces" and count(0, "file") == "0 files"
    assert counts({"faces": 1, "persons": 2, "cse_persons": 1}) == "1 face, 2 persons, 1 person with CSE"


def test_info_only_with_verbose(tmp_path, fixed_config):
    image = tmp_path / "in.png"
    Image.fromarray(make_image(64, 80)).save(image)
    quiet = CliRunner().invoke(main, [str(fixed_config), "-i", str(image), "-o", str(tmp_path / "a.png")])
    assert quiet.exit_code == 0, quiet.output
    assert quiet.output.strip().splitlines() == [f"anonymized in.png: 1 face -> {tmp_path / 'a.png'}"]
    verbose = CliRunner().invoke(main, [str(fixed_config), "-i", str(image), "-o", str(tmp_path / "b.png"),
                                        "--verbose"])
    assert verbose.exit_code == 0 and "INFO dp2" in verbose.output, verbose.output
