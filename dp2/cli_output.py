"""What the command line prints: log levels, log lines that keep bars intact, and counts in words.

Default: warnings and errors only, plus the CLI's progress bars and one summary per input.
``-V/--verbose`` adds INFO (models, weights, per-file details), ``--debug`` DEBUG and
tracebacks, ``-q/--quiet`` keeps errors only. Every record goes through
:func:`dp2.progress.write`, so a warning lands above a live bar instead of inside it.
"""
from __future__ import annotations

import logging
import sys
from typing import Mapping

__all__ = ["count", "counts", "setup_logging"]

_KIND_WORDS = {"faces": ("face", "faces"), "persons": ("person", "persons"),
               "cse_persons": ("person with CSE", "persons with CSE")}


class _BarSafeHandler(logging.Handler):
    """Writes records with :func:`dp2.progress.write` to the stderr of the moment (click's test
    runner swaps it), so they never land inside a progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from .progress import write

            write(self.format(record), stream=sys.stderr)
        except Exception:  # a logging failure must not end the run
            self.handleError(record)


class _Formatter(logging.Formatter):
    """``warning: text`` for users; with ``--verbose``/``--debug`` the logger name as well."""

    def __init__(self, detailed: bool) -> None:
        super().__init__()
        self.detailed = detailed

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if self.detailed:
            text = f"{record.levelname} {record.name}: {message}"
        else:
            text = message if record.levelno == logging.INFO else f"{record.levelname.lower()}: {message}"
        if record.exc_info and self.detailed:
            text += "\n" + self.formatException(record.exc_info)
        return text


def setup_logging(*, quiet: bool = False, verbose: bool = False, debug: bool = False) -> None:
    """Set the level (see the module docstring) and route records through the bar-safe handler."""
    level = logging.DEBUG if debug else logging.INFO if verbose else logging.ERROR if quiet else logging.WARNING
    handler = _BarSafeHandler()
    handler.setFormatter(_Formatter(detailed=verbose or debug))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    # Third-party libraries stay at WARNING unless --debug (Ray, PIL, onnxruntime are chatty).
    logging.getLogger("dp2").setLevel(level)
    if not debug:
        logging.getLogger().setLevel(max(level, logging.WARNING))


def count(n: int, singular: str, plural: str | None = None) -> str:
    """``count(1, "face") == "1 face"``, ``count(2, "face") == "2 faces"``."""
    return f"{n} {singular if n == 1 else (plural or singular + 's')}"


def counts(detections: Mapping[str, int]) -> str:
    """Detections per kind in words: ``"1 face, 2 persons"``; ``"no detections"`` when empty."""
    parts = []
    for kind, n in detections.items():
        singular, plural = _KIND_WORDS.get(kind, (kind.rstrip("s"), kind))
        parts.append(count(n, singular, plural))
    return ", ".join(parts) if parts else "no detections"
