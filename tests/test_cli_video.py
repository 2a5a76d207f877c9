"""Videos through the CLI: every frame anonymized, ranges exact, audio copied, nothing half-written."""
import av
import numpy as np
import pytest
from click.testing import CliRunner

from dp2.cli import main
from dp2.io.video import VideoReader

from media_factory import FPS, N, make_clip

BOX = (20, 16, 44, 40)


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def frames_of(path):
    with VideoReader(path) as reader:
        return [(f, t) for f, t in reader]


def audio_payloads(path):
    with av.open(str(path)) as c:
        if not c.streams.audio:
            return []
        return [bytes(p) for p in c.demux(c.streams.audio[0]) if p.size]


def assert_all_anonymized(frames):
    x0, y0, x1, y1 = BOX
    for frame, _ in frames:
        # lossy encode: the blacked-out box must stay (near) black in every frame
        assert frame[y0 + 2:y1 - 2, x0 + 2:x1 - 2].max() < 40


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_clip(tmp_path_factory.mktemp("v") / "clip.mp4")


def test_video_every_frame_and_audio_copied(tmp_path, fixed_config, clip):
    out = tmp_path / "out.mp4"
    result = run(fixed_config, "-i", clip, "-o", out)
    assert result.exit_code == 0, result.output
    frames = frames_of(out)
    assert len(frames) == N
    assert_all_anonymized(frames)
    assert audio_payloads(out) == audio_payloads(clip), "audio must be stream-copied"


def test_video_range_contains_only_that_range(tmp_path, fixed_config, clip):
    out = tmp_path / "range.mp4"
    assert run(fixed_config, "-i", clip, "-o", out, "--st", "0.4", "--et", "1.2").exit_code == 0
    frames = frames_of(out)
    assert len(frames) == round(0.8 * FPS)
    assert frames[0][1] == pytest.approx(0.0, abs=1e-3)
    assert_all_anonymized(frames)


def test_video_fps_and_avi_and_default_name(tmp_path, fixed_config, clip):
    src = tmp_path / "c.mp4"
    src.write_bytes(clip.read_bytes())
    assert run(fixed_config, "-i", src, "--fps", "10").exit_code == 0
    frames = frames_of(tmp_path / "c_anonymized.mp4")
    assert len(frames) == 20
    assert run(fixed_config, "-i", src, "-o", tmp_path / "c.avi").exit_code == 0
    assert_all_anonymized(frames_of(tmp_path / "c.avi"))


def test_video_without_audio(tmp_path, fixed_config):
    src = make_clip(tmp_path / "silent.mkv", audio_codec=None)
    assert run(fixed_config, "-i", src, "-o", tmp_path / "o.mkv").exit_code == 0
    assert len(frames_of(tmp_path / "o.mkv")) == N and audio_payloads(tmp_path / "o.mkv") == []


@pytest.mark.parametrize("content", [b"", b"definitely not a video", None])
def test_bad_video_exit_1_nothing_written(tmp_path, fixed_config, clip, content):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(content if content is not None else clip.read_bytes()[: len(clip.read_bytes()) // 2])
    result = run(fixed_config, "-i", bad, "-o", tmp_path / "o.mp4")
    assert result.exit_code == 1, result.output
    assert "bad.mp4" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.mp4", "fixed_config.py"]


def test_interrupt_leaves_no_output(tmp_path, fixed_config, clip, monkeypatch):
    from dp2.anonymizer import Anonymizer

    calls = {"n": 0}
    original = Anonymizer.anonymize

    def interrupted(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Anonymizer, "anonymize", interrupted)
    result = run(fixed_config, "-i", clip, "-o", tmp_path / "o.mp4")
    assert result.exit_code == 130
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fixed_config.py"]


def test_folder_with_video_and_export(tmp_path, fixed_config, clip):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "v.mp4").write_bytes(clip.read_bytes())
    export = tmp_path / "dets.json"
    assert run(fixed_config, "-i", src, "-o", tmp_path / "out", "--export-detections", export).exit_code == 0
    assert len(frames_of(tmp_path / "out" / "sub" / "v.mp4")) == N
    import json

    items = json.loads(export.read_text())["items"]
    assert len(items) == N and items[-1]["source"] == "sub/v.mp4" and items[-1]["frame"] == N - 1
