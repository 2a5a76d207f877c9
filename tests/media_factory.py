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
) -> Path:
    """Writes a clip: 64x48 h264 frames at `frame_times` (default 25 fps, 2 s) + optional 2 s sine."""
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
    audio = None
    if audio_codec:
        audio = container.add_stream(audio_codec, rate=44100)
        audio.layout = "mono"
    for i, t in enumerate(frame_times):
        frame = av.VideoFrame.from_ndarray(_image(i, h, w), format="rgb24")
        frame.pts = round((t + video_delay_s) * 1000)
        frame.time_base = Fraction(1, 1000)
        for packet in video.encode(frame):
            container.mux(packet)
    for packet in video.encode():
        container.mux(packet)
    if audio is not None:
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
