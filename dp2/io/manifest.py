"""A per-output-folder manifest: what was done to which file, so folder runs can resume.

The manifest is JSON lines (``dp2_manifest.jsonl`` in the output folder), one record per
attempt, appended and flushed as each file finishes; the last record of a file wins. A file
counts as done when its last record says ``ok``, its input hash and the run's settings hash
still match, and its output exists, so a re-run after a crash or Ctrl-C redoes exactly the
files that were not finished (outputs are written atomically, so none is half-written).

Record fields: ``input`` (path relative to the input folder), ``status`` (``ok`` | ``failed``),
``input_sha256``, ``settings_sha256``, ``output`` (relative to the output folder),
``detections`` (count per kind), ``frames`` (1 for an image), ``error`` (message, failed only),
``time`` (UTC ISO). One process writes the manifest of a run (on Ray: the driver).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

__all__ = ["MANIFEST_NAME", "ManifestError", "NotARegularFile", "RunManifest", "file_sha256", "file_seed",
           "is_finished"]

logger = logging.getLogger(__name__)

MANIFEST_NAME = "dp2_manifest.jsonl"


class ManifestError(ValueError):
    """The manifest path holds something that is not a dp2 manifest; the message names it."""


class NotARegularFile(OSError):
    """A path to hash is a FIFO, a device, a socket or a folder (reading it could block forever)."""


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    """sha256 of a regular file's bytes.

    Raises:
        NotARegularFile: ``path`` (after symlinks) is no regular file; it is opened without
            blocking and never read.
        OSError: it cannot be read.
    """
    # O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever.
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotARegularFile(f"{path}: not a regular file; only regular files are read")
        h = hashlib.sha256()
        while block := os.read(fd, chunk):
            h.update(block)
    finally:
        os.close(fd)
    return h.hexdigest()


def file_seed(seed: int, relative_path: str) -> int:
    """A latent seed for one file that depends only on the run's seed and the file's relative path.

    >>> file_seed(0, "a/b.jpg") == file_seed(0, "a/b.jpg") != file_seed(1, "a/b.jpg")
    True
    """
    digest = hashlib.sha256(f"{seed}:{relative_path}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def is_finished(record: Mapping[str, Any] | None, input_sha256: str, settings_sha256: str, output: Path) -> bool:
    """Whether a file's last ``record`` says it was done from this input with these settings, and
    its ``output`` is still there."""
    return (record is not None and record.get("status") == "ok" and record.get("input_sha256") == input_sha256
            and record.get("settings_sha256") == settings_sha256 and output.exists())


def _read_manifest(path: Path) -> str | None:
    """The manifest's text, None when there is none yet.

    Raises:
        ManifestError: the path is a folder, a symlink or another non-regular file, cannot be
            read, or is not ASCII/UTF-8 text (dp2 writes ASCII JSON: the file is not a manifest).
    """
    hint = "move it away or choose another -o"
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise ManifestError(f"manifest {path}: cannot read ({e.strerror or e})") from e
    if stat.S_ISLNK(info.st_mode):
        raise ManifestError(f"manifest {path} is a symbolic link; dp2 appends to it and would write through "
                            f"the link; {hint}")
    if not stat.S_ISREG(info.st_mode):
        kind = "a folder" if stat.S_ISDIR(info.st_mode) else "not a regular file"
        raise ManifestError(f"manifest {path} is {kind}, not a dp2 manifest; {hint}")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ManifestError(f"manifest {path}: cannot read ({e.strerror or e})") from e
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ManifestError(f"manifest {path} is not a dp2 manifest (byte {e.start} is not UTF-8 text); "
                            f"{hint}") from None


class RunManifest:
    """Reads and appends ``<output folder>/dp2_manifest.jsonl``.

    Args:
        folder: the output folder (created by the caller).
        settings_sha256: hash of everything besides the input that decides an output
            (resolved config, seed, truncation, ...); None when the records carry it.

    Raises:
        ManifestError: the manifest path holds something else (a folder, a symlink, binary data).
    """

    def __init__(self, folder: Path, settings_sha256: str | None = None) -> None:
        self.path = Path(folder) / MANIFEST_NAME
        self.settings_sha256 = settings_sha256
        self.records: dict[str, dict[str, Any]] = {}
        self._torn_line = False  # a run killed mid-write left a line without its newline
        text = _read_manifest(self.path)
        if text is not None:
            self._torn_line = bool(text) and not text.endswith("\n")
            for n, line in enumerate(text.splitlines(), 1):
                try:
                    record = json.loads(line)
                    self.records[record["input"]] = record
                except (json.JSONDecodeError, KeyError, TypeError):
                    logger.warning("%s line %d: unreadable record ignored (a run killed mid-write?)", self.path, n)

    def is_done(self, relative: str, input_sha256: str, output: Path) -> bool:
        return is_finished(self.records.get(relative), input_sha256, self.settings_sha256, output)

    def append(self, result: Mapping[str, Any]) -> None:
        """Append a record of :func:`dp2.dataset.anonymize_one` (``ok`` or ``failed``)."""
        self.record(result["input"], status=result["status"], input_sha256=result["input_sha256"],
                    output=result["output"], detections=result.get("detections"), frames=result.get("frames"),
                    error=result.get("error"), settings_sha256=result.get("settings_sha256"))

    def record(self, relative: str, *, status: str, input_sha256: str | None, output: str,
               detections: dict[str, int] | None = None, frames: int | None = None,
               error: str | None = None, settings_sha256: str | None = None) -> None:
        record: dict[str, Any] = {"input": relative, "status": status, "input_sha256": input_sha256,
                                  "settings_sha256": settings_sha256 or self.settings_sha256, "output": output,
                                  "detections": detections or {}}
        if frames is not None:
            record["frames"] = frames
        if error is not None:
            record["error"] = error
        record["time"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.records[relative] = record
        # Never through a symlink planted after the manifest was read (see _read_manifest).
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o666)
        with open(fd, "a", encoding="utf-8") as f:
            if self._torn_line:
                f.write("\n")  # keep the torn line apart from this record
                self._torn_line = False
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())
