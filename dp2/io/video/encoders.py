"""Which encoder, pixel format and settings a video output gets.

Owns the choice by container extension (`choose_video_encoding`, and `audio_fallback_encoder`
for audio a container can't stream-copy), the lossless variants, and `check_video_encoder`,
which validates a ``--codec`` name early with a one-line message. Nothing here opens a file.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

__all__ = ["SUPPORTED_EXTS", "VideoEncoding", "audio_fallback_encoder", "check_video_encoder",
           "choose_video_encoding", "encoder_available"]

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
SUPPORTED_EXTS = tuple(_VIDEO_CODEC_BY_EXT)

# Fine encoder time base for codecs that accept it: keeps source frame times
# (VFR, late starts) to 11 us and is an exact multiple of common frame rates.
_FINE_TIME_BASE = Fraction(1, 90000)

# Shown when a --codec is refused (those of them this FFmpeg build has).
_EXAMPLE_VIDEO_ENCODERS = ("libx264", "libx265", "libvpx-vp9", "mpeg4", "ffv1", "mjpeg")


def encoder_available(name: str) -> bool:
    """Whether this PyAV/FFmpeg build has an encoder called `name`."""
    try:
        av.Codec(name, "w")
    except ValueError:  # av.codec.codec.UnknownCodecError: unknown or decoder-only
        return False
    return True


def check_video_encoder(codec: str) -> None:
    """Raise ValueError unless ``codec`` names a video encoder of this PyAV/FFmpeg build.

    The message is one line and lists a few encoders that are there, e.g. for ``aac``:
    "'aac' is an audio encoder, not a video encoder; use e.g. libx264, libx265, ...".
    """
    examples = ", ".join(name for name in _EXAMPLE_VIDEO_ENCODERS if encoder_available(name))
    try:
        kind = av.Codec(codec, "w").type
    except ValueError:  # unknown, or a decoder only
        raise ValueError(f"{codec!r} is not a video encoder of this PyAV/FFmpeg build; "
                         f"use e.g. {examples}") from None
    if kind != "video":
        raise ValueError(f"{codec!r} is {'an' if kind[0] in 'aeiou' else 'a'} {kind} encoder, not a video encoder; "
                         f"use e.g. {examples}")


@dataclass(frozen=True)
class VideoEncoding:
    """How a video stream is encoded."""

    codec: str
    pix_fmt: str
    options: dict[str, str]
    time_base: Fraction | None  # None: 1/fps
    even_size: bool  # encoder needs even width and height
    qscale: int | None = None  # fixed quantizer for mpeg4/mjpeg


def choose_video_encoding(ext: str, codec: str | None, crf: int | None, lossless: bool, path: Path) -> VideoEncoding:
    """The encoding for an output with extension `ext` (one of `SUPPORTED_EXTS`; see `VideoWriter`).

    Raises:
        ValueError: `codec` is not a video encoder of this build (the message names `path`).
    """
    if codec is None:
        codec = (_LOSSLESS_CODEC_BY_EXT if lossless else _VIDEO_CODEC_BY_EXT)[ext]
        if codec == "libvpx-vp9" and not encoder_available(codec):
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
            return VideoEncoding(codec, "yuv444p", options, _FINE_TIME_BASE, even_size=False)
        default_crf = 18 if codec == "libx264" else 22
        # At crf 18 on the hamilton clip, veryfast encodes 2.8x faster than medium: PSNR 41.1 vs
        # 41.7 dB against the source, file 2% smaller. --crf lower buys back the 0.6 dB.
        options = {"crf": str(default_crf if crf is None else crf), "preset": "veryfast"}
        if codec == "libx265":
            options["x265-params"] = "log-level=error"  # x265 otherwise prints to stderr
        return VideoEncoding(codec, "yuv420p", options, _FINE_TIME_BASE, even_size=True)
    if codec in ("libvpx-vp9", "libvpx"):
        speed = {"deadline": "good", "cpu-used": "4"}
        if codec == "libvpx-vp9":
            speed["row-mt"] = "1"
        if lossless and codec == "libvpx-vp9":
            return VideoEncoding(codec, "gbrp", {"lossless": "1", **speed}, Fraction(1, 1000), even_size=False)
        options = {"crf": str(24 if crf is None else crf), "b": "0", **speed}
        if codec == "libvpx":
            options["b"] = "10M"  # VP8 needs a bitrate cap alongside crf
        return VideoEncoding(codec, "yuv420p", options, Fraction(1, 1000), even_size=False)
    if codec == "ffv1":
        return VideoEncoding(codec, "bgr0", {}, None, even_size=False)  # exact RGB
    if codec in ("mpeg4", "mjpeg"):
        pix_fmt = "yuv420p" if codec == "mpeg4" else "yuvj420p"
        qscale = 2 if crf is None else int(min(max(crf, 1), 31))
        return VideoEncoding(codec, pix_fmt, {}, None, even_size=False, qscale=qscale)
    formats = [f.name for f in (av.Codec(codec, "w").video_formats or [])]
    pix_fmt = "yuv420p" if not formats or "yuv420p" in formats else formats[0]
    options = {} if crf is None else {"crf": str(crf)}
    return VideoEncoding(codec, pix_fmt, options, None, even_size=pix_fmt == "yuv420p")


def audio_fallback_encoder(ext: str) -> str:
    """The audio encoder for a container `ext` that can't hold the source's audio codec."""
    name = _AUDIO_FALLBACK_BY_EXT[ext]
    for candidate in (name, "opus" if name == "libopus" else name, "libvorbis", "vorbis"):
        if encoder_available(candidate):
            return candidate
    return name
