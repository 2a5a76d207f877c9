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


def test_lossless_output_is_exact_outside_the_face(tmp_path, fixed_config):
    from media_factory import _image

    src = tmp_path / "in.mkv"
    with __import__("dp2.io.video", fromlist=["VideoWriter"]).VideoWriter(src, fps=25, size_hw=(48, 64), lossless=True) as w:
        for i in range(10):
            w.write(_image(i))
    assert run(fixed_config, "-i", src, "-o", tmp_path / "out.mkv", "--lossless").exit_code == 0
    x0, y0, x1, y1 = BOX
    for (frame, _), i in zip(frames_of(tmp_path / "out.mkv"), range(10)):
        expected = _image(i).copy()
        expected[y0 - 4:y1 + 4, x0 - 4:x1 + 4] = frame[y0 - 4:y1 + 4, x0 - 4:x1 + 4]
        assert np.array_equal(frame, expected) and frame[y0:y1, x0:x1].max() == 0


@pytest.mark.slow
def test_memory_stays_flat_on_a_ten_minute_clip(tmp_path):
    """10 minutes of low-res video stream through decode -> detect -> anonymize -> encode
    without the process growing with the clip's length."""
    import resource

    from dp2.anonymizer import Anonymizer
    from dp2.detection.fixed import FixedFaceDetector
    from dp2.generation.classic import GaussianBlur
    from dp2.generation.latents import LatentSampler
    from dp2.io.sources import array_frames
    from dp2.io.video import VideoReader, VideoWriter
    from dp2.runner import FrameProcessor, TemporalStage, run_frames
    from dp2.stages import RegionFilterStage

    fps, seconds = 2, 600  # 10 minutes; a low frame rate keeps the test quick
    src = tmp_path / "long.mkv"
    frame = np.zeros((32, 48, 3), np.uint8)
    with VideoWriter(src, fps=fps, size_hw=(32, 48)) as writer:
        for i in range(fps * seconds):
            frame[:] = i % 200
            writer.write(frame)
    anonymizer = Anonymizer(detector=FixedFaceDetector(boxes=[[10, 8, 22, 20]]),
                            face=RegionFilterStage(generator=GaussianBlur()))
    process = FrameProcessor(anonymizer, next_seed=LatentSampler(0).next_seed)
    rss = []

    with VideoReader(src) as reader, VideoWriter(tmp_path / "out.mkv", fps=fps, size_hw=(32, 48)) as writer:
        def emit(f, result):
            writer.write(result.permute(1, 2, 0).numpy(), time_s=f.time_s)
            if f.index % 200 == 199:
                rss.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # KiB on Linux

        stats = run_frames(array_frames(iter(reader), str(src)), process, emit,
                           temporal=TemporalStage(next_seed=process.next_seed, max_gap=5))
    assert stats.frames == fps * seconds
    # Peak RSS after the first 200 frames vs after all 1200: no growth with length (8 MiB slack).
    assert rss[-1] - rss[0] < 8 * 1024, rss
