"""Encoding uint8 RGB frames into a video file that appears only when complete.

Owns `VideoWriter`: the output's timeline (frame times, the shared origin that keeps audio in
sync), the video stream (size padding, time base), interleaving the audio of `audio_from`
(`dp2.io.video.audio`) and publishing the file atomically. Which encoder and settings an
extension gets is decided in `dp2.io.video.encoders`.
"""

from __future__ import annotations

import logging
import math
import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from ..atomic import partial_sibling
from .audio import AudioCopy
from .encoders import SUPPORTED_EXTS, choose_video_encoding
from .probe import EPS_S, VideoError

logger = logging.getLogger(__name__)

__all__ = ["VideoWriter"]

# How far ahead of the latest video frame (output seconds) audio packets are muxed,
# so the muxer's interleaving queue stays short.
_AUDIO_LEAD_S = 0.5


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
        self._audio: AudioCopy | None = None

        ext = self.path.suffix.lower()
        if ext not in SUPPORTED_EXTS:
            raise ValueError(
                f"{self.path}: unsupported video extension {ext!r}, expected one of {', '.join(SUPPORTED_EXTS)}"
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
        self._encoding = choose_video_encoding(ext, codec, crf, lossless, self.path)
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

        fd, self._tmp_path = partial_sibling(self.path, prefix=f".{self.path.stem}.",
                                             suffix=f".partial{self.path.suffix}")
        os.close(fd)
        try:
            self._container = av.open(str(self._tmp_path), mode="w")
            self._open_video_stream()
            if audio_from is not None:
                self._open_audio(audio_from, audio_start_s, audio_end_s)
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

    def _open_audio(self, audio_from: Path, start_s: float | None, end_s: float | None) -> None:
        """Adds every audio track of `audio_from` that can be written; the first one must be."""
        self._audio = AudioCopy.open(audio_from, output=self._container, output_path=self.path, start_s=start_s,
                                     end_s=end_s, fps=self.fps)
        if self._audio is None:
            return
        self._origin = self._audio.origin
        for number, in_stream in enumerate(self._audio.in_streams):
            try:
                self._add_audio_track(in_stream)
            except (ValueError, TypeError) as e:
                if number == 0:
                    raise
                # Keep the video and the other tracks rather than failing the whole file.
                logger.warning("%s: audio track %d of %s (%s) can't be written to %s, left out: %s", self.path,
                               number + 1, audio_from, in_stream.codec_context.name, self.path.suffix.lower(), e)
        self._audio.start()

    def _add_audio_track(self, in_stream: av.AudioStream) -> None:
        # One method per track, so that a test can refuse one of them.
        self._audio.add_track(in_stream)

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

        pts = self._next_pts(time_s)
        pad_h = self.encoded_size_hw[0] - self.size_hw[0]
        pad_w = self.encoded_size_hw[1] - self.size_hw[1]
        if pad_h or pad_w:
            frame_rgb = np.pad(frame_rgb, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame_rgb), format="rgb24")
        frame.pts = pts
        frame.time_base = self._video_time_base

        if self._audio is not None:
            self._audio.mux_until(self._last_out_time + _AUDIO_LEAD_S)
        for packet in self._video_stream.encode(frame):
            self._container.mux(packet)
        self._num_frames += 1

    def _next_pts(self, time_s: float | None) -> int:
        """The output pts of the next frame, shown at source time `time_s` (None: 1/fps after the last)."""
        if time_s is None:
            if self._origin is None:
                self._origin = Fraction(0)
            out_time = max(Fraction(0), -self._origin) + Fraction(self._num_frames) / self._rate
        else:
            if self._origin is None:
                self._origin = Fraction(time_s)
            out_time = Fraction(time_s) - self._origin
            if out_time < 0:
                if out_time < -EPS_S:
                    raise ValueError(f"{self.path}: frame time {time_s:.6f} s is before the output start "
                                     f"{float(self._origin):.6f} s (audio_start_s)")
                out_time = Fraction(0)
        pts = round(out_time / self._video_time_base)
        if self._last_pts is not None and pts <= self._last_pts:
            pts = self._last_pts + 1
        self._last_pts = pts
        self._last_out_time = float(pts * self._video_time_base)
        return pts

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
            if self._audio is not None:
                self._audio.finish()
            self._container.close()
            if self._audio is not None:
                self._audio.close()
            os.replace(self._tmp_path, self.path)
        except BaseException:
            self.abort()
            raise
        self._finished = True
        logger.info("wrote %s: %d frames, %.2f s, audio: %s", self.path, self._num_frames,
                    self._last_out_time + 1 / self.fps, self._audio.mode if self._audio is not None else "none")

    def abort(self) -> None:
        """Stops writing and removes the temporary file. Safe to call twice."""
        self._finished = True
        for opened in (self._container, self._audio):
            if opened is not None:
                try:
                    opened.close()
                except Exception:  # already failing; the file is deleted anyway
                    logger.debug("%s: error closing while aborting", self.path, exc_info=True)
        self._container = self._audio = None
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
