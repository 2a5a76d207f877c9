"""Carrying a source file's audio into a video being written.

Owns `AudioCopy`: which part of the source's audio is kept (a range on the source timeline), the
`origin` that range fixes for the output's timeline, one output track per source audio stream
(a stream copy, or a re-encode where the container can't hold the codec), and muxing the packets
interleaved with the video, a little ahead of it. `VideoWriter` drives it; the timing rules are
in its docstring (Convention: audio and timing).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

from .encoders import audio_fallback_encoder
from .probe import EPS_S, FFmpegError, Probe, VideoError, open_input, probe_file

logger = logging.getLogger(__name__)

__all__ = ["AudioCopy", "AudioTrack"]


@dataclass
class AudioTrack:
    """One source audio stream on its way into the output."""

    in_stream: av.AudioStream
    out_stream: object  # av.AudioStream (copy) or the encoder's stream
    in_tb: Fraction
    shift: int  # source pts - output pts, in in_tb
    mode: str  # "copy" or "encode"
    encode_pts: int | None = None  # next sample's pts when re-encoding
    ended: bool = False  # a packet past the range was seen


class AudioCopy:
    """The audio streams of a source file on their way into an output container.

    Use: `open`, then `add_track` for each of `in_streams` (the caller decides what to do with
    one that raises), `start`, `mux_until` after each video frame, `finish` before the output
    container closes, and `close` (also on failure).

    Attributes:
        origin: The source time shown at output time 0 (see `VideoWriter`).
        in_streams: The source's audio streams.
        tracks: Source stream index -> its `AudioTrack`, for the streams added.
    """

    def __init__(self, source: av.container.InputContainer, timing: Probe, *, output: av.container.OutputContainer,
                 output_path: Path, start_s: float | None, end_s: float | None, fps: float) -> None:
        self._input = source
        self._output = output
        self._output_path = output_path
        self._ext = output_path.suffix.lower()
        self._fps = fps
        self.in_streams: list[av.AudioStream] = list(source.streams.audio)
        self._video_zero = timing.zero_pts * timing.time_base  # source time 0 on the container clock
        self._lo = Fraction(start_s) if start_s is not None and start_s > 0 else None  # kept range, source time
        self._hi = None if end_s is None else Fraction(end_s)
        if self._ext == ".avi" and self._lo is None:
            # AVI stores no start times: both streams play from 0, so cut the audio
            # at the first video frame instead of keeping a lead-in.
            self._lo = Fraction(0)
        starts = [self._start_of(s) for s in self.in_streams]
        if self._lo is not None:
            self.origin = self._lo
            lead_in = float(self._lo - min(starts)) if start_s is None or start_s <= 0 else 0.0
            if self._ext == ".avi" and lead_in > 1 / fps:
                logger.warning("%s: AVI can't start audio before the video; the %.3f s of audio of %s before "
                               "its first video frame are left out (use .mp4/.mkv/.mov to keep them)",
                               output_path, lead_in, source.name)
        else:
            self.origin = min(Fraction(0), *starts)
            if self._hi is not None and self._hi <= self.origin:
                raise ValueError(f"audio_end_s ({end_s}) must be after the audio start ({float(self.origin):.3f} s)")
        self.tracks: dict[int, AudioTrack] = {}
        self._packets = None  # the demuxer, from start()
        self._pending = None  # a packet read but not yet due
        self._done = False

    @classmethod
    def open(cls, source: Path, *, output: av.container.OutputContainer, output_path: Path,
             start_s: float | None, end_s: float | None, fps: float) -> AudioCopy | None:
        """Opens `source` for copying its audio into `output`; None if it has no audio stream.

        Raises:
            VideoError: `source` can't be read (see `probe_video`).
            ValueError: `end_s` is not after the start of the audio.
        """
        timing = probe_file(source)  # validates the file and gives source time 0
        container = open_input(source)
        if not container.streams.audio:
            logger.info("%s: no audio stream; writing video only", source)
            container.close()
            return None
        try:
            return cls(container, timing, output=output, output_path=output_path, start_s=start_s, end_s=end_s,
                       fps=fps)
        except BaseException:
            container.close()
            raise

    @property
    def mode(self) -> str:
        """How the tracks are written, e.g. "copy", "encode" or "copy+encode"."""
        return "+".join(t.mode for t in self.tracks.values())

    def _start_of(self, stream: av.AudioStream) -> Fraction:
        """A stream's start on the source timeline (0 if unknown)."""
        if stream.start_time is None:
            return Fraction(0)
        return stream.start_time * Fraction(stream.time_base) - self._video_zero

    # -- setup

    def add_track(self, in_stream: av.AudioStream) -> None:
        """Adds an output stream for one source audio stream: a stream copy, or a re-encode when
        the container can't hold the source's codec.

        Raises:
            ValueError, TypeError: Neither works.
        """
        try:
            if hasattr(self._output, "add_stream_from_template"):  # PyAV >= 14
                out_stream = self._output.add_stream_from_template(in_stream)
            else:
                out_stream = self._output.add_stream(template=in_stream)
            mode = "copy"
        except ValueError:
            out_stream = self._add_encoder(in_stream)
            mode = "encode"
        language = in_stream.metadata.get("language")
        if language:  # tells the tracks apart in players
            out_stream.metadata["language"] = language
        in_tb = Fraction(in_stream.time_base)
        # Source pts -> output pts, in the source's time base (exact for the copy).
        shift = round((self.origin + self._video_zero) / in_tb)
        self.tracks[in_stream.index] = AudioTrack(in_stream=in_stream, out_stream=out_stream, in_tb=in_tb,
                                                  shift=shift, mode=mode)

    def _add_encoder(self, in_stream: av.AudioStream):
        name = audio_fallback_encoder(self._ext)
        codec = av.Codec(name, "w")
        rates = list(codec.audio_rates or [])
        in_rate = in_stream.codec_context.sample_rate
        rate = in_rate if not rates or in_rate in rates else max(rates)
        layout = in_stream.codec_context.layout.name
        if in_stream.codec_context.channels > 2 and name in ("libopus", "opus", "libmp3lame"):
            layout = "stereo"
        logger.warning("%s: %s can't hold %s audio from %s; re-encoding it as %s",
                       self._output_path, self._ext, in_stream.codec_context.name, self._input.name, name)
        stream = self._output.add_stream(name, rate=rate)
        stream.layout = layout
        if codec.audio_formats:
            stream.format = codec.audio_formats[0].name
        in_stream.thread_type = "AUTO"
        return stream

    def start(self) -> None:
        """Seeks to the start of the range and starts reading the added tracks' packets."""
        first = self.in_streams[0]
        if self._lo is not None and self._lo > 1:
            self._input.seek(round((self._lo + self._video_zero) / Fraction(first.time_base)), stream=first,
                             backward=True)
        if self._ext == ".avi" and first.start_time is not None:
            late_s = float(self._start_of(first) - self.origin)
            if late_s > 1 / self._fps:
                logger.warning("%s: AVI can't delay audio; it will play %.3f s early", self._output_path, late_s)
        self._packets = self._input.demux(*[t.in_stream for t in self.tracks.values()])

    # -- muxing

    def mux_until(self, out_s: float) -> None:
        """Muxes the source's audio packets in range up to output time `out_s`."""
        self._mux(until_out_s=out_s)

    def finish(self) -> None:
        """Muxes the rest of the range and flushes the re-encoders."""
        self._mux(until_out_s=None)

    def close(self) -> None:
        """Releases the source file. Safe to call twice."""
        self._input.close()

    def _corrupt(self, error: FFmpegError) -> VideoError:
        return VideoError(f"{self._input.name}: corrupt audio ({error.strerror or error})")

    def _next_packet(self):
        if self._pending is not None:
            packet, self._pending = self._pending, None
            return packet
        try:
            return next(self._packets, None)
        except FFmpegError as e:
            raise self._corrupt(e) from e

    def _mux(self, until_out_s: float | None) -> None:
        """Muxes packets up to output time `until_out_s` (None: all in range); at the end of the
        range (or of the source) flushes the re-encoders, once."""
        if self._done:
            return
        tracks = self.tracks
        while (packet := self._next_packet()) is not None:
            track = tracks.get(packet.stream.index)
            ts = packet.pts if packet.pts is not None else packet.dts
            if track is None or track.ended or ts is None or not packet.size:
                continue
            source_time = ts * track.in_tb - self._video_zero
            if self._lo is not None and source_time < self._lo - EPS_S:
                continue
            if self._hi is not None and source_time >= self._hi - EPS_S:
                track.ended = True  # the other tracks may still have packets in range
                if all(t.ended for t in tracks.values()):
                    break
                continue
            if until_out_s is not None and float(source_time - self.origin) > until_out_s:
                self._pending = packet
                return
            if track.mode == "copy":
                packet.pts = None if packet.pts is None else packet.pts - track.shift
                packet.dts = None if packet.dts is None else packet.dts - track.shift
                packet.stream = track.out_stream
                self._output.mux(packet)
            else:
                self._encode_packet(track, packet, source_time)
        self._done = True
        self._flush_encoders()

    def _encode_packet(self, track: AudioTrack, packet, source_time: Fraction) -> None:
        try:
            frames = track.in_stream.decode(packet)
        except FFmpegError as e:
            raise self._corrupt(e) from e
        for frame in frames:
            self._encode_frame(track, self._retime_frame(track, frame, source_time))  # never None here

    def _flush_encoders(self) -> None:
        for track in self.tracks.values():
            if track.mode == "encode":
                for frame in track.in_stream.decode(None):  # frames the decoder still holds
                    frame = self._retime_frame(track, frame, source_time=None)
                    if frame is not None:
                        self._encode_frame(track, frame)
                self._encode_frame(track, None)  # flush the encoder

    def _retime_frame(self, track: AudioTrack, frame, source_time: Fraction | None):
        if track.encode_pts is None:
            if source_time is None:
                return None
            # Continuous sample count from the first kept frame: keeps the encoder's
            # resampler happy and the start exact.
            track.encode_pts = round((source_time - self.origin) * frame.sample_rate)
        frame.pts = track.encode_pts
        frame.time_base = Fraction(1, frame.sample_rate)
        track.encode_pts += frame.samples
        return frame

    def _encode_frame(self, track: AudioTrack, frame) -> None:
        for packet in track.out_stream.encode(frame):
            self._output.mux(packet)
