"""One run at a time per output folder: an exclusive ``flock`` on ``<output>/.dp2.lock``.

The lock belongs to the open file, so the kernel drops it when its run ends in any way (exit,
crash, ``kill -9``); a later run never has to clean up after a dead one. The holder writes its
process id and host into the file (for the message a second run prints) and deletes the file when
it is done; a run that opened the file just before it was deleted notices (the path names another
file, or none) and takes a fresh one, so two runs can never both hold the lock.
"""
from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path
from typing import Iterator

try:
    import fcntl
except ImportError:  # Windows: no flock; runs are not locked there
    fcntl = None

__all__ = ["LOCK_NAME", "OutputBusyError", "output_lock"]

LOCK_NAME = ".dp2.lock"


class OutputBusyError(RuntimeError):
    """Another live run holds the output folder; the message names the folder and the holder."""


def _describe_holder(path: Path) -> str:
    try:
        text = path.read_text(encoding="ascii", errors="replace").split()
    except OSError:
        return "another dp2 run"
    return f"another dp2 run (pid {text[0]} on {text[1]})" if len(text) >= 2 else "another dp2 run"


@contextlib.contextmanager
def output_lock(folder: Path) -> Iterator[Path]:
    """Hold ``folder`` for this run; yields the lock file's path.

    Raises:
        OutputBusyError: another run holds it (nothing was changed in the folder).
        OSError: the lock file cannot be created (e.g. a read-only folder).
    """
    path = Path(folder) / LOCK_NAME
    if fcntl is None:
        yield path
        return
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    while True:
        try:
            fd = os.open(path, flags, 0o666)
        except OSError as e:
            raise OSError(e.errno, f"cannot create the lock file {path} ({e.strerror or e})") from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise OutputBusyError(f"output folder {folder} is in use by {_describe_holder(path)} (lock file "
                                  f"{path}); wait for that run to end, or choose another -o") from None
        except OSError:  # no flock on this file system: run unlocked, as before
            os.close(fd)
            yield path
            return
        try:
            same = os.stat(path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the previous holder deleted it after we opened it: take the new one
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
    except OSError:
        pass  # the note is for messages only
    try:
        yield path
    finally:
        try:
            os.unlink(path)  # while still holding it (see the module docstring)
        except OSError:
            pass
        os.close(fd)
