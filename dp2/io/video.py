"""Streaming video reading and writing with PyAV.

`VideoReader` decodes a file frame by frame into upright uint8 RGB arrays with
their presentation times; `VideoWriter` encodes such frames into a new file,
optionally stream-copying the audio of the source, and only publishes the file
under its final name once it is complete.

Convention (timeline):
    All times are in seconds on the *source timeline*: 0 is the presentation
    time of the first video frame of the source file (the video stream's
    ``start_time``), whatever the container's own start is. Ranges are
    half-open: ``[start_time, end_time)``. Frames are selected by their
    presentation timestamp, never by index, so ranges are exact on variable
    frame rate input.

Convention (rotation):
    `VideoInfo.rotation` is the counter-clockwise angle, in {0, 90, 180, 270},
    by which the stored frames must be turned to be shown upright (FFmpeg's
    display matrix, or the legacy ``rotate`` tag). `VideoReader` applies it, so
    the frames it yields and `VideoInfo.size_hw` are already upright.

Example:
    >>> with VideoReader("in.mp4", start_time=1.0, end_time=3.0) as reader, VideoWriter(  # doctest: +SKIP
    ...     "out.mp4", fps=reader.info.fps, size_hw=reader.info.size_hw,
    ...     audio_from=Path("in.mp4"), audio_start_s=1.0, audio_end_s=3.0,
    ... ) as writer:
    ...     for frame_rgb, time_s in reader:
    ...         writer.write(frame_rgb, time_s=time_s)
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from .atomic import partial_sibling

logger = logging.getLogger(__name__)

_FFmpegError = av.error.FFmpegError  # base of PyAV's FFmpeg errors (also a ValueError/OSError subclass)

__all__ = ["VideoError", "VideoInfo", "VideoReader", "VideoWriter", "check_video_encoder", "probe_video"]

# Tolerance for comparing times, in seconds: far below any frame interval, it
# absorbs float rounding of user-given times (e.g. 0.1 + 0.2 vs 0.3).
_EPS = 1e-6

# Fine encoder time base for codecs that accept it: keeps source frame times
# (VFR, late starts) to 11 us and is an exact multiple of common frame rates.
_FINE_TIME_BASE = Fraction(1, 90000)

_VIDEO_CODEC_BY_EXT = {
    ".mp4": "libx264",
    ".m4v": "libx264",
    ".mov": "libx264",
    ".mkv": "libx264",
    ".webm": "libvpx-vp9",
    ".avi": "mpeg4",
}
_LOSSLESS_CODEC_BY_EXT = {
    ".mp4": "libx264",
    ".m4v": "libx264",
    ".mov": "libx264",
    ".mkv": "ffv1",
    ".webm": "libvpx-vp9",
    ".avi": "ffv1",
}
# Audio codec used when the source's audio can't be stream-copied into the container.
_AUDIO_FALLBACK_BY_EXT = {
    ".mp4": "aac",
    ".m4v": "aac",
    ".mov": "aac",
    ".mkv": "libopus",
    ".webm": "libopus",
    ".avi": "libmp3lame",
}
_SUPPORTED_EXTS = tuple(_VIDEO_CODEC_BY_EXT)

# How far ahead of the latest video frame (output seconds) audio packets are muxed,
# so the muxer's interleaving queue stays short.
_AUDIO_LEAD_S = 0.5


class VideoError(ValueError):
    """A video file is missing, empty, corrupt, truncated or has no video stream."""


@dataclass(frozen=True)
class VideoInfo:
    """What is known about a video (stream) before decoding it.

    Attributes:
        path: The file.
        size_hw: (height, width) of the frames as displayed, i.e. after applying
            `rotation`; the size of the arrays `VideoReader` yields.
        fps: Average frame rate of the video stream (for a `VideoReader` with
            ``fps=...``: that output rate).
        num_frames: Estimated number of frames, for progress bars; for a
            `VideoReader`, within its selected range. None if unknown.
        duration_s: Duration of the video stream in seconds (whole file, not the
            selected range), None if unknown.
        rotation: Counter-clockwise degrees, one of {0, 90, 180, 270}, from the
            stream's display matrix or ``rotate`` tag.
        has_audio: Whether the file has an audio stream.
        video_codec: Decoder name of the video stream, e.g. "h264".
        start_time_s: Start of the video stream on the container's clock, in
            seconds; source-timeline time 0 (see module docstring).
    """

    path: Path
    size_hw: tuple[int, int]
    fps: float
    num_frames: int | None
    duration_s: float | None
    rotation: int
    has_audio: bool
    video_codec: str
    start_time_s: float


# ----------------------------------------------------------------------------- reading


def _open_input(path: Path) -> av.container.InputContainer:
    """Opens `path` for decoding, turning every failure into a one-line `VideoError`."""
    if not path.exists():
        raise VideoError(f"{path}: no such file")
    if path.is_dir():
        raise VideoError(f"{path}: is a directory, expected a video file")
    if path.stat().st_size == 0:
        raise VideoError(f"{path}: file is empty (0 bytes), expected a video")
    try:
        return av.open(str(path), mode="r")
    except _FFmpegError as e:
        reason = e.strerror or str(e)
        raise VideoError(f"{path}: not a readable video file ({reason})") from e


def _video_stream(container: av.container.InputContainer, path: Path) -> av.VideoStream:
    if not container.streams.video:
        kinds = ", ".join(s.type for s in container.streams) or "none"
        raise VideoError(f"{path}: no video stream (found streams: {kinds})")
    return container.streams.video[0]


def _normalize_rotation(degrees: float, path: Path) -> int:
    """Rounds a counter-clockwise angle to one of {0, 90, 180, 270}."""
    quarter_turns = round(degrees / 90)
    if abs(degrees - 90 * quarter_turns) > 1:
        logger.warning("%s: rotation %.1f deg is not a multiple of 90; using %d", path, degrees, 90 * quarter_turns)
    return int(90 * (quarter_turns % 4))


def _rotation_of(frame: av.VideoFrame, stream: av.VideoStream, path: Path) -> int:
    # Counter-clockwise, from the display matrix FFmpeg attaches to frames (PyAV >= 13).
    degrees = getattr(frame, "rotation", 0)
    if not degrees:
        # Legacy tag (clockwise); recent FFmpeg turns it into a display matrix on demux.
        tag = stream.metadata.get("rotate")
        if tag:
            try:
                degrees = -float(tag)
            except ValueError:
                logger.warning("%s: ignoring unparsable rotate tag %r", path, tag)
    return _normalize_rotation(degrees or 0, path)


def _average_fps(stream: av.VideoStream, path: Path) -> Fraction:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate:
            return Fraction(rate)
    logger.warning("%s: frame rate unknown; assuming 25 fps", path)
    return Fraction(25)


def _first_frame(
    container: av.container.InputContainer, stream: av.VideoStream, path: Path
) -> av.VideoFrame:
    try:
        for packet in container.demux(stream):
            for frame in stream.decode(packet):
                return frame
    except _FFmpegError as e:
        raise VideoError(f"{path}: corrupt video, could not decode the first frame ({e.strerror or e})") from e
    raise VideoError(f"{path}: video stream has no decodable frames")


@dataclass(frozen=True)
class _Probe:
    info: VideoInfo
    zero_pts: int  # video stream pts of source time 0
    time_base: Fraction  # of the video stream
    fps: Fraction  # exact average rate


def _probe(path: Path) -> _Probe:
    container = _open_input(path)
    try:
        stream = _video_stream(container, path)
        time_base = Fraction(stream.time_base)
        frame = _first_frame(container, stream, path)
        if stream.start_time is not None:
            zero_pts = stream.start_time
        elif frame.pts is not None:
            zero_pts = frame.pts
        else:
            zero_pts = 0
        rotation = _rotation_of(frame, stream, path)
        height, width = frame.height, frame.width
        if rotation in (90, 270):
            height, width = width, height
        fps = _average_fps(stream, path)
        if stream.duration:
            duration_s: float | None = float(stream.duration * time_base)
        elif container.duration:
            # Container duration runs from the container's start, which may precede the video.
            container_start = (container.start_time or 0) / av.time_base
            duration_s = container.duration / av.time_base - (float(zero_pts * time_base) - container_start)
        else:
            duration_s = None
        if stream.frames:
            num_frames: int | None = stream.frames
        elif duration_s is not None:
            num_frames = max(round(duration_s * fps), 1)
        else:
            num_frames = None
        info = VideoInfo(
            path=path,
            size_hw=(height, width),
            fps=float(fps),
            num_frames=num_frames,
            duration_s=duration_s,
            rotation=rotation,
            has_audio=bool(container.streams.audio),
            video_codec=stream.codec_context.name,
            start_time_s=float(zero_pts * time_base),
        )
        return _Probe(info=info, zero_pts=zero_pts, time_base=time_base, fps=fps)
    finally:
        container.close()


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Reads a video's metadata and decodes its first frame.

    Decoding the first frame validates the file and yields the rotation that
    FFmpeg attaches to frames. A file truncated after its first frame passes;
    `VideoReader` reports it when it reaches the damage.

    Args:
        path: Video file.

    Returns:
        The video's `VideoInfo` (whole file).

    Raises:
        VideoError: The file is missing, empty, not a video, corrupt or has no
            video stream. The message is one line and names the file.
    """
    return _probe(Path(path)).info


class VideoReader:
    """Iterates over a video's frames as upright uint8 RGB arrays, streaming.

    Yields ``(frame_rgb, time_s)``: ``frame_rgb`` is uint8 ``[H, W, 3]`` with
    ``(H, W) == info.size_hw``; ``time_s`` is the frame's time on the source
    timeline (0 = first video frame). Memory use is constant in video length.

    Convention:
        Only frames with ``start_time <= time_s < end_time`` are yielded. With
        ``fps`` set, output frame ``n`` has ``time_s = start_time + n / fps``
        and shows the latest source frame whose time is ``<= time_s`` (source
        frames are duplicated or dropped); the output stops before
        ``end_time`` and before the end of the last source frame.

    Args:
        path: Video file.
        start_time: First time to yield, seconds (None: 0). The reader seeks to
            the key frame before it and decodes forward.
        end_time: Exclusive end, seconds (None: end of the video).
        fps: If set, resample to this constant rate.

    Raises:
        VideoError: On open (see `probe_video`), or while iterating when the
            file turns out to be truncated or corrupt: the decodable prefix is
            yielded first, then VideoError is raised.
        ValueError: Bad range or fps.

    Example:
        >>> with VideoReader("clip.mp4", end_time=2.0, fps=10) as reader:  # doctest: +SKIP
        ...     for frame_rgb, time_s in reader:
        ...         ...
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        start_time: float | None = None,
        end_time: float | None = None,
        fps: float | None = None,
    ) -> None:
        self.path = Path(path)
        start = 0.0 if start_time is None else float(start_time)
        if not math.isfinite(start) or start < 0:
            raise ValueError(f"start_time must be a finite number >= 0 seconds, got {start_time}")
        if end_time is not None and not (float(end_time) > start):
            raise ValueError(f"end_time must be greater than start_time ({start}), got {end_time}")
        if fps is not None and not (math.isfinite(fps) and fps > 0):
            raise ValueError(f"fps must be a positive finite number, got {fps}")
        self.start_time = start
        self.end_time = None if end_time is None else float(end_time)
        self.fps = None if fps is None else float(fps)

        probe = _probe(self.path)
        self._zero_pts = probe.zero_pts
        self._time_base = probe.time_base
        self._source_fps = probe.fps
        self.info = dataclasses.replace(
            probe.info,
            fps=self.fps if self.fps is not None else probe.info.fps,
            num_frames=self._estimate_num_frames(probe.info),
        )
        height, width = probe.info.size_hw
        # Size of the stored (not yet rotated) frames: the first frame's.
        self._stored_hw = (width, height) if probe.info.rotation in (90, 270) else (height, width)
        self._rescale_warned = False
        self._container = _open_input(self.path)
        self._stream = _video_stream(self._container, self.path)
        self._stream.thread_type = "AUTO"
        self._iterated = False

    def _estimate_num_frames(self, info: VideoInfo) -> int | None:
        if self.start_time == 0 and self.end_time is None and self.fps is None:
            return info.num_frames
        stop = info.duration_s
        if self.end_time is not None:
            stop = self.end_time if stop is None else min(stop, self.end_time)
        if stop is None:
            return None
        rate = self.fps if self.fps is not None else info.fps
        return max(math.ceil((stop - self.start_time) * rate - _EPS), 0)

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        """Releases the file. Safe to call twice."""
        self._container.close()

    def __iter__(self) -> Iterator[tuple[np.ndarray, float]]:
        if self._iterated:
            raise RuntimeError(f"VideoReader({self.path}) can be iterated only once; open a new reader")
        self._iterated = True
        if self.fps is None:
            return self._iter_source_rate()
        return self._iter_resampled()

    def _to_rgb(self, frame: av.VideoFrame) -> np.ndarray:
        if (frame.height, frame.width) != self._stored_hw:
            # A stream that changes resolution mid-way (concatenated or adaptive recordings): every
            # frame is scaled to the first frame's size before it is anonymized, so what is
            # written is always the anonymized frame, and the video keeps one size.
            height, width = self._stored_hw
            if not self._rescale_warned:
                self._rescale_warned = True
                logger.warning("%s: resolution changes mid-stream (%dx%d -> %dx%d at t=%.3f s); scaling such "
                               "frames to the first frame's %dx%d", self.path, width, height, frame.width,
                               frame.height, self._frame_time(frame), width, height)
            image = frame.reformat(width=width, height=height, format="rgb24").to_ndarray()
        else:
            image = frame.to_ndarray(format="rgb24")  # [H, W, 3] as stored
        quarter_turns = self.info.rotation // 90
        if quarter_turns:
            image = np.ascontiguousarray(np.rot90(image, quarter_turns))  # counter-clockwise
        return image

    def _frame_time(self, frame: av.VideoFrame) -> float:
        return float((frame.pts - self._zero_pts) * self._time_base) if frame.pts is not None else math.nan

    def _seek(self, time_s: float) -> None:
        target = self._zero_pts + math.floor(Fraction(time_s) / self._time_base)
        self._container.seek(target, stream=self._stream, backward=True, any_frame=False)

    def _decoded_frames(self) -> Iterator[tuple[av.VideoFrame, float]]:
        """Yields decoded frames and their source times from near `start_time` on."""
        # Start decoding at the key frame before start_time; a frame at or before it
        # is also needed as the first frame to show when resampling.
        seeked = self.start_time > 0
        if seeked:
            self._seek(self.start_time)
        last_time = -math.inf
        last_packet_corrupt = False
        default_duration = 1 / self._source_fps
        try:
            first = True
            for packet in self._container.demux(self._stream):
                if packet.size:
                    last_packet_corrupt = packet.is_corrupt
                for frame in self._stream.decode(packet):
                    if frame.pts is None:  # rare (some AVI): assume a regular frame interval
                        time_s = last_time + float(default_duration) if last_time > -math.inf else self.start_time
                    else:
                        time_s = float((frame.pts - self._zero_pts) * self._time_base)
                    if first and seeked and time_s > self.start_time + _EPS:
                        # The demuxer landed after start_time: decode from the beginning instead.
                        logger.debug("%s: seek overshot (%.3f s > %.3f s); decoding from the start",
                                     self.path, time_s, self.start_time)
                        seeked = False
                        self._seek(0.0)
                        break
                    first = False
                    last_time = time_s
                    yield frame, time_s
        except _FFmpegError as e:
            raise VideoError(
                f"{self.path}: corrupt or truncated video, decoding failed after t={last_time:.3f} s "
                f"({e.strerror or e})"
            ) from e
        if last_packet_corrupt:
            raise VideoError(f"{self.path}: truncated or corrupt video, last decodable frame at t={last_time:.3f} s")

    def _iter_source_rate(self) -> Iterator[tuple[np.ndarray, float]]:
        for frame, time_s in self._decoded_frames():
            if time_s < self.start_time - _EPS:
                continue
            if self.end_time is not None and time_s >= self.end_time - _EPS:
                return
            yield self._to_rgb(frame), time_s

    def _iter_resampled(self) -> Iterator[tuple[np.ndarray, float]]:
        fps = self.fps
        end = math.inf if self.end_time is None else self.end_time
        n = 0
        shown: av.VideoFrame | None = None  # latest source frame with time <= the current grid time
        shown_time = 0.0
        shown_duration = 0.0

        def grid(i: int) -> float:
            return self.start_time + i / fps

        # Each output frame gets its own array (converted afresh), so a consumer may
        # modify a yielded frame in place even when it is shown twice.
        for frame, time_s in self._decoded_frames():
            # Grid times before this frame show the previous one (or this one if none).
            while grid(n) < time_s - _EPS and grid(n) < end - _EPS:
                yield self._to_rgb(frame if shown is None else shown), grid(n)
                n += 1
            if grid(n) >= end - _EPS:
                return
            shown, shown_time = frame, time_s
            if getattr(frame, "duration", None) and frame.time_base:
                shown_duration = float(frame.duration * Fraction(frame.time_base))
            else:
                shown_duration = float(1 / self._source_fps)
        if shown is None:
            return
        stop = min(end, shown_time + shown_duration)
        while grid(n) < stop - _EPS:
            yield self._to_rgb(shown), grid(n)
            n += 1


# ----------------------------------------------------------------------------- writing


def _encoder_available(name: str) -> bool:
    try:
        av.Codec(name, "w")
    except ValueError:  # av.codec.codec.UnknownCodecError: unknown or decoder-only
        return False
    return True


# Shown when a --codec is refused (those of them this FFmpeg build has).
_EXAMPLE_VIDEO_ENCODERS = ("libx264", "libx265", "libvpx-vp9", "mpeg4", "ffv1", "mjpeg")


def check_video_encoder(codec: str) -> None:
    """Raise ValueError unless ``codec`` names a video encoder of this PyAV/FFmpeg build.

    The message is one line and lists a few encoders that are there, e.g. for ``aac``:
    "'aac' is an audio encoder, not a video encoder; use e.g. libx264, libx265, ...".
    """
    examples = ", ".join(name for name in _EXAMPLE_VIDEO_ENCODERS if _encoder_available(name))
    try:
        kind = av.Codec(codec, "w").type
    except ValueError:  # unknown, or a decoder only
        raise ValueError(f"{codec!r} is not a video encoder of this PyAV/FFmpeg build; "
                         f"use e.g. {examples}") from None
    if kind != "video":
        raise ValueError(f"{codec!r} is {'an' if kind[0] in 'aeiou' else 'a'} {kind} encoder, not a video encoder; "
                         f"use e.g. {examples}")


@dataclass(frozen=True)
class _VideoEncoding:
    codec: str
    pix_fmt: str
    options: dict[str, str]
    time_base: Fraction | None  # None: 1/fps
    even_size: bool  # encoder needs even width and height
    qscale: int | None = None  # fixed quantizer for mpeg4/mjpeg


def _choose_video_encoding(ext: str, codec: str | None, crf: int | None, lossless: bool, path: Path) -> _VideoEncoding:
    if codec is None:
        codec = (_LOSSLESS_CODEC_BY_EXT if lossless else _VIDEO_CODEC_BY_EXT)[ext]
        if codec == "libvpx-vp9" and not _encoder_available(codec):
            codec = "libvpx"
    try:
        check_video_encoder(codec)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    if codec in ("libx264", "libx265"):
        if lossless:
            # qp 0 is lossless on the YUV 4:4:4 planes (RGB->YUV rounding remains).
            if codec == "libx264":
                options = {"qp": "0", "preset": "medium"}
            else:
                options = {"x265-params": "lossless=1:log-level=error"}
            return _VideoEncoding(codec, "yuv444p", options, _FINE_TIME_BASE, even_size=False)
        default_crf = 18 if codec == "libx264" else 22
        # At crf 18 on the hamilton clip, veryfast encodes 2.8x faster than medium: PSNR 41.1 vs
        # 41.7 dB against the source, file 2% smaller. --crf lower buys back the 0.6 dB.
        options = {"crf": str(default_crf if crf is None else crf), "preset": "veryfast"}
        if codec == "libx265":
            options["x265-params"] = "log-level=error"  # x265 otherwise prints to stderr
        return _VideoEncoding(codec, "yuv420p", options, _FINE_TIME_BASE, even_size=True)
    if codec in ("libvpx-vp9", "libvpx"):
        speed = {"deadline": "good", "cpu-used": "4"}
        if codec == "libvpx-vp9":
            speed["row-mt"] = "1"
        if lossless and codec == "libvpx-vp9":
            return _VideoEncoding(codec, "gbrp", {"lossless": "1", **speed}, Fraction(1, 1000), even_size=False)
        options = {"crf": str(24 if crf is None else crf), "b": "0", **speed}
        if codec == "libvpx":
            options["b"] = "10M"  # VP8 needs a bitrate cap alongside crf
        return _VideoEncoding(codec, "yuv420p", options, Fraction(1, 1000), even_size=False)
    if codec == "ffv1":
        return _VideoEncoding(codec, "bgr0", {}, None, even_size=False)  # exact RGB
    if codec in ("mpeg4", "mjpeg"):
        pix_fmt = "yuv420p" if codec == "mpeg4" else "yuvj420p"
        qscale = 2 if crf is None else int(min(max(crf, 1), 31))
        return _VideoEncoding(codec, pix_fmt, {}, None, even_size=False, qscale=qscale)
    formats = [f.name for f in (av.Codec(codec, "w").video_formats or [])]
    pix_fmt = "yuv420p" if not formats or "yuv420p" in formats else formats[0]
    options = {} if crf is None else {"crf": str(crf)}
    return _VideoEncoding(codec, pix_fmt, options, None, even_size=pix_fmt == "yuv420p")


@dataclass
class _AudioTrack:
    """One source audio stream on its way into the output."""

    in_stream: av.AudioStream
    out_stream: object  # av.AudioStream (copy) or the encoder's stream
    in_tb: Fraction
    shift: int  # source pts - output pts, in in_tb
    mode: str  # "copy" or "encode"
    encode_pts: int | None = None  # next sample's pts when re-encoding
    ended: bool = False  # a packet past the range was seen


class VideoWriter:
    """Encodes uint8 RGB frames into a video file, optionally copying a source's audio.

    The file is written to a temporary ``.<stem>.<random>.partial<ext>`` next
    to `path` and renamed onto `path` by `close`, so an interrupted or failed
    run leaves nothing under the final name. Use it as a context manager: an
    exception (including KeyboardInterrupt) inside the ``with`` block aborts.

    Codecs by extension (`codec` overrides):
        .mp4 .m4v .mov .mkv: libx264, yuv420p, crf 18 (visually lossless),
            preset veryfast. libx264 4:2:0 needs even sizes: an odd height or
            width is padded by repeating the last row/column, so the encoded
            video is 1 px larger (see `encoded_size_hw`); this keeps the
            widely playable yuv420p (yuv444p is not supported by browsers).
        .webm: libvpx-vp9, yuv420p, crf 24 (odd sizes are fine).
        .avi: mpeg4 at fixed quantizer 2 (`crf`, if given, is used as the
            quantizer, 1-31); odd sizes are fine.
        lossless=True: libx264 qp 0 yuv444p for .mp4/.mov (exact up to the
            RGB->YUV rounding), ffv1 bgr0 for .mkv/.avi and libvpx-vp9
            lossless gbrp for .webm (both exact RGB).

    Convention (audio and timing):
        Output time = source time - ``origin``, the same shift for video and
        audio, so they stay in sync. Source times are as in `VideoReader`
        (0 = first video frame of `audio_from`).

        * ``audio_start_s > 0``: ``origin = audio_start_s``; audio packets
          starting in ``[audio_start_s, audio_end_s)`` are kept.
        * ``audio_start_s`` None or <= 0 with audio: audio that precedes the
          first video frame is kept too (as a plain stream copy of the whole
          file would); ``origin = min(0, audio start)``, so when the audio
          starts 0.85 s before the video, the output's video also starts
          0.85 s after its audio.
        * No audio: ``origin = audio_start_s``, or else the first frame's
          ``time_s`` (0 if not given): the video starts at output time 0.

        Audio is stream-copied (packets unchanged, timestamps shifted) and cut
        at packet boundaries (about 20-40 ms). If the container can't hold the
        source's audio codec (e.g. AAC in .webm) it is re-encoded (opus for
        .webm/.mkv, aac for .mp4/.mov, mp3 for .avi) with a warning. AVI can
        store neither a late video start nor an audio offset (both play from
        0), so for .avi the audio is always cut at the first video frame (or
        at `audio_start_s`), with a warning when that drops a lead-in; audio
        starting after the video plays early.

    Args:
        path: Output file; its extension picks the container and codec.
        fps: Nominal frame rate (frames written without `time_s` are 1/fps apart).
        size_hw: (height, width) of the frames to be written.
        codec: Video encoder name overriding the default for the extension.
        crf: Quality (lower is better) overriding the codec's default.
        audio_from: File whose audio streams are all copied (each re-encoded when the
            container can't hold its codec; a further track that can't be written either is
            left out with a warning); None for no audio. A file without audio gives a
            video-only output.
        audio_start_s: Start of the source range, seconds (see Convention).
        audio_end_s: Exclusive end of the audio range, seconds (None: to the end).
        rotation: Ignored: frames are written upright, without display matrix.
        lossless: Use a lossless codec (see above).

    Raises:
        ValueError: Unsupported extension or codec, bad size/fps/range, or
            `path` is `audio_from`.
        FileNotFoundError: The output directory doesn't exist.
        VideoError: `audio_from` can't be read.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        fps: float,
        size_hw: tuple[int, int],
        codec: str | None = None,
        crf: int | None = None,
        audio_from: str | os.PathLike | None = None,
        audio_start_s: float | None = None,
        audio_end_s: float | None = None,
        rotation: int = 0,
        lossless: bool = False,
    ) -> None:
        self.path = Path(path)
        self._finished = False  # closed or aborted
        self._tmp_path: Path | None = None
        self._container: av.container.OutputContainer | None = None
        self._audio_in: av.container.InputContainer | None = None

        ext = self.path.suffix.lower()
        if ext not in _SUPPORTED_EXTS:
            raise ValueError(
                f"{self.path}: unsupported video extension {ext!r}, expected one of {', '.join(_SUPPORTED_EXTS)}"
            )
        if not (math.isfinite(fps) and fps > 0):
            raise ValueError(f"fps must be a positive finite number, got {fps}")
        if len(size_hw) != 2 or not all(int(s) == s and s > 0 for s in size_hw):
            raise ValueError(f"size_hw must be two positive integers (height, width), got {size_hw}")
        for name, value in (("audio_start_s", audio_start_s), ("audio_end_s", audio_end_s)):
            if value is not None and not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number of seconds, got {value}")
        if audio_start_s is not None and audio_end_s is not None and audio_end_s <= audio_start_s:
            raise ValueError(f"audio_end_s ({audio_end_s}) must be greater than audio_start_s ({audio_start_s})")
        if audio_from is not None:
            audio_from = Path(audio_from)
            if self.path.resolve() == audio_from.resolve() or (
                self.path.exists() and audio_from.exists() and os.path.samefile(self.path, audio_from)
            ):
                raise ValueError(f"{self.path}: output would overwrite the input {audio_from}")
        if not self.path.parent.is_dir():
            raise FileNotFoundError(f"{self.path}: output directory {self.path.parent} does not exist")
        if rotation:
            logger.debug("%s: rotation=%d ignored, frames are written upright", self.path, rotation)

        self.fps = float(fps)
        self.size_hw = (int(size_hw[0]), int(size_hw[1]))
        self._rate = Fraction(self.fps).limit_denominator(65535)
        self._encoding = _choose_video_encoding(ext, codec, crf, lossless, self.path)
        height, width = self.size_hw
        if self._encoding.even_size:
            height, width = height + height % 2, width + width % 2
        self.encoded_size_hw = (height, width)
        if self.encoded_size_hw != self.size_hw:
            logger.warning("%s: %s 4:2:0 needs even sizes; padding %dx%d frames to %dx%d by repeating the edge",
                           self.path, self._encoding.codec, self.size_hw[1], self.size_hw[0], width, height)

        self._num_frames = 0
        self._last_pts: int | None = None
        self._last_out_time = 0.0
        # Source time shown at output time 0; None until known (see the class docstring).
        self._origin: Fraction | None = None if audio_start_s is None else max(Fraction(0), Fraction(audio_start_s))
        self._audio_mode = "none"  # "copy", "encode" or "none"

        fd, self._tmp_path = partial_sibling(self.path, prefix=f".{self.path.stem}.",
                                             suffix=f".partial{self.path.suffix}")
        os.close(fd)
        try:
            self._container = av.open(str(self._tmp_path), mode="w")
            self._open_video_stream()
            if audio_from is not None:
                self._open_audio(audio_from, audio_start_s, audio_end_s, ext)
        except BaseException:
            self.abort()
            raise

    # -- setup

    def _open_video_stream(self) -> None:
        enc = self._encoding
        try:
            stream = self._container.add_stream(enc.codec, rate=self._rate)
        except (ValueError, TypeError) as e:
            raise ValueError(f"{self.path}: container can't hold video codec {enc.codec!r} ({e})") from e
        stream.height, stream.width = self.encoded_size_hw
        stream.pix_fmt = enc.pix_fmt
        time_base = enc.time_base if enc.time_base is not None else 1 / self._rate
        stream.codec_context.time_base = time_base
        stream.time_base = time_base
        if enc.qscale is not None:
            stream.codec_context.qscale = True
            stream.codec_context.global_quality = enc.qscale * 118  # FF_QP2LAMBDA
        stream.codec_context.options = dict(enc.options)
        self._video_stream = stream
        self._video_time_base = Fraction(time_base)

    def _open_audio(self, audio_from: Path, start_s: float | None, end_s: float | None, ext: str) -> None:
        source = _probe(audio_from)  # validates the file and gives source time 0
        container = _open_input(audio_from)
        self._audio_in = container
        in_streams = list(container.streams.audio)
        if not in_streams:
            logger.info("%s: no audio stream; writing video only", audio_from)
            container.close()
            self._audio_in = None
            return
        video_zero = source.zero_pts * source.time_base  # source time 0 on the container clock
        self._audio_lo = Fraction(start_s) if start_s is not None and start_s > 0 else None
        self._audio_hi = None if end_s is None else Fraction(end_s)
        if ext == ".avi" and self._audio_lo is None:
            # AVI stores no start times: both streams play from 0, so cut the audio
            # at the first video frame instead of keeping a lead-in.
            self._audio_lo = Fraction(0)
        starts = [(s.start_time * Fraction(s.time_base) - video_zero) if s.start_time is not None else Fraction(0)
                  for s in in_streams]
        if self._audio_lo is not None:
            self._origin = self._audio_lo
            lead_in = float(self._audio_lo - min(starts)) if start_s is None or start_s <= 0 else 0.0
            if ext == ".avi" and lead_in > 1 / self.fps:
                logger.warning("%s: AVI can't start audio before the video; the %.3f s of audio of %s before "
                               "its first video frame are left out (use .mp4/.mkv/.mov to keep them)",
                               self.path, lead_in, audio_from)
        else:
            self._origin = min(Fraction(0), *starts)
            if self._audio_hi is not None and self._audio_hi <= self._origin:
                raise ValueError(f"audio_end_s ({end_s}) must be after the audio start ({float(self._origin):.3f} s)")

        self._audio_tracks: dict[int, _AudioTrack] = {}
        for number, in_stream in enumerate(in_streams):
            try:
                track = self._add_audio_track(in_stream, ext, audio_from, video_zero)
            except (ValueError, TypeError) as e:
                if number == 0:
                    raise
                # Keep the video and the other tracks rather than failing the whole file.
                logger.warning("%s: audio track %d of %s (%s) can't be written to %s, left out: %s", self.path,
                               number + 1, audio_from, in_stream.codec_context.name, ext, e)
                continue
            self._audio_tracks[in_stream.index] = track
        self._audio_mode = "+".join(t.mode for t in self._audio_tracks.values())
        self._video_zero = video_zero
        self._audio_pending = None
        self._audio_done = False
        first = in_streams[0]
        if self._audio_lo is not None and self._audio_lo > 1:
            container.seek(round((self._audio_lo + video_zero) / Fraction(first.time_base)), stream=first,
                           backward=True)
        if ext == ".avi" and first.start_time is not None:
            late_s = float(starts[0] - self._origin)
            if late_s > 1 / self.fps:
                logger.warning("%s: AVI can't delay audio; it will play %.3f s early", self.path, late_s)
        self._audio_packets = container.demux(*[t.in_stream for t in self._audio_tracks.values()])

    def _add_audio_track(self, in_stream: av.AudioStream, ext: str, audio_from: Path, video_zero: Fraction):
        """An output stream for one source audio stream: a stream copy, or a re-encode when the
        container can't hold the source's codec."""
        try:
            if hasattr(self._container, "add_stream_from_template"):  # PyAV >= 14
                out_stream = self._container.add_stream_from_template(in_stream)
            else:
                out_stream = self._container.add_stream(template=in_stream)
            mode = "copy"
        except ValueError:
            out_stream = self._add_audio_encoder(in_stream, ext, audio_from)
            mode = "encode"
        language = in_stream.metadata.get("language")
        if language:  # tells the tracks apart in players
            out_stream.metadata["language"] = language
        in_tb = Fraction(in_stream.time_base)
        # Source pts -> output pts, in the source's time base (exact for the copy).
        shift = round((self._origin + video_zero) / in_tb)
        return _AudioTrack(in_stream=in_stream, out_stream=out_stream, in_tb=in_tb, shift=shift, mode=mode)

    def _add_audio_encoder(self, in_stream: av.AudioStream, ext: str, audio_from: Path):
        name = _AUDIO_FALLBACK_BY_EXT[ext]
        for candidate in (name, "opus" if name == "libopus" else name, "libvorbis", "vorbis"):
            if _encoder_available(candidate):
                name = candidate
                break
        codec = av.Codec(name, "w")
        rates = list(codec.audio_rates or [])
        in_rate = in_stream.codec_context.sample_rate
        rate = in_rate if not rates or in_rate in rates else max(rates)
        layout = in_stream.codec_context.layout.name
        if in_stream.codec_context.channels > 2 and name in ("libopus", "opus", "libmp3lame"):
            layout = "stereo"
        logger.warning("%s: %s can't hold %s audio from %s; re-encoding it as %s",
                       self.path, ext, in_stream.codec_context.name, audio_from, name)
        stream = self._container.add_stream(name, rate=rate)
        stream.layout = layout
        if codec.audio_formats:
            stream.format = codec.audio_formats[0].name
        in_stream.thread_type = "AUTO"
        return stream

    # -- writing

    def write(self, frame_rgb: np.ndarray, time_s: float | None = None) -> None:
        """Encodes one frame.

        Args:
            frame_rgb: uint8 ``[H, W, 3]`` RGB with ``(H, W) == size_hw``.
            time_s: The frame's time on the source timeline (the ``time_s``
                `VideoReader` yields). Keeps the source timing (VFR, late
                starts) and A/V sync. If None, the frame is shown 1/fps after
                the previous one (don't mix both styles). Times that would not
                increase are nudged forward by one time-base tick.

        Raises:
            ValueError: Wrong shape/dtype, write after close, or a `time_s`
                before the output start.
        """
        if self._finished:
            raise ValueError(f"{self.path}: write() after close() or abort()")
        if not isinstance(frame_rgb, np.ndarray) or frame_rgb.dtype != np.uint8:
            kind = getattr(frame_rgb, "dtype", type(frame_rgb).__name__)
            raise ValueError(f"frame_rgb must be a uint8 numpy array, got {kind}")
        expected = (*self.size_hw, 3)
        if frame_rgb.shape != expected:
            raise ValueError(f"{self.path}: frame_rgb must have shape [H, W, 3] = {list(expected)}, got "
                             f"{list(frame_rgb.shape)} (every frame must have the first frame's size)")

        if time_s is None:
            if self._origin is None:
                self._origin = Fraction(0)
            out_time = max(Fraction(0), -self._origin) + Fraction(self._num_frames) / self._rate
        else:
            if self._origin is None:
                self._origin = Fraction(time_s)
            out_time = Fraction(time_s) - self._origin
            if out_time < 0:
                if out_time < -_EPS:
                    raise ValueError(f"{self.path}: frame time {time_s:.6f} s is before the output start "
                                     f"{float(self._origin):.6f} s (audio_start_s)")
                out_time = Fraction(0)
        pts = round(out_time / self._video_time_base)
        if self._last_pts is not None and pts <= self._last_pts:
            pts = self._last_pts + 1
        self._last_pts = pts
        self._last_out_time = float(pts * self._video_time_base)

        pad_h = self.encoded_size_hw[0] - self.size_hw[0]
        pad_w = self.encoded_size_hw[1] - self.size_hw[1]
        if pad_h or pad_w:
            frame_rgb = np.pad(frame_rgb, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame_rgb), format="rgb24")
        frame.pts = pts
        frame.time_base = self._video_time_base

        if self._audio_mode != "none":
            self._pump_audio(until_out_s=self._last_out_time + _AUDIO_LEAD_S)
        for packet in self._video_stream.encode(frame):
            self._container.mux(packet)
        self._num_frames += 1

    def _pump_audio(self, until_out_s: float | None) -> None:
        """Muxes source audio packets up to output time `until_out_s` (None: all in range)."""
        if self._audio_done:
            return
        tracks = self._audio_tracks
        while True:
            if self._audio_pending is not None:
                packet, self._audio_pending = self._audio_pending, None
            else:
                try:
                    packet = next(self._audio_packets, None)
                except _FFmpegError as e:
                    raise VideoError(f"{self._audio_in.name}: corrupt audio ({e.strerror or e})") from e
            if packet is None:
                break
            track = tracks.get(packet.stream.index)
            ts = packet.pts if packet.pts is not None else packet.dts
            if track is None or track.ended or ts is None or not packet.size:
                continue
            source_time = ts * track.in_tb - self._video_zero
            if self._audio_lo is not None and source_time < self._audio_lo - _EPS:
                continue
            if self._audio_hi is not None and source_time >= self._audio_hi - _EPS:
                track.ended = True  # the other tracks may still have packets in range
                if all(t.ended for t in tracks.values()):
                    break
                continue
            if until_out_s is not None and float(source_time - self._origin) > until_out_s:
                self._audio_pending = packet
                return
            if track.mode == "copy":
                packet.pts = None if packet.pts is None else packet.pts - track.shift
                packet.dts = None if packet.dts is None else packet.dts - track.shift
                packet.stream = track.out_stream
                self._container.mux(packet)
            else:
                self._encode_audio_packet(track, packet, source_time)
        self._audio_done = True
        for track in tracks.values():
            if track.mode == "encode":
                for frame in track.in_stream.decode(None):  # frames the decoder still holds
                    frame = self._retime_audio_frame(track, frame, source_time=None)
                    if frame is not None:
                        self._encode_audio_frame(track, frame)
                self._encode_audio_frame(track, None)  # flush the encoder

    def _encode_audio_packet(self, track: _AudioTrack, packet, source_time: Fraction) -> None:
        try:
            frames = track.in_stream.decode(packet)
        except _FFmpegError as e:
            raise VideoError(f"{self._audio_in.name}: corrupt audio ({e.strerror or e})") from e
        for frame in frames:
            self._encode_audio_frame(track, self._retime_audio_frame(track, frame, source_time))  # never None here

    def _retime_audio_frame(self, track: _AudioTrack, frame, source_time: Fraction | None):
        if track.encode_pts is None:
            if source_time is None:
                return None
            # Continuous sample count from the first kept frame: keeps the encoder's
            # resampler happy and the start exact.
            track.encode_pts = round((source_time - self._origin) * frame.sample_rate)
        frame.pts = track.encode_pts
        frame.time_base = Fraction(1, frame.sample_rate)
        track.encode_pts += frame.samples
        return frame

    def _encode_audio_frame(self, track: _AudioTrack, frame) -> None:
        for packet in track.out_stream.encode(frame):
            self._container.mux(packet)

    # -- finishing

    def close(self) -> None:
        """Flushes the encoders, muxes the remaining audio and renames the file onto `path`.

        Raises:
            VideoError: No frame was written (nothing is saved).
        """
        if self._finished:
            return
        try:
            if self._num_frames == 0:
                raise VideoError(f"{self.path}: no frames were written; nothing saved")
            for packet in self._video_stream.encode(None):
                self._container.mux(packet)
            if self._audio_mode != "none":
                self._pump_audio(until_out_s=None)
            self._container.close()
            if self._audio_in is not None:
                self._audio_in.close()
            os.replace(self._tmp_path, self.path)
        except BaseException:
            self.abort()
            raise
        self._finished = True
        logger.info("wrote %s: %d frames, %.2f s, audio: %s", self.path, self._num_frames,
                    self._last_out_time + 1 / self.fps, self._audio_mode)

    def abort(self) -> None:
        """Stops writing and removes the temporary file. Safe to call twice."""
        self._finished = True
        for container in (self._container, self._audio_in):
            if container is not None:
                try:
                    container.close()
                except Exception:  # already failing; the file is deleted anyway
                    logger.debug("%s: error closing while aborting", self.path, exc_info=True)
        self._container = self._audio_in = None
        if self._tmp_path is not None:
            self._tmp_path.unlink(missing_ok=True)
            self._tmp_path = None

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
        else:
            self.close()

    def __del__(self) -> None:
        # A writer dropped without close() leaves no partial file behind.
        if not getattr(self, "_finished", True):
            try:
                self.abort()
            except Exception:
                pass
