"""Opening a video file and reading what is known before decoding it.

Owns the one-line `VideoError` for every way a file can be unusable, `VideoInfo` and
`probe_video`, and what reading and audio copying share: `open_input` (a checked open) and
`probe_file` (the info plus the exact timing that places source time 0). Nothing here decodes
more than the first frame.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

logger = logging.getLogger(__name__)

__all__ = ["EPS_S", "FFmpegError", "Probe", "VideoError", "VideoInfo", "open_input", "probe_file",
           "probe_video", "video_stream"]

FFmpegError = av.error.FFmpegError  # base of PyAV's FFmpeg errors (also a ValueError/OSError subclass)

# Tolerance for comparing times, in seconds: far below any frame interval, it
# absorbs float rounding of user-given times (e.g. 0.1 + 0.2 vs 0.3).
EPS_S = 1e-6


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
            seconds; source-timeline time 0 (see the `dp2.io.video` docstring).
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


@dataclass(frozen=True)
class Probe:
    """`VideoInfo` plus the exact timing of the video stream."""

    info: VideoInfo
    zero_pts: int  # video stream pts of source time 0
    time_base: Fraction  # of the video stream
    fps: Fraction  # exact average rate


def open_input(path: Path) -> av.container.InputContainer:
    """Opens `path` for decoding, turning every failure into a one-line `VideoError`."""
    if not path.exists():
        raise VideoError(f"{path}: no such file")
    if path.is_dir():
        raise VideoError(f"{path}: is a directory, expected a video file")
    if path.stat().st_size == 0:
        raise VideoError(f"{path}: file is empty (0 bytes), expected a video")
    try:
        return av.open(str(path), mode="r")
    except FFmpegError as e:
        reason = e.strerror or str(e)
        raise VideoError(f"{path}: not a readable video file ({reason})") from e


def video_stream(container: av.container.InputContainer, path: Path) -> av.VideoStream:
    """The first video stream, or a `VideoError` naming the streams there are."""
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
    except FFmpegError as e:
        raise VideoError(f"{path}: corrupt video, could not decode the first frame ({e.strerror or e})") from e
    raise VideoError(f"{path}: video stream has no decodable frames")


def probe_file(path: Path) -> Probe:
    """`probe_video`, plus the stream timing that reading and audio copying need."""
    container = open_input(path)
    try:
        stream = video_stream(container, path)
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
        return Probe(info=info, zero_pts=zero_pts, time_base=time_base, fps=fps)
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
    return probe_file(Path(path)).info
