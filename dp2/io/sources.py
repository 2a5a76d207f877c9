"""Turn any input (image, folder, video, webcam) into a stream of :class:`Frame`."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from ..structures import Frame
from .images import IMAGE_SUFFIXES, load_image, resize_max_res

__all__ = ["InputKind", "VIDEO_SUFFIXES", "classify_path", "list_media", "image_frames", "array_frames"]

logger = logging.getLogger(__name__)

# Defined in .kinds (no torch: the CLI checks paths before it loads models).
from .kinds import VIDEO_SUFFIXES, InputKind, classify_path  # noqa: E402,F401


def list_media(root: Path, exclude: Path | None = None) -> tuple[list[Path], list[Path]]:
    """Images and videos under ``root`` (recursive, sorted) and the other entries that were skipped.

    Only regular files (directly or through a symlink) count as media; see
    :func:`dp2.io.paths.scan_folder` for the reasons entries are skipped or cannot be read.

    Args:
        root: folder to scan.
        exclude: a folder to leave out (the output folder when it lies inside the input).
    """
    from .paths import scan_folder

    scan = scan_folder(root, lambda p: p.suffix.lower() in IMAGE_SUFFIXES + VIDEO_SUFFIXES, exclude=exclude)
    return scan.media, [path for path, _ in scan.skipped + scan.failed]


def image_frames(path: Path, max_res: int | None = None) -> Iterator[Frame]:
    """One frame: the image, upright RGB, limited to ``max_res``."""
    image, _ = load_image(path)
    yield Frame(image=resize_max_res(image, max_res), index=0, source=str(path))


def array_frames(frames: Iterator[tuple[np.ndarray, float]], source: str, max_res: int | None = None) -> Iterator[Frame]:
    """Wrap (RGB uint8 [H, W, 3], time_s) pairs, e.g. from a video reader, as frames."""
    for index, (rgb, time_s) in enumerate(frames):
        image = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).contiguous()
        yield Frame(image=resize_max_res(image, max_res), index=index, time_s=time_s, source=source)
