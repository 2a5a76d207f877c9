"""Temporary siblings for atomic writes, created with the permissions a plain ``open`` gives.

Outputs are written to a hidden temporary next to their final name and renamed over it when
complete, so no half-written file ever carries the final name. ``tempfile.mkstemp`` creates the
temporary with mode 0600, which the rename would carry over to the output (unreadable to the
rest of a group sharing a dataset folder); here it gets ``0666 & ~umask`` like any new file.

A live temporary is held under an exclusive ``flock`` by the process writing it, until it is
renamed or deleted. Clean-ups (:func:`remove_if_stale`) delete only temporaries nobody holds, i.e.
those of processes that died (the kernel drops their locks), never another live run's.
"""
from __future__ import annotations

import os
import stat
import tempfile
import threading
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no flock; temporaries are then never seen as live
    fcntl = None

__all__ = ["partial_sibling", "release_finished", "remove_if_stale", "remove_stale_partials"]


def _read_umask() -> int:
    mask = os.umask(0o022)  # the umask can only be read by setting it
    os.umask(mask)
    return mask


_UMASK = _read_umask()  # once, at import: os.umask is process-wide and not thread-safe

# Temporary path -> a descriptor of it that holds its flock (this process's live temporaries).
_held: dict[str, int] = {}
_held_guard = threading.Lock()


def partial_sibling(path: Path, prefix: str, suffix: str) -> tuple[int, Path]:
    """Create a unique temporary file in ``path``'s folder; returns its open descriptor and path.

    The name is ``prefix`` + random + ``suffix``; the caller writes it, then ``os.replace``-s it
    over ``path`` (or deletes it on failure). The temporary is marked live (locked) until then.
    """
    release_finished()
    while True:
        fd, name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=Path(path).parent)
        if hasattr(os, "fchmod"):
            try:
                os.fchmod(fd, 0o666 & ~_UMASK)
            except OSError:  # file systems without POSIX permissions
                pass
        if _hold(fd, name):
            return fd, Path(name)
        os.close(fd)  # a clean-up deleted it between mkstemp and the lock: make another


def _hold(fd: int, name: str) -> bool:
    """Lock the new temporary for as long as it exists; False if a clean-up removed it first."""
    if fcntl is None:
        return True
    lock_fd = os.dup(fd)  # shares the open file: the caller may close ``fd``, the lock stays
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX)  # a clean-up holds it only while it checks and unlinks
    except OSError:  # file systems without flock: nothing to hold
        os.close(lock_fd)
        return True
    if os.fstat(lock_fd).st_nlink == 0:
        os.close(lock_fd)
        return False
    with _held_guard:
        _held[name] = lock_fd
    return True


def release_finished() -> None:
    """Drop the locks of this process's temporaries that were renamed or deleted since."""
    with _held_guard:
        for name, lock_fd in list(_held.items()):
            try:
                current = os.stat(name, follow_symlinks=False).st_ino == os.fstat(lock_fd).st_ino
            except OSError:
                current = False
            if not current:
                os.close(lock_fd)
                del _held[name]


def remove_if_stale(path: Path) -> bool:
    """Delete the temporary ``path`` unless a live process holds it; returns whether it was deleted.

    Only regular files are touched (never through a symlink).
    """
    # Read-write: NFS emulates flock with POSIX locks, whose exclusive kind needs a writable
    # descriptor (nothing is written). A temporary we may not open is left alone.
    flags = os.O_RDWR | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return False
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return False
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False  # its writer is alive
            except OSError:
                pass  # no flock on this file system: fall back to deleting, as before
        try:
            if os.stat(path, follow_symlinks=False).st_ino != info.st_ino:
                return False  # renamed away and replaced meanwhile
            os.unlink(path)
        except OSError:
            return False
        return True
    finally:
        os.close(fd)


def remove_stale_partials(path: Path) -> int:
    """Delete the temporaries (``.<stem>.<random>.partial<ext>``) of output ``path`` that dead
    processes left; live ones (another run writing the same output) are kept. Returns how many."""
    path = Path(path)
    release_finished()
    head, tail = f".{path.stem}.", f".partial{path.suffix}"
    try:
        names = os.listdir(path.parent)
    except OSError:
        return 0
    return sum(remove_if_stale(path.parent / name) for name in names
               if name.startswith(head) and name.endswith(tail) and len(name) > len(head) + len(tail))
