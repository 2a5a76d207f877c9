"""What a run may read and where it may write, decided before any file is touched.

Reading: only regular files are read. A folder walk lists FIFOs, devices, sockets and symlinks
to them, broken symlinks and symlink loops with a reason instead of opening them (opening a FIFO
blocks forever, reading ``/dev/zero`` never ends); symlinks to folders are not followed.

Writing: no output may replace an input or another output of the same run. Paths are compared
after resolving symlinks (``os.path.realpath``) and by file identity (device and inode), so an
alias through a symlinked folder or a hard link is caught too.
"""
from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["FileIdentity", "FolderScan", "PathConflict", "check_folder_output", "check_writable_file",
           "file_identity", "is_inside", "not_regular_reason", "same_path", "scan_folder"]

FileIdentity = tuple[int, int]  # (st_dev, st_ino)


class PathConflict(ValueError):
    """An output path that would overwrite or mix with an input or another output."""


def _real(path: Path) -> str:
    return os.path.realpath(os.path.abspath(path))


def file_identity(path: Path) -> FileIdentity | None:
    """(device, inode) of the file ``path`` names (symlinks followed), None if it does not exist."""
    try:
        info = os.stat(path)
    except (OSError, ValueError):
        return None
    return info.st_dev, info.st_ino


def same_path(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` name the same file: same resolved path, or the same existing file
    (symlinks and hard links included)."""
    if _real(a) == _real(b):
        return True
    ia = file_identity(a)
    return ia is not None and ia == file_identity(b)


def is_inside(path: Path, root: Path) -> bool:
    """Whether ``path`` is ``root`` or lies under it, symlinks resolved (``path`` may not exist)."""
    real, top = _real(path), _real(root)
    return real == top or real.startswith(top.rstrip(os.sep) + os.sep)


_TYPE_NAMES = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
               (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder"))


def _type_name(mode: int) -> str:
    return next((name for test, name in _TYPE_NAMES if test(mode)), "not a regular file")


def not_regular_reason(path: Path) -> str | None:
    """Why ``path`` is not a readable regular file (after symlinks), or None when it is one."""
    try:
        info = os.stat(path)
    except OSError as e:
        return _stat_error_reason(path, e)
    if stat.S_ISREG(info.st_mode):
        return None
    via = " (through a symbolic link)" if os.path.islink(path) else ""
    return f"not a regular file: {_type_name(info.st_mode)}{via}; only regular files are read"


def _stat_error_reason(path: Path, error: OSError) -> str:
    if error.errno == errno.ELOOP:
        return "symbolic link loop"
    if error.errno == errno.ENOENT and os.path.islink(path):
        return f"broken symbolic link (its target {os.readlink(path)} does not exist)"
    return f"cannot read ({error.strerror or error})"


@dataclass
class FolderScan:
    """What a folder walk found (paths under the walked root, sorted).

    Attributes:
        media: regular image and video files (directly or through a symlink), to anonymize.
        skipped: other entries with the reason, never opened (not media, symlinked folders...).
        failed: entries with a media suffix that cannot be read safely (FIFOs, devices, sockets,
            broken links, symlink loops) and folders that cannot be listed, with the reason.
        identities: (device, inode) of every media file, to recognize an output that is a hard
            link or symlink to an input.
    """

    media: list[Path] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    identities: set[FileIdentity] = field(default_factory=set)


def scan_folder(root: Path, is_media, exclude: Path | None = None) -> FolderScan:
    """Walk ``root`` (recursively, hidden entries left out, symlinked folders not followed).

    Args:
        root: the folder.
        is_media: ``is_media(path) -> bool`` by name (suffix).
        exclude: a folder to leave out (the output folder when it lies inside ``root``).
    """
    scan = FolderScan()
    excluded = file_identity(exclude) if exclude is not None else None
    pending = [Path(root)]
    while pending:
        folder = pending.pop()
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as e:
            scan.failed.append((folder, f"cannot list folder ({e.strerror or e})"))
            continue
        subfolders = []
        for entry in entries:
            if entry.name.startswith("."):
                continue  # hidden files and our own .partial temporaries
            path = folder / entry.name
            if entry.is_symlink():
                _classify_link(path, is_media, scan)
                continue
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError as e:
                (scan.failed if is_media(path) else scan.skipped).append((path, _stat_error_reason(path, e)))
                continue
            if stat.S_ISDIR(info.st_mode):
                if excluded is None or (info.st_dev, info.st_ino) != excluded:
                    subfolders.append(path)
            else:
                _classify(path, info, is_media, scan, via="")
        pending.extend(reversed(subfolders))
    key = lambda item: (item[0].parts if isinstance(item, tuple) else item.parts)  # noqa: E731
    scan.media.sort(key=key)
    scan.skipped.sort(key=key)
    scan.failed.sort(key=key)
    return scan


def _classify_link(path: Path, is_media, scan: FolderScan) -> None:
    try:
        info = os.stat(path)
    except OSError as e:
        reason = _stat_error_reason(path, e)
        loop = e.errno == errno.ELOOP
        (scan.failed if loop or is_media(path) else scan.skipped).append((path, reason))
        return
    if stat.S_ISDIR(info.st_mode):
        scan.skipped.append((path, "symbolic link to a folder, not followed"))
        return
    _classify(path, info, is_media, scan, via=" (through a symbolic link)")


def _classify(path: Path, info: os.stat_result, is_media, scan: FolderScan, via: str) -> None:
    media = is_media(path)
    if stat.S_ISREG(info.st_mode):
        if media:
            scan.media.append(path)
            scan.identities.add((info.st_dev, info.st_ino))
        else:
            scan.skipped.append((path, "not an image or video"))
        return
    reason = f"not a regular file: {_type_name(info.st_mode)}{via}; only regular files are read"
    (scan.failed if media else scan.skipped).append((path, reason))


# --- where outputs may go ---------------------------------------------------------------------

def check_folder_output(input_dir: Path, output_dir: Path) -> None:
    """Raise :class:`PathConflict` when ``output_dir`` cannot receive the mirror of ``input_dir``.

    Refused: a missing input folder, an output that is a file, the input itself, and a folder
    holding the input (the outputs would land among files that are not part of the run). An
    output folder inside the input is left out of the walk; whether an existing one may be used
    is the caller's decision (:func:`dp2.dataset.check_folders`).
    """
    if not input_dir.is_dir():
        raise PathConflict(f"input {input_dir} is not a folder")
    if output_dir.exists() and not output_dir.is_dir():
        raise PathConflict(f"output {output_dir} exists and is not a folder")
    if same_path(input_dir, output_dir):
        raise PathConflict(f"output folder {output_dir} is the input folder; choose another -o")
    if is_inside(input_dir, output_dir):
        raise PathConflict(f"output folder {output_dir} contains the input folder {input_dir}: the outputs would "
                           "be written among files that are not part of this run; choose a folder outside it")


def check_writable_file(path: Path, what: str) -> None:
    """Raise :class:`PathConflict` unless a new file can be created at ``path`` (probed by
    creating and deleting a temporary next to it); ``what`` names the option in the message."""
    from .atomic import partial_sibling

    folder = path.parent
    if not folder.is_dir():
        raise PathConflict(f"{what} {path}: folder {folder} does not exist")
    if path.is_dir():
        raise PathConflict(f"{what} {path} is a folder")
    try:
        fd, tmp = partial_sibling(path, prefix=f".{path.name}.", suffix=".probe")
    except OSError as e:
        raise PathConflict(f"{what} {path}: cannot write to {folder} ({e.strerror or e})") from e
    os.close(fd)
    tmp.unlink(missing_ok=True)
