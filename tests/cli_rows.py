"""Run ``anonymize.py`` command lines, each in its own process, and report how each ended.

Used by tests/test_hostile_options.py. A fresh interpreter per command line would spend seconds
importing torch each time, so this runner imports dp2 once and forks one child per row: a
segfault or an abort (OpenCV's Qt backend without a display) kills only that row's child, and
its signal is reported (``returncode`` -11, -6), as ``subprocess`` would.

Protocol: a JSON list of rows on stdin, each ``{"args": [...], "cwd": str, "env": {name: value or
None}, "patch": [name, argument] or None, "timeout": seconds}``; a JSON list of ``{"returncode",
"stdout", "stderr"}`` on stdout.
"""
from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import tempfile
import time


def _writer_fails_for(substring: str) -> None:
    """Make the video writer fail to open for outputs whose path contains ``substring``, as it
    does for a read-only output folder (root can write there, so tests cannot chmod their way)."""
    from dp2.io import video

    original = video.VideoWriter.__init__

    def failing(self, path, **kwargs):
        if substring in str(path):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        original(self, path, **kwargs)

    video.VideoWriter.__init__ = failing


PATCHES = {"writer_fails_for": _writer_fails_for}


def _child(row: dict, out_fd: int, err_fd: int) -> None:
    """Runs in the forked child; never returns (the interpreter exits normally, so crashes at
    shutdown, e.g. from threads left running, are seen too)."""
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(out_fd, 1)
    os.dup2(err_fd, 2)
    os.chdir(row["cwd"])
    for name, value in row.get("env", {}).items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    if row.get("patch"):
        name, argument = row["patch"]
        PATCHES[name](argument)
    from dp2.cli import main

    sys.argv = ["anonymize.py", *row["args"]]
    main(args=row["args"], prog_name="anonymize.py")  # raises SystemExit; other errors print a traceback


def _run_forked(row: dict) -> dict:
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            _child(row, out.fileno(), err.fileno())
            raise SystemExit(0)
        deadline = time.monotonic() + row.get("timeout", 120)
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
                status = None
                break
            time.sleep(0.02)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    if status is None:
        return {"returncode": None, "stdout": stdout, "stderr": stderr + "\n[timed out]"}
    code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    return {"returncode": code, "stdout": stdout, "stderr": stderr}


def _run_subprocess(row: dict) -> dict:
    """Where fork is missing: a fresh interpreter per row (slower, same results)."""
    if row.get("patch"):
        name, argument = row["patch"]
        prelude = f"import cli_rows; cli_rows.PATCHES[{name!r}]({argument!r}); "
    else:
        prelude = ""
    code = prelude + "import sys; from dp2.cli import main; main(args=sys.argv[1:], prog_name='anonymize.py')"
    env = dict(os.environ)
    for name, value in row.get("env", {}).items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(os.path.abspath(__file__)), *sys.path])
    try:
        done = subprocess.run([sys.executable, "-c", code, *row["args"]], cwd=row["cwd"], env=env,
                              capture_output=True, text=True, timeout=row.get("timeout", 120),
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        return {"returncode": None, "stdout": e.stdout or "", "stderr": (e.stderr or "") + "\n[timed out]"}
    return {"returncode": done.returncode, "stdout": done.stdout, "stderr": done.stderr}


def run_rows(rows: list[dict]) -> list[dict]:
    run = _run_forked if hasattr(os, "fork") else _run_subprocess
    return [run(row) for row in rows]


if __name__ == "__main__":
    import dp2.cli  # noqa: F401  (imported once, before forking)

    rows = json.load(sys.stdin)
    json.dump(run_rows(rows), sys.stdout)
