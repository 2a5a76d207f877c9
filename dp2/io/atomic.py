"""Temporary siblings for atomic writes, created with the permissions a plain ``open`` gives.

Outputs are written to a hidden temporary next to their final name and renamed over it when
complete, so no half-written file ever carries the final name. ``tempfile.mkstemp`` creates the
temporary with mode 0600, which the rename would carry over to the output (unreadable to the
rest of a group sharing a dataset folder); here it gets ``0666 & ~umask`` like any new file.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["partial_sibling"]


def _read_umask() -> int:
    mask = os.umask(0o022)  # the umask can only be read by setting it
    os.umask(mask)
    return mask


_UMASK = _read_umask()  # once, at import: os.umask is process-wide and not thread-safe


def partial_sibling(path: Path, prefix: str, suffix: str) -> tuple[int, Path]:
    """Create a unique temporary file in ``path``'s folder; returns its open descriptor and path.

    The name is ``prefix`` + random + ``suffix``; the caller writes it, then ``os.replace``-s it
    over ``path`` (or deletes it on failure).
    """
    fd, name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=Path(path).parent)
    if hasattr(os, "fchmod"):
        try:
            os.fchmod(fd, 0o666 & ~_UMASK)
        except OSError:  # file systems without POSIX permissions
            pass
    return fd, Path(name)
