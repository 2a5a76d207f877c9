"""Synthetic media for tests: tiny clips written with PyAV (a moving square, optional sine audio)."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

H, W, FPS, N = 48, 64, 25, 50  # 2 s clips


def _image(i: int, h: int = H, w: int = W) -> np.ndarray:
    """A frame with a fixed red marker at the top-left and a white square that moves with i."""
    image = np.full((h, w, 3), 40, np.uint8)
    image[:8, :8] = (255, 0, 0)
    x = 10 + (i * 3) % (w - 20)
    image[20:30, x : x + 10] = 255
    return image


def _sine(num_samples: int, rate: int = 44100) -> np.ndarray:
    t = np.arange(num_samples) / rate
    return (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


def _make_clip(
    path: Path,
    *,
    frame_times: list[float] | None = None,
    audio_codec: str | None = "aac",
    video_delay_s: float = 0.0,
    rotation: int | None = None,
    gop: int = 10,
    h: int = H,
    w: int = W,
    faststart: bool = False,
    audio_tracks: int = 1,
) -> Path:
    """Writes a clip: 64x48 h264 frames at `frame_times` (default 25 fps, 2 s) + optional 2 s sine
    (`audio_tracks` copies of it, tagged with the languages eng, fra, deu, ...)."""
    if frame_times is None:
        frame_times = [i / FPS for i in range(N)]
    options = {"movflags": "+faststart"} if faststart else {}
    container = av.open(str(path), "w", options=options)
    video = container.add_stream("libx264", rate=FPS)
    video.width, video.height, video.pix_fmt = w, h, "yuv420p"
    video.codec_context.time_base = Fraction(1, 1000)
    video.codec_context.gop_size = gop
    video.codec_context.options = {"preset": "ultrafast", "crf": "10"}
    if rotation is not None:
        video.set_display_rotation(rotation)
    audios = []
    for number in range(audio_tracks if audio_codec else 0):
        audio = container.add_stream(audio_codec, rate=44100)
        audio.layout = "mono"
        audio.metadata["language"] = ("eng", "fra", "deu", "spa")[number % 4]
        audios.append(audio)
    for i, t in enumerate(frame_times):
        frame = av.VideoFrame.from_ndarray(_image(i, h, w), format="rgb24")
        frame.pts = round((t + video_delay_s) * 1000)
        frame.time_base = Fraction(1, 1000)
        for packet in video.encode(frame):
            container.mux(packet)
    for packet in video.encode():
        container.mux(packet)
    for audio in audios:
        write_sine(container, audio, frame_times[-1] + video_delay_s + 0.04)
    container.close()
    return path


def write_sine(container, stream, seconds: float) -> None:
    """Encode ``seconds`` of a mono 440 Hz sine into an audio ``stream`` of ``container``."""
    samples = _sine(int(44100 * seconds))
    for k in range(0, len(samples), 1024):
        frame = av.AudioFrame.from_ndarray(samples[None, k : k + 1024], format="flt", layout="mono")
        frame.sample_rate, frame.pts = 44100, k
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)


make_clip = _make_clip


def make_resolution_change_clip(path: Path, sizes_hw=((H, W), (80, 96)), frames_each: int = 10) -> Path:
    """An MJPEG .mkv whose frames change size mid-stream (each JPEG carries its own size), like
    concatenated recordings; the first `frames_each` frames have the first size, and so on."""
    container = av.open(str(path), "w")
    stream = container.add_stream("mjpeg", rate=FPS)
    stream.height, stream.width = sizes_hw[0]
    stream.pix_fmt = "yuvj420p"
    stream.codec_context.time_base = Fraction(1, FPS)
    i = 0
    for number, (h, w) in enumerate(sizes_hw):
        encoder = stream.codec_context if number == 0 else av.CodecContext.create("mjpeg", "w")
        if number:
            encoder.height, encoder.width, encoder.pix_fmt = h, w, "yuvj420p"
            encoder.time_base = Fraction(1, FPS)
        for _ in range(frames_each):
            frame = av.VideoFrame.from_ndarray(_image(i, h, w), format="rgb24").reformat(format="yuvj420p")
            frame.pts, frame.time_base = i, Fraction(1, FPS)
            for packet in encoder.encode(frame):
                packet.stream = stream
                container.mux(packet)
            i += 1
        for packet in encoder.encode(None):
            packet.stream = stream
            container.mux(packet)
    container.close()
    return path
