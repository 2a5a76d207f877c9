"""Tests for dp2.io.video on tiny synthetic clips written with PyAV."""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from dp2.io.video import VideoError, VideoInfo, VideoReader, VideoWriter, probe_video

from media_factory import FPS, H, N, W, _image, _make_clip, _sine, make_resolution_change_clip, write_sine

HAMILTON = Path(__file__).resolve().parents[2].parent / "shared" / "corpus" / "videos" / "fr_short_hamilton_clip.mp4"
VFR_TIMES = [0.0, 0.04, 0.08, 0.2, 0.22, 0.5, 0.54, 0.9, 1.0, 1.3]


def _read_all(path: Path, **kwargs) -> tuple[list[np.ndarray], list[float]]:
    with VideoReader(path, **kwargs) as reader:
        frames, times = [], []
        for frame, time_s in reader:
            frames.append(frame)
            times.append(time_s)
    return frames, times


def _packets(path: Path, kind: str) -> list[av.Packet]:
    with av.open(str(path)) as container:
        stream = getattr(container.streams, kind)[0]
        return [p for p in container.demux(stream) if p.size]


def _first_time(path: Path, kind: str) -> float:
    """Earliest presentation time (container clock, s) of the stream's packets."""
    return min(float(p.pts * p.time_base) for p in _packets(path, kind))


def _first_frame_time(path: Path) -> float:
    with av.open(str(path)) as container:
        return next(container.decode(video=0)).time


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("clips")
    return {
        "cfr": _make_clip(root / "cfr.mp4"),
        "vfr": _make_clip(root / "vfr.mkv", frame_times=VFR_TIMES, audio_codec=None),
        "late_video": _make_clip(root / "late_video.mp4", video_delay_s=0.5),
        "rotated": _make_clip(root / "rotated.mp4", rotation=90, audio_codec=None),
        "mp3": _make_clip(root / "mp3.mkv", audio_codec="libmp3lame"),
    }


# ----------------------------------------------------------------------------- probe


def test_probe_reports_size_rate_and_audio(clips):
    info = probe_video(clips["cfr"])
    assert isinstance(info, VideoInfo)
    assert info.size_hw == (H, W)
    assert info.fps == pytest.approx(25.0)
    assert info.num_frames == N
    assert info.duration_s == pytest.approx(2.0, abs=0.05)
    assert info.rotation == 0
    assert info.has_audio
    assert info.video_codec == "h264"
    assert info.start_time_s == pytest.approx(0.0)


def test_probe_late_video_start(clips):
    info = probe_video(clips["late_video"])
    assert info.start_time_s == pytest.approx(0.5, abs=1e-3)


def test_probe_missing_path(tmp_path):
    with pytest.raises(VideoError, match="no such file") as e:
        probe_video(tmp_path / "nope.mp4")
    assert "nope.mp4" in str(e.value)


def test_probe_zero_byte_file(tmp_path):
    path = tmp_path / "empty.mp4"
    path.touch()
    with pytest.raises(VideoError, match=r"empty.mp4.*0 bytes"):
        probe_video(path)


def test_probe_text_file_named_mp4(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("not a video\n" * 20)
    with pytest.raises(VideoError, match=r"notes.mp4: not a readable video file") as e:
        probe_video(path)
    assert "\n" not in str(e.value)


def test_probe_audio_only_file(tmp_path):
    path = tmp_path / "sound.mp4"
    container = av.open(str(path), "w")
    stream = container.add_stream("aac", rate=44100)
    stream.layout = "mono"
    write_sine(container, stream, 1.0)
    container.close()
    with pytest.raises(VideoError, match=r"sound.mp4: no video stream"):
        probe_video(path)


def test_truncated_mp4_with_index_at_end_fails_on_probe(clips, tmp_path):
    # Default mp4 puts the index (moov) at the end: half a file has none.
    data = clips["cfr"].read_bytes()
    path = tmp_path / "half.mp4"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoError, match="half.mp4"):
        probe_video(path)
    with pytest.raises(VideoError, match="half.mp4"):
        VideoReader(path)


def test_truncated_faststart_mp4_yields_prefix_then_raises(tmp_path):
    # With the index first, the frames before the cut decode: the reader yields them, then
    # raises. (Cut at 3/4: in this tiny file half the bytes end inside the first key frame,
    # which probe_video already reports.)
    full = _make_clip(tmp_path / "full.mp4", audio_codec=None, faststart=True)
    data = full.read_bytes()
    path = tmp_path / "half_faststart.mp4"
    path.write_bytes(data[: len(data) * 3 // 4])
    assert probe_video(path).num_frames == N  # the index still claims every frame
    times = []
    with pytest.raises(VideoError, match=r"half_faststart.mp4: truncated or corrupt"):
        with VideoReader(path) as reader:
            for _, time_s in reader:
                times.append(time_s)
    assert 0 < len(times) < N
    assert times == pytest.approx([i / FPS for i in range(len(times))])


# ----------------------------------------------------------------------------- reading


def test_read_all_frames(clips):
    frames, times = _read_all(clips["cfr"])
    assert len(frames) == N
    assert all(f.shape == (H, W, 3) and f.dtype == np.uint8 for f in frames)
    assert times == pytest.approx([i / FPS for i in range(N)])
    # Decoded content matches what was encoded (crf 10: near lossless).
    assert np.abs(frames[7].astype(int) - _image(7)).mean() < 3


@pytest.mark.parametrize(
    ("start", "end", "first", "last"),
    [
        (0.4, 1.2, 0.4, 1.16),  # both bounds on frame times: start inclusive, end exclusive
        (1.01, 1.5, 1.04, 1.48),  # between frames, after a seek into the second half
        (None, 0.1, 0.0, 0.08),
        (1.9, None, 1.92, 1.96),
    ],
)
def test_read_range_is_exact(clips, start, end, first, last):
    all_frames, all_times = _read_all(clips["cfr"])
    frames, times = _read_all(clips["cfr"], start_time=start, end_time=end)
    assert times[0] == pytest.approx(first)
    assert times[-1] == pytest.approx(last)
    assert len(times) == round((last - first) * FPS) + 1
    # Frames after a seek equal the ones from decoding from the start.
    offset = round(first * FPS)
    for i, frame in enumerate(frames):
        np.testing.assert_array_equal(frame, all_frames[offset + i])


def test_read_range_recovers_from_a_seek_that_overshoots(clips):
    # Some demuxers land after the requested time; the reader must then decode from the start.
    all_frames, _ = _read_all(clips["cfr"])
    with VideoReader(clips["cfr"], start_time=1.0, end_time=1.2) as reader:
        seek = reader._seek
        calls = []

        def overshooting_seek(time_s: float) -> None:
            calls.append(time_s)
            seek(time_s + 0.5 if len(calls) == 1 else time_s)

        reader._seek = overshooting_seek
        frames, times = zip(*reader)
    assert calls == [1.0, 0.0]
    assert times == pytest.approx([1.0, 1.04, 1.08, 1.12, 1.16])
    for frame, t in zip(frames, times):
        np.testing.assert_array_equal(frame, all_frames[round(t * FPS)])


def test_read_range_num_frames_estimate(clips):
    with VideoReader(clips["cfr"], start_time=0.4, end_time=1.2) as reader:
        assert reader.info.num_frames == 20


def test_read_vfr_range_selects_by_time(clips):
    _, times = _read_all(clips["vfr"])
    assert times == pytest.approx(VFR_TIMES)
    _, times = _read_all(clips["vfr"], start_time=0.2, end_time=0.9)
    assert times == pytest.approx([0.2, 0.22, 0.5, 0.54])


@pytest.mark.parametrize(
    ("fps", "start", "end", "count"), [(10, None, None, 20), (30, 0.5, None, 45), (50, 0.0, 0.5, 25)]
)
def test_fps_resampling_count_and_times(clips, fps, start, end, count):
    all_frames, _ = _read_all(clips["cfr"])
    frames, times = _read_all(clips["cfr"], fps=fps, start_time=start, end_time=end)
    assert len(frames) == count
    begin = start or 0.0
    assert times == pytest.approx([begin + n / fps for n in range(count)])
    for frame, t in zip(frames, times):  # latest source frame at or before t
        np.testing.assert_array_equal(frame, all_frames[int(t * FPS + 1e-6)])


def test_fps_resampling_vfr_holds_frames(clips):
    _, times = _read_all(clips["vfr"], fps=10)
    assert len(times) == 14  # last frame at 1.3 s lasts until ~1.34 s
    frames, _ = _read_all(clips["vfr"], fps=10)
    source_frames, _ = _read_all(clips["vfr"])
    # t = 0.3 and 0.4 both show the frame from 0.22 s (index 4).
    np.testing.assert_array_equal(frames[3], source_frames[4])
    np.testing.assert_array_equal(frames[4], source_frames[4])
    frames[3][:] = 0  # duplicates are separate arrays
    assert frames[4].any()


def test_rotation_metadata_is_applied(clips):
    info = probe_video(clips["rotated"])
    assert info.rotation == 90
    assert info.size_hw == (W, H)
    frames, _ = _read_all(clips["rotated"])
    assert frames[0].shape == (W, H, 3)
    # Stored top-left marker ends up bottom-left after turning 90 deg counter-clockwise.
    np.testing.assert_allclose(frames[0][-8:, :8].mean(axis=(0, 1)), [255, 0, 0], atol=12)
    np.testing.assert_array_equal(frames[0], np.rot90(_read_stored_first_frame(clips["rotated"])))


def _read_stored_first_frame(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return next(container.decode(video=0)).to_ndarray(format="rgb24")


def test_reader_rejects_bad_arguments(clips):
    with pytest.raises(ValueError, match="end_time"):
        VideoReader(clips["cfr"], start_time=1.0, end_time=0.5)
    with pytest.raises(ValueError, match="fps"):
        VideoReader(clips["cfr"], fps=0)


# ----------------------------------------------------------------------------- writing


@pytest.mark.parametrize("ext", [".mp4", ".mkv", ".webm", ".avi", ".mov"])
def test_writer_round_trip(tmp_path, ext):
    path = tmp_path / f"out{ext}"
    with VideoWriter(path, fps=FPS, size_hw=(H, W)) as writer:
        for i in range(15):
            writer.write(_image(i))
    frames, times = _read_all(path)
    assert len(frames) == 15
    assert frames[0].shape == (H, W, 3)
    assert times == pytest.approx([i / FPS for i in range(15)], abs=1e-3)
    assert np.abs(frames[9].astype(int) - _image(9)).mean() < 6
    assert not list(tmp_path.glob(".*partial*"))


@pytest.mark.parametrize("ext", [".mkv", ".avi", ".webm"])
def test_writer_lossless_is_exact(tmp_path, ext):
    path = tmp_path / f"lossless{ext}"
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (H, W, 3), dtype=np.uint8) for _ in range(3)]
    with VideoWriter(path, fps=FPS, size_hw=(H, W), lossless=True) as writer:
        for image in images:
            writer.write(image)
    frames, _ = _read_all(path)
    for frame, image in zip(frames, images):
        np.testing.assert_array_equal(frame, image)


@pytest.mark.parametrize(
    ("ext", "decoded_hw"), [(".mp4", (H + 2, W + 2)), (".webm", (H + 1, W + 1)), (".avi", (H + 1, W + 1))]
)
def test_writer_odd_size(tmp_path, ext, decoded_hw):
    # libx264 4:2:0 pads to even size by repeating the edge; vp9 and mpeg4 keep odd sizes.
    size_hw = (H + 1, W + 1)
    path = tmp_path / f"odd{ext}"
    with VideoWriter(path, fps=FPS, size_hw=size_hw) as writer:
        for i in range(3):
            writer.write(_image(i, *size_hw))
    assert writer.encoded_size_hw == decoded_hw
    frames, _ = _read_all(path)
    assert frames[0].shape == (*decoded_hw, 3)
    assert np.abs(frames[1][: size_hw[0], : size_hw[1]].astype(int) - _image(1, *size_hw)).mean() < 6


@pytest.mark.parametrize("ext", [".mp4", ".mkv"])
def test_writer_keeps_vfr_times(clips, tmp_path, ext):
    path = tmp_path / f"vfr_out{ext}"
    with VideoReader(clips["vfr"]) as reader, VideoWriter(
        path, fps=reader.info.fps, size_hw=reader.info.size_hw
    ) as writer:
        for frame, time_s in reader:
            writer.write(frame, time_s=time_s)
    _, times = _read_all(path)
    assert times == pytest.approx(VFR_TIMES, abs=1e-3)


def test_writer_rejects_bad_frames_and_paths(tmp_path, clips):
    with pytest.raises(ValueError, match="unsupported video extension '.gif'"):
        VideoWriter(tmp_path / "x.gif", fps=FPS, size_hw=(H, W))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        VideoWriter(tmp_path / "missing_dir" / "x.mp4", fps=FPS, size_hw=(H, W))
    with pytest.raises(ValueError, match="overwrite the input"):
        VideoWriter(clips["cfr"], fps=FPS, size_hw=(H, W), audio_from=clips["cfr"])
    with pytest.raises(ValueError, match=r"shape \[H, W, 3\] = \[48, 64, 3\], got \[64, 48, 3\]"):
        with VideoWriter(tmp_path / "x.mp4", fps=FPS, size_hw=(H, W)) as writer:
            writer.write(np.zeros((W, H, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        with VideoWriter(tmp_path / "x.mp4", fps=FPS, size_hw=(H, W)) as writer:
            writer.write(np.zeros((H, W, 3), np.float32))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_writer_interrupted_leaves_nothing(tmp_path, clips, error):
    path = tmp_path / "out.mp4"
    with pytest.raises(error):
        with VideoWriter(path, fps=FPS, size_hw=(H, W), audio_from=clips["cfr"]) as writer:
            for i in range(5):
                writer.write(_image(i))
            assert len(list(tmp_path.glob(".out.*.partial.mp4"))) == 1  # work in progress is hidden
            raise error()
    assert list(tmp_path.iterdir()) == []


def test_writer_without_frames_saves_nothing(tmp_path):
    with pytest.raises(VideoError, match="no frames were written"):
        with VideoWriter(tmp_path / "out.mp4", fps=FPS, size_hw=(H, W)):
            pass
    assert list(tmp_path.iterdir()) == []


def test_writer_abort_is_explicit_and_idempotent(tmp_path):
    writer = VideoWriter(tmp_path / "out.mkv", fps=FPS, size_hw=(H, W))
    writer.write(_image(0))
    writer.abort()
    writer.abort()
    writer.close()  # no-op after abort
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- audio


def _copy_clip(source: Path, out: Path, **reader_kwargs) -> None:
    start, end = reader_kwargs.get("start_time"), reader_kwargs.get("end_time")
    with VideoReader(source, **reader_kwargs) as reader, VideoWriter(
        out, fps=reader.info.fps, size_hw=reader.info.size_hw, audio_from=source, audio_start_s=start, audio_end_s=end
    ) as writer:
        for frame, time_s in reader:
            writer.write(frame, time_s=time_s)


@pytest.mark.parametrize("ext", [".mp4", ".mkv", ".mov"])
@pytest.mark.parametrize("clip", ["cfr", "late_video"])
def test_audio_is_stream_copied_in_sync(clips, tmp_path, ext, clip):
    source = clips[clip]
    out = tmp_path / f"out{ext}"
    _copy_clip(source, out)
    source_packets, out_packets = _packets(source, "audio"), _packets(out, "audio")
    assert [bytes(p) for p in out_packets] == [bytes(p) for p in source_packets]
    # Offset of the audio start to the first video frame is preserved (late_video: -0.5 s).
    source_offset = _first_time(source, "audio") - _first_frame_time(source)
    out_offset = _first_time(out, "audio") - _first_frame_time(out)
    assert out_offset == pytest.approx(source_offset, abs=2e-3)
    assert source_offset == pytest.approx(-0.5 if clip == "late_video" else 0.0, abs=0.03)


def test_audio_copy_of_a_range(clips, tmp_path):
    source, out = clips["late_video"], tmp_path / "range.mp4"
    _copy_clip(source, out, start_time=0.4, end_time=1.2)
    in_tb = _packets(source, "audio")[0].time_base
    video_zero = 0.5  # source video starts 0.5 s after its audio
    expected = [
        bytes(p) for p in _packets(source, "audio") if 0.4 <= float(p.pts * in_tb) - video_zero < 1.2
    ]
    out_packets = _packets(out, "audio")
    assert [bytes(p) for p in out_packets] == expected
    # Source audio packet at source time A sits at output time A - 0.4, as does the video.
    first_source_time = min(
        float(p.pts * in_tb) - video_zero for p in _packets(source, "audio") if float(p.pts * in_tb) - video_zero >= 0.4
    )
    out_audio_vs_video = _first_time(out, "audio") - _first_frame_time(out)
    assert out_audio_vs_video == pytest.approx(first_source_time - 0.4, abs=2e-3)
    _, times = _read_all(out)
    assert len(times) == 20


def test_mp3_audio_is_copied_into_mp4(clips, tmp_path):
    out = tmp_path / "from_mp3.mp4"
    _copy_clip(clips["mp3"], out)
    assert [bytes(p) for p in _packets(out, "audio")] == [bytes(p) for p in _packets(clips["mp3"], "audio")]


def test_webm_reencodes_aac_audio_to_opus(clips, tmp_path, caplog):
    out = tmp_path / "out.webm"
    with caplog.at_level(logging.WARNING, logger="dp2.io.video"):
        _copy_clip(clips["late_video"], out)
    assert "re-encoding it as libopus" in caplog.text
    with av.open(str(out)) as container:
        assert container.streams.audio[0].codec_context.name == "opus"
        assert container.streams.video[0].codec_context.name == "vp9"
    offset = _first_time(out, "audio") - _first_frame_time(out)
    assert offset == pytest.approx(-0.5, abs=0.03)  # opus pre-skip shifts its first packet by ~7 ms


def _audio_streams(path: Path) -> list[tuple[str, str | None, list[bytes]]]:
    """(codec, language, packet payloads) of every audio stream."""
    with av.open(str(path)) as container:  # streams are invalid once the container is closed
        streams = list(container.streams.audio)
        payloads: dict[int, list[bytes]] = {s.index: [] for s in streams}
        for packet in container.demux(*streams):
            if packet.size:
                payloads[packet.stream.index].append(bytes(packet))
        return [(s.codec_context.name, s.metadata.get("language"), payloads[s.index]) for s in streams]


@pytest.mark.parametrize("ext", [".mp4", ".mkv", ".mov"])
def test_every_audio_track_is_stream_copied(tmp_path, ext):
    source = _make_clip(tmp_path / "two_tracks.mp4", audio_tracks=2)
    out = tmp_path / f"out{ext}"
    _copy_clip(source, out)
    tracks = _audio_streams(out)
    assert [(codec, language) for codec, language, _ in tracks] == [("aac", "eng"), ("aac", "fra")]
    assert [payloads for _, _, payloads in tracks] == [payloads for _, _, payloads in _audio_streams(source)]


def test_every_audio_track_of_a_range_is_kept(tmp_path):
    source = _make_clip(tmp_path / "two_tracks.mp4", audio_tracks=2)
    out = tmp_path / "range.mkv"
    _copy_clip(source, out, start_time=0.4, end_time=1.2)
    counts = [len(payloads) for _, _, payloads in _audio_streams(out)]
    assert counts[0] == counts[1] == pytest.approx(0.8 * 44100 / 1024, abs=2)


def test_webm_reencodes_every_audio_track(tmp_path):
    source = _make_clip(tmp_path / "two_tracks.mp4", audio_tracks=2)
    out = tmp_path / "out.webm"
    _copy_clip(source, out)
    assert [(codec, language) for codec, language, _ in _audio_streams(out)] == [("opus", "eng"), ("opus", "fra")]


def test_an_audio_track_that_cannot_be_written_is_left_out_with_a_warning(tmp_path, monkeypatch, caplog):
    source = _make_clip(tmp_path / "two_tracks.mp4", audio_tracks=2)
    add_track = VideoWriter._add_audio_track

    def refuse_second(self, in_stream, *args):
        if in_stream.metadata.get("language") == "fra":
            raise ValueError("no encoder for this")
        return add_track(self, in_stream, *args)

    monkeypatch.setattr(VideoWriter, "_add_audio_track", refuse_second)
    out = tmp_path / "out.mp4"
    with caplog.at_level(logging.WARNING, logger="dp2.io.video"):
        _copy_clip(source, out)
    assert f"audio track 2 of {source} (aac) can't be written" in caplog.text
    assert [language for _, language, _ in _audio_streams(out)] == ["eng"]


def test_avi_audio_starts_with_the_video(clips, tmp_path, caplog):
    out = tmp_path / "out.avi"
    with caplog.at_level(logging.WARNING, logger="dp2.io.video"):
        _copy_clip(clips["late_video"], out)
    assert "AVI can't start audio before the video; the 0.5" in caplog.text
    with av.open(str(out)) as container:
        assert container.streams.audio[0].codec_context.name == "aac"
    # The 0.5 s lead-in is dropped: AVI plays both streams from 0.
    assert len(_packets(out, "audio")) == pytest.approx(2.0 * 44100 / 1024, abs=2)
    _, times = _read_all(out)
    assert len(times) == N


def test_audio_from_file_without_audio_writes_video_only(clips, tmp_path):
    out = tmp_path / "silent.mp4"
    _copy_clip(clips["vfr"], out)
    assert not probe_video(out).has_audio


@pytest.mark.skipif(not HAMILTON.exists(), reason=f"{HAMILTON} not available")
def test_hamilton_two_seconds_keep_audio_in_sync(tmp_path):
    # The video stream starts 0.85 s after the audio: that offset must survive.
    out = tmp_path / "hamilton.mp4"
    _copy_clip(HAMILTON, out, start_time=0.0, end_time=2.0)
    info = probe_video(out)
    assert info.num_frames == 60
    frame_s = 1 / info.fps
    source_offset = _first_time(HAMILTON, "audio") - _first_frame_time(HAMILTON)
    out_offset = _first_time(out, "audio") - _first_frame_time(out)
    assert source_offset == pytest.approx(-0.844, abs=0.01)
    assert out_offset == pytest.approx(source_offset, abs=frame_s)
    # Copied packets are the source's, byte for byte.
    source_packets = [bytes(p) for p in _packets(HAMILTON, "audio")]
    out_packets = [bytes(p) for p in _packets(out, "audio")]
    start = source_packets.index(out_packets[0])
    assert source_packets[start : start + len(out_packets)] == out_packets


# ----------------------------------------------------------------------------- resolution changes


def test_a_mid_stream_resolution_change_is_scaled_to_the_first_frame_size(tmp_path, caplog):
    clip = make_resolution_change_clip(tmp_path / "sizes.mkv")
    with caplog.at_level(logging.WARNING, logger="dp2.io.video"):
        frames, times = _read_all(clip)
    assert len(frames) == 20 and {f.shape for f in frames} == {(H, W, 3)}
    assert f"{clip}: resolution changes mid-stream (64x48 -> 96x80 at t=0.400 s)" in caplog.text
    # The scaled frames still show the content: the red marker at the top left.
    assert frames[-1][1, 1, 0] > 200 and frames[-1][1, 1, 2] < 80
