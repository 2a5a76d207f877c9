"""Progress bars on stderr that never fight with log lines.

On a terminal: live tqdm bars (a files bar with a frames bar under it). Without one (a log
file, CI, ``nohup``): the same bars as plain lines, at most one every
:data:`LINE_INTERVAL_S` seconds per bar, with no carriage returns or cursor moves.
``DP2_NO_PROGRESS=1`` turns them off. Log records go through :func:`write` (see
:mod:`dp2.cli_output`), which lifts live bars out of the way first.
"""
from __future__ import annotations

import os
import re
import sys
from typing import Any, TextIO

__all__ = ["LINE_INTERVAL_S", "progress_bar", "write"]

#: Seconds between two progress lines of one bar when stderr is not a terminal.
LINE_INTERVAL_S = 5.0
_ESCAPES = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # closed or replaced streams
        return False


def _columns(stream: TextIO) -> int:
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, OSError, ValueError):
        return 0


class _LineStream:
    """What tqdm writes, as whole lines: ``\\r`` redraws and cursor moves become one line each."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        for part in re.split(r"[\r\n]", _ESCAPES.sub("", text)):
            if part.strip():
                self.stream.write(part.rstrip() + "\n")
        return len(text)

    def flush(self) -> None:
        self.stream.flush()


def progress_bar(total: int | None = None, desc: str = "", unit: str = "frame", leave: bool = False,
                 position: int = 0, stream: TextIO | None = None, enabled: bool = True, **extra: Any) -> Any:
    """A tqdm bar on stderr (see the module docstring).

    Args:
        position: 1 puts the bar under the files bar (terminals only).
        enabled: False gives a bar that prints nothing (as ``DP2_NO_PROGRESS=1``).
        **extra: more tqdm arguments (``unit_scale=True`` for bytes).
    """
    from tqdm import tqdm

    stream = stream if stream is not None else sys.stderr
    disable = not enabled or os.environ.get("DP2_NO_PROGRESS") == "1"
    if _is_terminal(stream):
        # A terminal that reports no width (some pseudo-terminals) would get an empty bar.
        sized = {"dynamic_ncols": True} if _columns(stream) > 0 else {"ncols": 80, "nrows": 24}
        return tqdm(total=total, desc=desc, unit=unit, leave=leave, position=position, file=stream,
                    disable=disable, **sized, **extra)
    return tqdm(total=total, desc=desc, unit=unit, leave=False, position=0, file=_LineStream(stream), ncols=80,
                ascii=True, mininterval=LINE_INTERVAL_S, maxinterval=LINE_INTERVAL_S * 4, disable=disable, **extra)


def write(message: str, stream: TextIO | None = None) -> None:
    """Print a line without breaking live bars (they are cleared and redrawn under it)."""
    from tqdm import tqdm

    tqdm.write(message, file=stream if stream is not None else sys.stderr)
