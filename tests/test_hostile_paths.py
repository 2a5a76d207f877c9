"""Never lose a file: outputs that would replace an input or another output are refused, folder
walks read only regular files, a second run on the same output is locked out, SIGTERM unwinds
like Ctrl-C, and the summaries say only what happened (issue 10)."""
import errno
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from dp2.cli import main
from dp2.io.manifest import MANIFEST_NAME

from helpers import REPO, WORKER_HAZARD_CONFIG, make_image

GAUSSIAN = REPO / "configs/anonymizers/traditional/face/gaussian.py"


def run(*args):
    return CliRunner().invoke(main, [str(GAUSSIAN), *[str(a) for a in args]], catch_exceptions=False)


def write_png(path, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(make_image(40, 50, seed=seed)).save(path)


def snapshot(root):
    """Every entry under ``root``: file bytes, link targets, folders (to assert nothing changed)."""
    state = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                state[rel] = ("link", os.readlink(path))
            elif path.is_dir():
                state[rel] = ("dir",)
            elif path.is_file():
                state[rel] = ("file", path.read_bytes())
            else:
                state[rel] = ("special",)
    return state


@pytest.fixture
def tree(tmp_path):
    """tmp/one.png (a single input) and tmp/in/{a.png, sub/b.png} (a folder input)."""
    write_png(tmp_path / "one.png")
    write_png(tmp_path / "in" / "a.png", seed=1)
    write_png(tmp_path / "in" / "sub" / "b.png", seed=2)
    return tmp_path


def _link(target, name):
    return lambda t: os.symlink(t / target, t / name)


def _hardlink(target, name):
    return lambda t: os.link(t / target, t / name)


def _manifest(make):
    def setup(t):
        (t / "out").mkdir()
        make(t, t / "out" / MANIFEST_NAME)
    return setup


# (id, setup(tmp), args, message): every one is refused before anything is read or written.
REFUSED = [
    ("export-is-input", None, ["-i", "one.png", "-o", "o.png", "--export-detections", "one.png"],
     "--export-detections one.png is the input file"),
    ("export-is-output", None, ["-i", "one.png", "-o", "o.png", "--export-detections", "o.png"], "is the output file"),
    ("export-symlink-to-input", _link("one.png", "l.json"),
     ["-i", "one.png", "-o", "o.png", "--export-detections", "l.json"], "is the input file"),
    ("export-hardlink-of-input", _hardlink("one.png", "h.json"),
     ["-i", "one.png", "-o", "o.png", "--export-detections", "h.json"], "is the input file"),
    ("output-hardlink-of-input", _hardlink("one.png", "h.png"), ["-i", "one.png", "-o", "h.png"],
     "never overwrites an input"),
    ("output-symlink-to-input", _link("one.png", "s.png"), ["-i", "one.png", "-o", "s.png"],
     "never overwrites an input"),
    ("output-through-folder-alias", _link(".", "alias"), ["-i", "one.png", "-o", "alias/one.png"],
     "never overwrites an input"),
    ("folder-export-is-input", None, ["-i", "in", "-o", "out", "--export-detections", "in/sub/b.png"],
     "is an input file of this run"),
    ("folder-export-inside-input", None, ["-i", "in", "-o", "out", "--export-detections", "in/dets.json"],
     "lies inside the input folder"),
    ("folder-export-is-manifest", None, ["-i", "in", "-o", "out", "--export-detections", f"out/{MANIFEST_NAME}"],
     "another output of this run"),
    ("folder-export-is-an-output", None, ["-i", "in", "-o", "out", "--export-detections", "out/sub/b.png"],
     "another output of this run"),
    ("folder-export-is-output-folder", None, ["-i", "in", "-o", "out", "--export-detections", "out"],
     "is the output folder"),
    ("output-is-input", None, ["-i", "in", "-o", "in"], "is the input folder"),
    ("output-alias-of-input", _link("in", "alias"), ["-i", "in", "-o", "alias"], "is the input folder"),
    ("output-is-ancestor", None, ["-i", "in/sub", "-o", "in"], "contains the input folder"),
    ("output-is-ancestor-2", None, ["-i", "in", "-o", "."], "contains the input folder"),
    ("output-existing-subfolder", None, ["-i", "in", "-o", "in/sub"], "no outputs of an earlier run"),
    ("manifest-hardlink-of-input", _manifest(lambda t, m: os.link(t / "in" / "a.png", m)), ["-i", "in", "-o", "out"],
     "is an input file of this run"),
    ("manifest-symlink-to-input", _manifest(lambda t, m: os.symlink(t / "in" / "a.png", m)),
     ["-i", "in", "-o", "out"], "is an input file of this run"),
    ("fifo-input", lambda t: os.mkfifo(t / "f.jpg"), ["-i", "f.jpg", "-o", "o.jpg"], "not a regular file: a FIFO"),
    ("device-input", _link("/dev/zero", "z.jpg"), ["-i", "z.jpg", "-o", "o.jpg"], "a character device"),
    ("empty-folder", lambda t: (t / "empty").mkdir(), ["-i", "empty"], "holds no images"),
    ("non-media-folder", lambda t: (t / "txt").mkdir() or (t / "txt" / "notes.txt").write_text("x"), ["-i", "txt"],
     "holds no images"),
    ("root-default-output", None, ["-i", "/"], "give -o"),
]


@pytest.mark.parametrize("setup, args, message", [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_refused_before_anything_is_written(tree, monkeypatch, setup, args, message):
    monkeypatch.chdir(tree)
    if setup is not None:
        setup(tree)
    before = snapshot(tree)
    result = run(*args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert snapshot(tree) == before, "nothing may be written, changed or deleted"


# --- a new folder inside the input, and resuming into it ----------------------------------------------

def test_new_output_inside_input_is_left_out_and_resumable(tree):
    before = snapshot(tree / "in")
    out = tree / "in" / "anon"
    assert run("-i", tree / "in", "-o", out).exit_code == 0
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == ["a.png", "sub/b.png"]
    again = run("-i", tree / "in", "-o", out)
    assert again.exit_code == 0 and "2 files already done" in again.output
    # An original dropped into the output folder is not an output of the earlier run: refused.
    write_png(out / "stranger.png", seed=5)
    refused = run("-i", tree / "in", "-o", out)
    assert refused.exit_code == 2 and "stranger.png" in refused.output
    after = snapshot(tree / "in")
    assert {k: v for k, v in after.items() if not k.startswith("anon")} == before


# --- the manifest path holding something else ------------------------------------------------------

@pytest.mark.parametrize("make, message", [
    (lambda m: m.mkdir(), "is a folder, not a dp2 manifest"),
    (lambda m: m.write_bytes(b'{"input": "a.png"}\n\xff\xfe\x00garbage'), "is not UTF-8 text"),
    (lambda m: os.symlink(m.parent.parent / "elsewhere.txt", m), "is a symbolic link"),
], ids=["folder", "not-utf8", "symlink-elsewhere"])
def test_manifest_that_is_not_a_manifest(tree, make, message):
    (tree / "elsewhere.txt").write_text("someone's notes")
    out = tree / "out"
    out.mkdir()
    make(out / MANIFEST_NAME)
    before = snapshot(tree)
    result = run("-i", tree / "in", "-o", out)
    assert result.exit_code == 2, result.output
    assert message in result.output and MANIFEST_NAME in result.output
    assert "Traceback" not in result.output
    assert snapshot(tree) == before


# --- folder walks read regular files only ---------------------------------------------------------

def _special_folder(root):
    write_png(root / "a.png")
    os.mkfifo(root / "fifo.jpg")
    os.symlink("/dev/zero", root / "zero.jpg")
    os.symlink("loop.jpg", root / "loop.jpg")
    os.symlink("missing.png", root / "gone.png")
    os.symlink(".", root / "self")  # a folder loop: not followed
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(root / "s.png"))
    return sock


SPECIAL_REASONS = {"fifo.jpg": "not a regular file: a FIFO", "zero.jpg": "a character device (through a symbolic link)",
                   "loop.jpg": "symbolic link loop", "gone.png": "broken symbolic link", "s.png": "a socket"}


def test_folder_skips_fifos_devices_sockets_and_loops_without_hanging(tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    sock = _special_folder(src)
    try:
        # A subprocess with a timeout: a hang (the old behaviour) fails the test instead of blocking it.
        proc = subprocess.run([sys.executable, str(REPO / "anonymize.py"), str(GAUSSIAN), "-i", str(src), "-o", str(out),
                               "-q"], capture_output=True, text=True, timeout=120, cwd=REPO)
    finally:
        sock.close()
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert (out / "a.png").is_file()
    assert "skipped (symbolic link to a folder, not followed)" in proc.stderr
    for name, reason in SPECIAL_REASONS.items():
        line = next(line for line in proc.stderr.splitlines() if line.startswith("failed:") and name in line)
        assert reason in line, line
    records = {r["input"]: r for r in map(json.loads, (out / MANIFEST_NAME).read_text().splitlines())}
    assert records["a.png"]["status"] == "ok"
    assert {k for k, r in records.items() if r["status"] == "failed"} == set(SPECIAL_REASONS)
    assert not (out / "fifo.jpg").exists() and not (out / "zero.jpg").exists()


@pytest.mark.parametrize("make", [lambda p: os.mkfifo(p), lambda p: os.symlink("/dev/zero", p)], ids=["fifo", "zero"])
def test_hashing_never_opens_a_special_file_for_reading(tmp_path, make):
    from dp2.io.manifest import NotARegularFile, file_sha256

    make(tmp_path / "x.jpg")
    start = time.monotonic()
    with pytest.raises(NotARegularFile, match="not a regular file"):
        file_sha256(tmp_path / "x.jpg")
    assert time.monotonic() - start < 5


def test_file_replaced_by_a_fifo_after_the_walk_fails_alone(tree, monkeypatch):
    """The walk saw a regular file; by the time it is hashed it is a FIFO: that file fails, the run goes on."""
    from dp2 import dataset

    real_plan = dataset.plan_folder

    def swap_after_listing(*args, **kwargs):
        plan = real_plan(*args, **kwargs)
        (tree / "in" / "a.png").unlink()
        os.mkfifo(tree / "in" / "a.png")
        return plan

    monkeypatch.setattr("dp2.cli.plan_folder", swap_after_listing)
    result = run("-i", tree / "in", "-o", tree / "out")
    assert result.exit_code == 1
    assert "a.png: not a regular file" in result.output
    assert (tree / "out" / "sub" / "b.png").is_file()


# --- one run per output folder ---------------------------------------------------------------------

HOLD = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o666)
fcntl.flock(fd, fcntl.LOCK_EX)
os.write(fd, b"%d otherhost\\n" % os.getpid())
print("held", flush=True)
time.sleep(120)
"""


@pytest.fixture
def holder():
    """Start a process that holds a flock on a path (another live run), stopped at the end."""
    procs = []

    def start(path):
        proc = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "held"
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


def test_second_run_on_a_locked_output_is_refused_and_deletes_nothing(tree, holder):
    out = tree / "out"
    assert run("-i", tree / "in", "-o", out).exit_code == 0
    assert not (out / ".dp2.lock").exists(), "the lock file goes with its run"
    stale = out / ".a.deadbeef.partial.png"
    stale.write_bytes(b"left by a killed run")
    proc = holder(out / ".dp2.lock")
    before = snapshot(tree)
    result = run("-i", tree / "in", "-o", out, "--no-resume")
    assert result.exit_code == 1, result.output
    assert f"is in use by another dp2 run (pid {proc.pid} on otherhost)" in result.output
    assert snapshot(tree) == before, "the refused run must not write or delete anything"


def test_cleanup_keeps_another_live_runs_temporary(tree, holder):
    out = tree / "out"
    out.mkdir()
    live, stale = out / ".a.livelive.partial.png", out / ".a.deadbeef.partial.png"
    live.write_bytes(b"being written by a live run")
    stale.write_bytes(b"left by a killed run")
    holder(live)
    assert run("-i", tree / "in", "-o", out).exit_code == 0
    assert live.exists(), "a live run's temporary must survive the clean-up"
    assert not stale.exists()


def test_single_file_rerun_removes_stale_temporaries_of_its_output(tree, holder):
    live, stale = tree / ".o.livelive.partial.png", tree / ".o.deadbeef.partial.png"
    other = tree / ".one.deadbeef.partial.png"  # another output's: not ours to judge
    for path in (live, stale, other):
        path.write_bytes(b"x")
    holder(live)
    assert run("-i", tree / "one.png", "-o", tree / "o.png").exit_code == 0
    assert live.exists() and other.exists() and not stale.exists()


def test_output_lock_unit(tmp_path):
    from dp2.io.lock import OutputBusyError, output_lock

    with output_lock(tmp_path) as path:
        assert path.read_text().split()[0] == str(os.getpid())
        with pytest.raises(OutputBusyError, match="in use by another dp2 run"):
            with output_lock(tmp_path):
                pass
    assert not path.exists()
    path.write_text("12345 deadhost\n")  # left by a run killed with -9: nobody holds it
    with output_lock(tmp_path):
        pass


def test_ray_driver_checks_folders_and_lock_before_starting_ray(tree):
    """run_dataset (``--ray``, ``dp2.anonymize_dataset``) plans and locks like the folder mode."""
    from dp2.dataset import DatasetJob, FolderError
    from dp2.distributed.ray_backend import run_dataset
    from dp2.io.lock import OutputBusyError, output_lock

    (tree / "empty").mkdir()
    with pytest.raises(FolderError, match="holds no images"):
        run_dataset(DatasetJob(input_dir=str(tree / "empty"), output_dir=str(tree / "o1"), params={}))
    with pytest.raises(FolderError, match="contains the input folder"):
        run_dataset(DatasetJob(input_dir=str(tree / "in" / "sub"), output_dir=str(tree / "in"), params={}))
    (tree / "o2").mkdir()
    with output_lock(tree / "o2"), pytest.raises(OutputBusyError):
        run_dataset(DatasetJob(input_dir=str(tree / "in"), output_dir=str(tree / "o2"), params={}))
    assert sorted(p.name for p in (tree / "o2").iterdir()) == []


# --- SIGTERM unwinds like Ctrl-C -----------------------------------------------------------------

def test_sigterm_while_writing_leaves_no_output_and_no_temporary(tree, monkeypatch):
    from PIL import Image as PILImage

    real_save = PILImage.Image.save

    def save_then_terminated(self, fp, *args, **kwargs):
        real_save(self, fp, *args, **kwargs)  # the temporary is complete on disk ...
        os.kill(os.getpid(), signal.SIGTERM)  # ... when the run is told to stop
        time.sleep(1)

    monkeypatch.setattr(PILImage.Image, "save", save_then_terminated)
    handler = signal.getsignal(signal.SIGTERM)
    before = snapshot(tree)
    result = run("-i", tree / "one.png", "-o", tree / "o.png")
    assert result.exit_code == 128 + signal.SIGTERM
    assert "terminated (SIGTERM)" in result.output
    assert snapshot(tree) == before, "no output, no temporary"
    assert signal.getsignal(signal.SIGTERM) == handler, "the run's handler is removed with the run"


@pytest.mark.parametrize("stop, exit_code, message", [
    ("SIGTERM", 128 + signal.SIGTERM, "terminated (SIGTERM)"),
    ("Ctrl-C", 130, "interrupted"),
])
def test_stopped_while_loading_models_exits_with_the_signals_code(tree, monkeypatch, stop, exit_code, message):
    def build(cfg):
        if stop == "Ctrl-C":
            raise KeyboardInterrupt
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(1)

    monkeypatch.setattr("dp2.api.build_anonymizer", build)  # imported by the run, not by dp2.cli
    before = snapshot(tree)
    result = run("-i", tree / "one.png", "-o", tree / "o.png")
    assert result.exit_code == exit_code, result.output  # not click's "Aborted!" and exit 1
    assert message in result.output and "Aborted" not in result.output
    assert snapshot(tree) == before


def test_sigterm_stops_a_folder_run_that_resumes(tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    for i in range(6):
        write_png(src / f"img{i}.png", seed=i)
    config = tmp_path / "slow.py"
    config.write_text(WORKER_HAZARD_CONFIG.format(detector="SlowDetector", args="delay_s=0.5"))
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'tests'}{os.pathsep}{REPO}", "DP2_NO_PROGRESS": "1"}
    cmd = [sys.executable, str(REPO / "anonymize.py"), str(config), "-i", str(src), "-o", str(out), "-q"]
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    manifest, deadline = out / MANIFEST_NAME, time.monotonic() + 60
    while not (manifest.exists() and manifest.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.05)  # until the first file is done
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    assert "terminated (SIGTERM)" in stderr and "Traceback" not in stderr
    assert not [p for p in out.iterdir() if ".partial" in p.name or p.name == ".dp2.lock"]
    done = [json.loads(line)["input"] for line in (out / MANIFEST_NAME).read_text().splitlines()]
    assert 1 <= len(done) < 6
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert sorted(p.name for p in out.glob("*.png")) == [f"img{i}.png" for i in range(6)]


# --- summaries, retries, full disks -----------------------------------------------------------------

def _failing_save(errnos):
    """PIL's save raising OSError(errno) for each value of ``errnos`` in turn (None: really save)."""
    from PIL import Image as PILImage

    real_save = PILImage.Image.save
    calls = []

    def save(self, fp, *args, **kwargs):
        calls.append(fp)
        code = errnos[len(calls) - 1] if len(calls) <= len(errnos) else None
        if code is not None:
            raise OSError(code, os.strerror(code))
        return real_save(self, fp, *args, **kwargs)

    return save, calls


def test_full_disk_single_file_prints_no_success_line(tree, monkeypatch):
    from PIL import Image as PILImage

    save, _ = _failing_save([errno.ENOSPC])
    monkeypatch.setattr(PILImage.Image, "save", save)
    before = snapshot(tree)
    result = run("-i", tree / "one.png", "-o", tree / "o.png")
    assert result.exit_code == 1
    assert "anonymized" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "o.png" in errors[0] and "No space left on device" in errors[0]
    assert snapshot(tree) == before


@pytest.mark.parametrize("errnos, exit_code, calls", [
    ([errno.EIO], 0, 3),  # a transient I/O error: retried, then the file is done
    ([errno.ENOSPC], 1, 2),  # a full disk: not retried (each retry would redo the whole file)
    ([errno.EACCES], 1, 2),
], ids=["EIO-retried", "ENOSPC-not-retried", "EACCES-not-retried"])
def test_folder_retries_only_errors_that_may_pass(tree, monkeypatch, errnos, exit_code, calls):
    from PIL import Image as PILImage

    save, seen = _failing_save(errnos)
    monkeypatch.setattr(PILImage.Image, "save", save)
    monkeypatch.setattr("dp2.dataset._RETRY_PAUSE_S", 0.0)
    result = run("-i", tree / "in", "-o", tree / "out")
    assert result.exit_code == exit_code, result.output
    assert len(seen) == calls  # two files; the first one's attempts
    assert not [p for p in (tree / "out").rglob("*") if ".partial" in p.name]


def test_folder_summary_names_each_failure_once(tree):
    (tree / "in" / "broken.jpg").write_bytes(b"not a jpeg")
    os.symlink("loop.png", tree / "in" / "loop.png")
    result = run("-i", tree / "in", "-o", tree / "out")
    assert result.exit_code == 1
    summary = result.output.split("2 files failed:")[1].strip().splitlines()
    assert len(summary) == 2
    for line in summary:
        path = line.strip().split(": ")[0]
        assert line.count(path) == 1, line


def test_default_output_of_dot_and_dotdot(tree, monkeypatch):
    monkeypatch.chdir(tree / "in" / "sub")
    result = run("-i", "..")
    assert result.exit_code == 0, result.output
    assert not (tree / "in" / ".._anonymized").exists() and not (tree / "in" / "sub" / ".._anonymized").exists()
    assert (tree / "in_anonymized" / "sub" / "b.png").is_file()
    monkeypatch.chdir(tree / "in")
    result = run("-i", ".")
    assert result.exit_code == 0, result.output
    assert "already done" in result.output, "-i . is the same folder as -i .. from sub/"


def test_export_to_unwritable_folder_fails_before_the_work(tree, monkeypatch):
    import dp2.io.atomic as atomic

    real = atomic.partial_sibling

    def read_only(path, prefix, suffix):
        if Path(path).parent == tree / "ro":
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        return real(path, prefix, suffix)

    (tree / "ro").mkdir()
    monkeypatch.setattr(atomic, "partial_sibling", read_only)
    before = snapshot(tree)
    result = run("-i", tree / "in", "-o", tree / "out", "--export-detections", tree / "ro" / "dets.json")
    assert result.exit_code == 2
    assert "--export-detections" in result.output and "Read-only file system" in result.output
    assert snapshot(tree) == before, "refused before any file was anonymized"


def test_export_on_a_full_disk_is_one_clear_line(tree, monkeypatch):
    def full(path, payload, **options):  # options: e.g. items_key (one frame per line)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("dp2.io.detection_files.write_json_atomic", full)
    result = run("-i", tree / "one.png", "-o", tree / "o.png", "--export-detections", tree / "dets.json")
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert errors == [f"error: --export-detections {tree / 'dets.json'}: cannot write (No space left on device)"]
    assert (tree / "o.png").is_file() and not (tree / "dets.json").exists()
    assert np.array(Image.open(tree / "one.png")).shape == (40, 50, 3)


def test_unwritable_output_folder_is_one_line(tree, monkeypatch):
    real_open = os.open

    def refuse_lock_file(path, *args, **kwargs):  # a read-only output folder (root ignores permissions)
        if str(path).endswith(".dp2.lock"):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", refuse_lock_file)
    before = snapshot(tree / "in")
    result = run("-i", tree / "in", "-o", tree / "out")
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1].startswith("error: ") and ".dp2.lock" in result.output
    assert "Permission denied" in result.output and "Traceback" not in result.output
    assert snapshot(tree / "in") == before
