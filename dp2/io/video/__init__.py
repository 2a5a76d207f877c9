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

Modules:
    probe     opening a file, `VideoError`, `VideoInfo`, `probe_video`
    reading   `VideoReader`: seeking, frame selection by time (VFR), resampling, rotation
    encoders  encoder and settings per container, `check_video_encoder`
    audio     copying (or re-encoding) the audio of a source into the output
    writing   `VideoWriter`: output timeline, video stream, atomic publish

Import the public names from here (``from dp2.io.video import VideoReader``); the modules'
other names are shared between them, not an API.
"""

from .encoders import check_video_encoder
from .probe import VideoError, VideoInfo, probe_video
from .reading import VideoReader
from .writing import VideoWriter

__all__ = ["VideoError", "VideoInfo", "VideoReader", "VideoWriter", "check_video_encoder", "probe_video"]
