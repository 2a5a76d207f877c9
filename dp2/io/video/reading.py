"""Decoding a video file into upright uint8 RGB frames with their source times.

Owns `VideoReader`: seeking to a start time, selecting frames by presentation time (exact on
variable frame rate input), resampling to a constant rate, turning frames upright and keeping one
frame size when a stream changes resolution. Opening and probing are in `dp2.io.video.probe`.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from .probe import EPS_S, FFmpegError, VideoError, VideoInfo, open_input, probe_file, video_stream

logger = logging.getLogger(__name__)

__all__ = ["VideoReader"]


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

        probe = probe_file(self.path)
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
        self._container = open_input(self.path)
        self._stream = video_stream(self._container, self.path)
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
        return max(math.ceil((stop - self.start_time) * rate - EPS_S), 0)

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
                    if first and seeked and time_s > self.start_time + EPS_S:
                        # The demuxer landed after start_time: decode from the beginning instead.
                        logger.debug("%s: seek overshot (%.3f s > %.3f s); decoding from the start",
                                     self.path, time_s, self.start_time)
                        seeked = False
                        self._seek(0.0)
                        break
                    first = False
                    last_time = time_s
                    yield frame, time_s
        except FFmpegError as e:
            raise VideoError(
                f"{self.path}: corrupt or truncated video, decoding failed after t={last_time:.3f} s "
                f"({e.strerror or e})"
            ) from e
        if last_packet_corrupt:
            raise VideoError(f"{self.path}: truncated or corrupt video, last decodable frame at t={last_time:.3f} s")

    def _iter_source_rate(self) -> Iterator[tuple[np.ndarray, float]]:
        for frame, time_s in self._decoded_frames():
            if time_s < self.start_time - EPS_S:
                continue
            if self.end_time is not None and time_s >= self.end_time - EPS_S:
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
            while grid(n) < time_s - EPS_S and grid(n) < end - EPS_S:
                yield self._to_rgb(frame if shown is None else shown), grid(n)
                n += 1
            if grid(n) >= end - EPS_S:
                return
            shown, shown_time = frame, time_s
            if getattr(frame, "duration", None) and frame.time_base:
                shown_duration = float(frame.duration * Fraction(frame.time_base))
            else:
                shown_duration = float(1 / self._source_fps)
        if shown is None:
            return
        stop = min(end, shown_time + shown_duration)
        while grid(n) < stop - EPS_S:
            yield self._to_rgb(shown), grid(n)
            n += 1

