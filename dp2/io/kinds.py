"""Input kinds by file suffix: light (no torch), so the CLI can check paths before loading models."""
from __future__ import annotations

import enum
from pathlib import Path

__all__ = ["IMAGE_SUFFIXES", "InputKind", "UNSUPPORTED_SUFFIXES", "VIDEO_SUFFIXES", "classify_path"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".mpo")
# Recognised but refused, with the reason (a folder run lists them as not anonymized).
UNSUPPORTED_SUFFIXES = {
    ".gif": "GIF is not supported (its 256-colour frames cannot be re-encoded without changing pixels "
            "outside the anonymized regions); convert it to PNG or WebP first, e.g. "
            "ffmpeg -i in.gif -c:v libwebp -lossless 1 out.webp",
}
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi")


class InputKind(enum.Enum):
    IMAGE = "image"
    VIDEO = "video"
    FOLDER = "folder"
    WEBCAM = "webcam"


def classify_path(path: Path) -> InputKind | None:
    """IMAGE/VIDEO by suffix (case-insensitive), FOLDER for directories, None otherwise."""
    if path.is_dir():
        return InputKind.FOLDER
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return InputKind.IMAGE
    if suffix in VIDEO_SUFFIXES:
        return InputKind.VIDEO
    return None
