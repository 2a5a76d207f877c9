"""``dp2-anonymize CONFIG -i INPUT -o OUTPUT``: DeepPrivacy2's command line, made dependable.

The same command is ``python -m dp2``, ``python -m dp2.cli`` and, in a checkout,
``python anonymize.py``. The CLI parses options, wires components, shows progress and sets the
exit code: 0 = everything anonymized, 1 = some inputs failed (listed at the end) or the run could
not start (output folder in use, missing weights, no camera), 2 = usage error, 130 = Ctrl-C,
143 = SIGTERM.

Importing this module is light (no torch, OpenCV, onnxruntime or PyAV): ``--help``,
``--list-configs`` and usage errors answer at once; the models' modules are imported when a run
starts (tests/test_cli_startup.py checks it).
"""
from __future__ import annotations

import contextlib
import functools
import importlib
import logging
import math
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Mapping

import click

from .cli_output import count, counts, setup_logging
from .config_names import ConfigNameError, resolve_config
from .dataset import (FolderError, FolderPlan, anonymize_file as _anonymize_file, anonymize_one,
                      check_file_run, check_folders, failed_record, open_manifest, plan_folder,
                      progress_bar as _progress, remove_partials)
from .io.atomic import remove_stale_partials
from .io.kinds import IMAGE_SUFFIXES, UNSUPPORTED_SUFFIXES, VIDEO_SUFFIXES, InputKind, classify_path
from .io.lock import OutputBusyError, output_lock
from .io.manifest import MANIFEST_NAME
from .io.paths import PathConflict, check_writable_file
from .run import (_DEVICE_SYNTAX, AUTO_FULL_DETECTION_EVERY, RunContext, _environment, _run_environment,
                  _temporal_fill, build_run_context, dataset_job, load_run_config)
from .weights import WeightsError

logger = logging.getLogger("dp2")

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 128 + signal.SIGTERM  # as a shell reports SIGINT / SIGTERM


def default_output_path(input_path: Path, kind: InputKind, tag: str = "anonymized") -> Path:
    """``<stem>_<tag><ext>`` next to a file, ``<dir>_<tag>/`` next to a folder (``--vd``: ``detections``)."""
    if input_path.name in ("", ".."):  # "." or "..": name the output after the folder they stand for
        input_path = Path(os.path.abspath(input_path))
        if not input_path.name:
            raise click.UsageError(f"-i {input_path}: no default output name for the root folder; give -o")
    if kind is InputKind.FOLDER:
        return input_path.with_name(f"{input_path.name}_{tag}")
    return input_path.with_name(f"{input_path.stem}_{tag}{input_path.suffix}")



def _with_path(path: Path, reason: str) -> str:
    """``reason``, prefixed with the file unless it names it already (as the absolute path, on Ray)."""
    return reason if str(path) in reason or str(path.resolve()) in reason else f"{path}: {reason}"


def _echo_failure(path: Path, reason: str) -> None:
    click.echo(f"failed: {_with_path(path, reason)}", err=True)


def anonymize_folder(src: Path, dst: Path, ctx: RunContext, plan: FolderPlan | None = None) -> list[tuple[Path, str]]:
    """Mirror ``src`` into ``dst``; returns the files that failed with their reasons.

    Args:
        plan: the checked listing (:func:`plan_folder`), made here when None.

    Raises:
        click.UsageError: the folders or the manifest cannot be used.
        OutputBusyError: another run holds ``dst``.
    """
    try:
        plan = plan if plan is not None else plan_folder(src, dst)
    except FolderError as e:
        raise click.UsageError(str(e)) from e
    relatives = plan.relatives
    for path, reason in plan.skipped:
        click.echo(f"skipped ({reason}): {path}", err=True)
    dst.mkdir(exist_ok=True)
    failures: list[tuple[Path, str]] = []
    already_done = 0
    with output_lock(dst):  # before reading the manifest: it is ours until the end
        try:
            manifest = open_manifest(dst)
        except FolderError as e:
            raise click.UsageError(str(e)) from e
        for rel, error in plan.failed:
            manifest.append(failed_record(rel, error, ctx.settings_sha256))
            failures.append((src / rel, error))
            _echo_failure(src / rel, error)
        bar = _progress(total=len(relatives), desc="files", unit="file", leave=True)
        try:
            for rel in relatives:
                previous = manifest.records.get(rel) if ctx.resume else None
                record = anonymize_one(ctx, src, dst, rel, previous=previous)
                if record["status"] == "skipped":
                    already_done += 1
                else:
                    manifest.append(record)
                    if record["status"] == "failed":
                        failures.append((src / rel, record["error"]))
                        _echo_failure(src / rel, record["error"])
                    else:
                        _count_done(ctx, rel, record)
                bar.update(1)
        finally:
            bar.close()
        remove_partials(dst, relatives)
    if already_done:
        click.echo(f"{count(already_done, 'file')} already done in an earlier run (see {manifest.path.name}); skipped",
                   err=True)
    return failures


def _count_done(ctx: RunContext, rel: str, record: Mapping[str, Any]) -> None:
    kind = "video" if Path(rel).suffix.lower() in VIDEO_SUFFIXES else "image"
    ctx.files_done[kind] = ctx.files_done.get(kind, 0) + 1
    if kind == "video":
        ctx.files_done["video_frames"] = ctx.files_done.get("video_frames", 0) + int(record.get("frames", 0))


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that a run unwinds as on Ctrl-C (temporaries removed)."""


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """While the run lasts, SIGTERM raises :class:`Terminated`; a second SIGTERM kills at once."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return

    def on_sigterm(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _exit_on_interrupt(command: Callable) -> Callable:
    """Ctrl-C exits 130 and SIGTERM 143, with one line, wherever the run is (loading models,
    listing a folder, writing); click alone would print "Aborted!" and exit 1. Outputs are
    written to temporaries that unwinding removes, so no partial output is left."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except Terminated:
            click.echo("terminated (SIGTERM): partial outputs were removed", err=True)
            sys.exit(EXIT_TERMINATED)
        except KeyboardInterrupt:
            click.echo("interrupted: partial outputs were removed", err=True)
            sys.exit(EXIT_INTERRUPTED)

    return wrapper


def _path_error(e: OSError) -> click.UsageError:
    """A path the OS refuses to look at (name too long, ...) as one usage-error line naming it."""
    return click.UsageError(f"{e.filename}: {e.strerror}" if e.filename is not None and e.strerror else str(e))


def run_webcam(index: int, ctx: RunContext, capture_factory: Callable | None = None) -> None:
    from .io.webcam import WebcamSource, WindowSink
    from .runner import run_frames

    source = WebcamSource(index, max_res=ctx.max_res, capture_factory=capture_factory)
    sink = WindowSink(title="dp2 (q quits)")
    try:
        # Gap filling holds frames back; live, only when asked for (--temporal-fill).
        stats = run_frames(source, ctx.process, sink, source_name=f"webcam:{index}",
                           temporal=ctx.temporal())
    finally:
        source.close()
        sink.close()
    ctx.stats.merge(stats)


# --- option checks ---------------------------------------------------------------------------

def _check_video_options(start_time: float | None, end_time: float | None, fps: float | None,
                         codec: str | None) -> None:
    """``--st/--et/--fps/--codec`` before any work: finite times, a non-empty range, a video encoder."""
    from .io.video import check_video_encoder

    for hint, value in (("--start-time/--st", start_time), ("--end-time/--et", end_time), ("--fps", fps)):
        if value is not None and not math.isfinite(value):
            raise click.BadParameter(f"{value} is not a finite number of seconds" if hint != "--fps"
                                     else f"{value} is not a finite frame rate", param_hint=hint)
    if end_time is not None and end_time <= (start_time or 0.0):
        raise click.UsageError(f"--end-time ({end_time}) must be after --start-time ({start_time or 0.0})")
    if codec is not None:
        try:
            check_video_encoder(codec)
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="--codec") from e


def _check_window(visualize: bool, kind: InputKind | None) -> bool:
    """Whether results can be shown in a window: ``--webcam`` needs one (usage error without);
    ``-v`` without one writes the outputs unshown, with a warning (OpenCV would abort the process)."""
    from .io.webcam import window_unavailable

    if not visualize and kind is not InputKind.WEBCAM:
        return False
    reason = window_unavailable()
    if reason is None:
        return visualize
    if kind is InputKind.WEBCAM:
        raise click.UsageError(f"--webcam shows the anonymized stream in a window, but {reason}")
    logger.warning("-v/--visualize: cannot show a window: %s; writing the output without showing it", reason)
    return False


def _setup_logging(quiet: bool, debug: bool, verbose: bool = False) -> None:
    setup_logging(quiet=quiet, verbose=verbose, debug=debug)


# --- folder runs on Ray ------------------------------------------------------------------------

def _run_on_ray(params: Mapping[str, Any], kind: InputKind | None, output: Path | None) -> int:
    """``--ray``: drive a folder run on a Ray cluster; returns the exit code."""
    if kind is not InputKind.FOLDER:
        raise click.UsageError("--ray distributes the files of a folder; -i must be a folder")
    for flag, used in (("-v/--visualize", params["visualize"]),
                       ("--export-detections", params["export_detections"] is not None)):
        if used:
            raise click.UsageError(f"{flag} does not combine with --ray (workers run in other processes)")
    try:
        importlib.import_module("ray.data")
        from .distributed.ray_backend import WorkerSetupError, run_dataset
    except ImportError as e:
        raise click.UsageError(f"--ray needs Ray on this machine and every node: pip install 'dp2-anonymizer[ray]' ({e})") from e
    try:
        check_folders(params["input_path"], output)
    except FolderError as e:
        raise click.UsageError(str(e)) from e
    input_dir = params["input_path"]

    def on_record(record: Mapping[str, Any]) -> None:
        if record["status"] == "failed":
            _echo_failure(input_dir / record["input"], record.get("error", ""))

    job = dataset_job({**params, "output_path": output})
    try:
        summary = run_dataset(job, address=params["ray_address"], num_workers=params["ray_workers"],
                              num_gpus_per_worker=params["ray_gpus_per_worker"],
                              num_cpus_per_worker=params["ray_cpus_per_worker"],
                              batch_size=params["ray_batch_size"], on_record=on_record)
    except KeyboardInterrupt as e:
        click.echo("interrupted: finished files are in the manifest; run the command again to resume", err=True)
        return EXIT_TERMINATED if isinstance(e, Terminated) else EXIT_INTERRUPTED
    except WorkerSetupError as e:
        click.echo(f"error: {e}", err=True)
        return EXIT_USAGE if e.usage else EXIT_FAILED
    except FolderError as e:
        raise click.UsageError(str(e)) from e
    except (OutputBusyError, OSError) as e:
        click.echo(f"error: {e}", err=True)
        return EXIT_FAILED
    except ConnectionError as e:
        click.echo(f"error: cannot reach the Ray cluster at {params['ray_address']!r}: {e}", err=True)
        return EXIT_FAILED
    for path, reason in summary.not_read:
        click.echo(f"skipped ({reason}): {path}", err=True)
    if summary.skipped:
        click.echo(f"{count(summary.skipped, 'file')} already done in an earlier run (see {MANIFEST_NAME}); skipped",
                   err=True)
    if summary.frames:
        vd = params.get("visualize_detection")
        click.echo(f"{'drew detections on' if vd else 'anonymized'} {count(summary.anonymized, 'file')} "
                   f"({count(summary.frames, 'frame')}): {counts(summary.detections)} -> {output}{_VD_TAIL if vd else ''}",
                   err=True)
    if summary.failures:
        click.echo(f"{count(len(summary.failures), 'file')} failed:", err=True)
        for rel, reason in summary.failures:
            click.echo(f"  {_with_path(input_dir / rel, reason)}", err=True)
        return EXIT_FAILED
    return EXIT_OK


# --- the command -----------------------------------------------------------------------------



class ConfigParam(click.ParamType):
    """CONFIG: a bundled config's name or DeepPrivacy2 path, or a config file (see :mod:`dp2.config_names`)."""

    name = "config"

    def convert(self, value, param, ctx) -> Path:
        if isinstance(value, Path) and value.is_file():
            return value
        try:
            return resolve_config(value)
        except ConfigNameError as e:
            self.fail(str(e), param, ctx)


class _Command(click.Command):
    """The anonymize command, plus ``weights`` as its first word (``dp2-anonymize weights CONFIG``):
    a word, not a click group, so that ``dp2-anonymize CONFIG -i ...`` stays DeepPrivacy2's."""

    def main(self, args=None, prog_name=None, **extra):
        argv = list(sys.argv[1:] if args is None else args)
        if argv and argv[0] == "weights":
            from .cli_weights import weights_command

            detect = getattr(click.utils, "_detect_program_name", lambda: "dp2-anonymize")
            return weights_command.main(argv[1:], prog_name=f"{prog_name or detect()} weights", **extra)
        return super().main(args=args, prog_name=prog_name, **extra)


def _list_configs(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    from .cli_weights import format_config_list

    click.echo(format_config_list())
    ctx.exit(0)


@click.command(cls=_Command, context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.argument("config_path", metavar="CONFIG", type=ConfigParam())
@click.option("--list-configs", is_flag=True, is_eager=True, expose_value=False, callback=_list_configs,
              help="List the bundled configs (what each does, which weights it needs) and exit.")
@click.option("-i", "--input_path", type=click.Path(path_type=Path), default=None,
              help="Image, video or folder (recursive). Ignored with --webcam.")
@click.option("-o", "--output_path", type=click.Path(path_type=Path), default=None,
              help="Output file or folder. Default: <stem>_anonymized<ext> next to a file, "
                   "<dir>_anonymized/ next to a folder. An input is never overwritten.")
@click.option("-v", "--visualize", is_flag=True, help="Show results in a window (image: u re-samples, q quits).")
@click.option("--max-res", type=click.IntRange(min=1), default=None,
              help="Shrink frames so the longer side is at most this (PIL bilinear) before anything else. "
                   "The output keeps the reduced size, as in DeepPrivacy2.")
@click.option("--start-time", "--st", "start_time", type=click.FloatRange(min=0), default=None,
              help="Video: start of the range to write, in seconds from the video's first frame (t = 0 there, "
                   "even when the file's audio or its container clock starts earlier, as players may show). "
                   "The output holds only frames with --st <= t < --et.")
@click.option("--end-time", "--et", "end_time", type=click.FloatRange(min=0), default=None,
              help="Video: end of the range (exclusive), seconds from the first frame; past the end of the "
                   "video the output simply ends with it.")
@click.option("--fps", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Video: output frame rate (frames picked at n/fps). Default: the source's timing.")
@click.option("--detection-score-threshold", "--dst", "dst", type=click.FloatRange(0, 1, max_open=True), default=None,
              help="Detector score threshold in [0, 1) (sets detector.score_threshold; 1 would find nothing). "
                   "Default: the config's value.")
@click.option("--visualize-detection", "--vd", "visualize_detection", is_flag=True,
              help="Draw boxes, scores and landmarks instead of anonymizing: faces stay in the clear "
                   "(default output <stem>_detections<ext>).")
@click.option("--multi-modal-truncation", "--mt", "multi_modal_truncation", is_flag=True,
              help="Truncate latents towards cluster centres (generators with w_centers).")
@click.option("--cache", is_flag=True,
              help="Reuse detections stored per image content and detector settings (JSON, no pickle).")
@click.option("--cache-dir", type=click.Path(path_type=Path), default=None,
              help="Folder for --cache. Default: $DP2_CACHE_DIR or ~/.cache/dp2/detections.")
@click.option("--amp/--no-amp", default=True,
              help="DeepPrivacy2's mixed precision: fp16 generators on CUDA (no effect on CPU). --precision overrides it.")
@click.option("--precision", type=click.Choice(["fp32", "bf16", "fp16"]), default=None,
              help="Generators' precision. fp32 reproduces DeepPrivacy2's pixels; bf16/fp16 (autocast, channels_last) "
                   "are faster and change generated faces by some levels. Default: fp16 on CUDA with --amp, else fp32.")
@click.option("--compile/--no-compile", "compile", default=None,
              help="Run generators compiled by torch.compile (within 1 level of eager; the first use compiles, tens of "
                   "seconds, cached in ~/.cache/dp2/inductor). Default: on for videos, folders and --webcam, off for "
                   "one image. Without a C++ compiler generators run eagerly, with a warning.")
@click.option("-t", "--truncation_value", type=click.FloatRange(0, 1), default=None,
              help="Truncation: 0 = average identity (DeepPrivacy2's default), 1 = most diverse.")
@click.option("--track", is_flag=True, help="Keep one identity per tracked person in videos.")
@click.option("--temporal-fill", type=click.IntRange(min=0), default=None,
              help="Videos: anonymize a face also in gaps of up to N frames where the detector missed it "
                   "(interpolated box; holds N frames back). 0 disables. Default: 5 for videos, 0 for --webcam.")
@click.option("--full-detection-every", type=click.IntRange(min=1), default=None, metavar="N",
              help="Videos: run the detector's full mode (CenterFace: full resolution plus its small-face pass) "
                   "every N frames and its fast mode (one half-resolution pass) in between; faces only the full "
                   "mode finds are carried across by gap filling (N <= --temporal-fill + 1). "
                   f"Default: {AUTO_FULL_DETECTION_EVERY} (at most --temporal-fill + 1) for detectors with a fast "
                   "mode, else 1. 1 = full mode on every frame: slowest, and a tiny face that shows for fewer "
                   "than N frames between full passes cannot be missed this way.")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, help="Seed for the per-detection latent seeds.")
@click.option("--person-generator", default=None, help="Generator config for persons without CSE.")
@click.option("--cse-person-generator", default=None, help="Generator config for persons with CSE.")
@click.option("--webcam", type=int, is_flag=False, flag_value=0, default=None, metavar="[INDEX]",
              help="Anonymize a webcam live (device INDEX, default 0); q quits.")
@click.option("--resume/--no-resume", default=True,
              help="Folders: skip files an earlier run with the same settings already finished "
                   "(dp2_manifest.jsonl in the output folder).")
@click.option("--max-retries", type=click.IntRange(min=0), default=2, metavar="N",
              help="Folders: retry a file up to N times when its failure may pass (I/O, out of memory, "
                   "with --ray a worker process that died); bad input is not retried.")
@click.option("--ray", "ray_address", is_flag=False, flag_value="local", default=None, metavar="[ADDRESS]",
              help="Folders: distribute the files over a Ray cluster (pip install 'dp2-anonymizer[ray]'): 'auto' joins the "
                   "running cluster, host:6379 or ray://host:10001 a given one; without ADDRESS a local "
                   "cluster is started.")
@click.option("--ray-workers", type=click.IntRange(min=1), default=None, metavar="N",
              help="--ray: worker processes, each holding the models once. Default: one per GPU slot when "
                   "workers use GPUs, else one per CPU slot.")
@click.option("--ray-gpus-per-worker", type=click.FloatRange(min=0), default=None, metavar="G",
              help="--ray: GPUs per worker (0.5 puts two workers on a GPU). Default: 1 when the cluster has "
                   "GPUs and --device is not cpu, else 0.")
@click.option("--ray-cpus-per-worker", type=click.FloatRange(min=0, min_open=True), default=1.0, metavar="C",
              help="--ray: CPUs reserved per worker.")
@click.option("--ray-batch-size", type=click.IntRange(min=1), default=8, metavar="N",
              help="--ray: images per task (videos go one per task).")
@click.option("--opt", "opts", multiple=True, metavar="KEY=VALUE",
              help="Override any config value, e.g. --opt detector.score_threshold=0.5 (repeatable).")
@click.option("--print-config", is_flag=True, help="Print the resolved config and exit.")
@click.option("--keep-metadata", is_flag=True,
              help="Keep EXIF (incl. GPS!) in output images, minus what can hold pixels: the MakerNote, the "
                   "thumbnail, embedded images and blobs, and XMP/IPTC/comments (never written). Default: EXIF "
                   "stripped. A valid ICC colour profile is always kept (rebuilt from its declared tags).")
@click.option("--export-detections", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write what is anonymized per image/frame to this JSON file (detections, and in videos "
                   "the boxes filled in detection gaps).")
@click.option("--detections", "detections_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Use face detections from this JSON file (the --export-detections format) instead of a "
                   "detector. The file is checked like an upload; every frame needs an item with its source "
                   "name, frame index and size (never rescaled).")
@click.option("--weights-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder with model weights under their official file names (also $DP2_WEIGHTS_DIR); "
                   "searched before the torch hub cache. Nothing is downloaded if the files are there.")
@click.option("--no-verify-weights", is_flag=True,
              help="Accept local weight files without checking their md5/sha256 (own or test checkpoints).")
@click.option("--device", default=None, help="cpu, cuda, cuda:1, mps for every model. Default: CUDA if available.")
@click.option("--codec", default=None, help="Video codec (e.g. libx264, libx265, libvpx-vp9). Default: by extension.")
@click.option("--crf", type=click.IntRange(0, 63), default=None, help="Video quality (x264/x265 CRF; lower = better).")
@click.option("--lossless", is_flag=True, help="Lossless video (x264 qp 0 / FFV1 / VP9 lossless): for datasets.")
@click.option("-q", "--quiet", is_flag=True, help="Errors only: no warnings, no progress bars.")
@click.option("--verbose", is_flag=True, help="Also informational messages (models, weights, per-file details).")
@click.option("--debug", is_flag=True, help="Debug logging, with tracebacks of failed files.")
@click.pass_context
@_exit_on_interrupt
def main(ctx: click.Context, config_path: Path, input_path: Path | None, output_path: Path | None, visualize: bool,
         max_res: int | None, start_time: float | None, end_time: float | None, fps: float | None,
         dst: float | None, visualize_detection: bool, multi_modal_truncation: bool, cache: bool,
         cache_dir: Path | None, amp: bool, precision: str | None, compile: bool | None, truncation_value: float | None, track: bool,
         temporal_fill: int | None, full_detection_every: int | None, seed: int,
         person_generator: str | None, cse_person_generator: str | None, webcam: int | None, resume: bool,
         opts: tuple[str, ...],
         print_config: bool, keep_metadata: bool, export_detections: Path | None, detections_file: Path | None,
         weights_dir: Path | None, no_verify_weights: bool, device: str | None, codec: str | None, crf: int | None,
         lossless: bool, quiet: bool, verbose: bool, debug: bool, max_retries: int, ray_address: str | None,
         ray_workers: int | None, ray_gpus_per_worker: float | None, ray_cpus_per_worker: float,
         ray_batch_size: int) -> None:
    """Anonymize every person in an image, a folder, a video or a webcam stream.

    CONFIG is a bundled config by name (face, traditional/face/gaussian: see --list-configs),
    DeepPrivacy2's path (configs/anonymizers/face.py, from any folder) or a config file of yours.

    \b
    Examples:
      dp2-anonymize traditional/face/gaussian -i photo.jpg      (offline blur)
      dp2-anonymize traditional/face/pixelation16 -i photos/ -o photos_anon/
      dp2-anonymize traditional/face/maskout_black -i clip.mp4 --st 5 --et 10
      dp2-anonymize traditional/face/gaussian --webcam
      dp2-anonymize face -i photo.jpg                           (realistic faces)
      dp2-anonymize weights face --download                     (fetch a config's weights)

    \b
    Also: python -m dp2 ..., and python anonymize.py ... in a checkout.
    """
    if quiet:  # errors only: progress bars too
        ctx.with_resource(_environment({"DP2_NO_PROGRESS": "1"}))
    _setup_logging(quiet, debug, verbose)
    ctx.with_resource(_sigterm_as_interrupt())
    amp_given = ctx.get_parameter_source("amp") is click.core.ParameterSource.COMMANDLINE

    # Input kind and paths first: cheap checks before loading any model.
    kind: InputKind | None
    if webcam is not None:
        kind = InputKind.WEBCAM
    elif print_config:
        kind = None
    else:
        if input_path is None:
            raise click.UsageError("missing -i/--input_path (or use --webcam)")
        try:
            if not input_path.exists():
                raise click.BadParameter(f"{input_path} does not exist", param_hint="-i/--input_path")
            kind = classify_path(input_path)
            if kind is None and input_path.suffix.lower() in UNSUPPORTED_SUFFIXES:
                raise click.BadParameter(f"{input_path}: {UNSUPPORTED_SUFFIXES[input_path.suffix.lower()]}",
                                         param_hint="-i/--input_path")
        except OSError as e:
            raise _path_error(e) from e
        if kind is None:
            raise click.BadParameter(f"{input_path}: not an image ({', '.join(IMAGE_SUFFIXES)}), "
                                     f"video ({', '.join(VIDEO_SUFFIXES)}) or folder", param_hint="-i/--input_path")
    if device is not None and not _DEVICE_SYNTAX.match(device):
        raise click.BadParameter(f"{device!r}: expected cpu, cuda, cuda:N or mps", param_hint="--device")
    if kind is InputKind.IMAGE and any(v is not None for v in (start_time, end_time, fps)):
        raise click.UsageError("--start-time/--end-time/--fps apply to videos, not to an image")
    _check_video_options(start_time, end_time, fps, codec)
    gap = _temporal_fill(temporal_fill, kind)
    if full_detection_every is not None and full_detection_every > gap + 1:
        raise click.UsageError(f"--full-detection-every {full_detection_every} needs --temporal-fill >= "
                               f"{full_detection_every - 1} to bridge the frames between full passes (now {gap})")
    if detections_file is not None and cache:
        raise click.UsageError("--detections and --cache exclude each other (given detections need no cache)")
    show_window = not print_config and _check_window(visualize, kind)

    # Every path the run writes is checked against its inputs and its other outputs, first.
    output = None
    plan = None
    try:
        if kind in (InputKind.IMAGE, InputKind.VIDEO, InputKind.FOLDER):
            tag = "detections" if visualize_detection else "anonymized"
            output = output_path if output_path is not None else default_output_path(input_path, kind, tag)
            if visualize_detection and "anonymi" in output.name.lower():
                click.echo(f"warning: --vd writes the faces in the clear with boxes drawn on them, but {output} "
                           "is named like an anonymized output", err=True)
            if kind is not InputKind.FOLDER and output.is_dir():
                output = output / input_path.name
            if kind is not InputKind.FOLDER:
                suffixes = IMAGE_SUFFIXES if kind is InputKind.IMAGE else VIDEO_SUFFIXES
                if output.suffix.lower() not in suffixes:
                    raise click.BadParameter(f"{output}: the output suffix must be one of {', '.join(suffixes)}",
                                             param_hint="-o/--output_path")
            parent = output.parent
            if not parent.is_dir():
                raise click.BadParameter(f"folder {parent} does not exist (create it first)",
                                         param_hint="-o/--output_path")
            if not os.access(parent, os.W_OK):
                raise click.BadParameter(f"folder {parent} is not writable", param_hint="-o/--output_path")
        if kind is InputKind.FOLDER and ray_address is None:  # --ray lists the folder in run_dataset
            plan = plan_folder(input_path, output, export=export_detections)
        elif kind in (InputKind.IMAGE, InputKind.VIDEO):
            check_file_run(input_path, output, export=export_detections)
        if export_detections is not None and not print_config:
            check_writable_file(export_detections, "--export-detections")
    except (FolderError, PathConflict) as e:
        raise click.UsageError(str(e)) from e
    except OSError as e:
        raise _path_error(e) from e

    # Config: load, override, print or build.
    cfg = load_run_config(config_path, opts, dst, person_generator, cse_person_generator)
    if print_config:
        from .config import config_to_yaml

        click.echo(config_to_yaml(cfg))
        return
    if ray_address is not None:  # workers check --device and --weights-dir: the driver may lack a GPU
        sys.exit(_run_on_ray(ctx.params, kind, output))
    env = _run_environment(weights_dir, no_verify_weights, device)
    # Detectors load their weights lazily, on the first frame: keep these for the whole run.
    ctx.with_resource(_environment(env))
    try:
        run, export = build_run_context(cfg, ctx.params, kind, amp_given=amp_given)
    except WeightsError as e:
        click.echo(_weights_error(e, cfg, config_path, weights_dir, ctx), err=True)
        sys.exit(EXIT_FAILED)
    run.visualize = show_window and kind is not InputKind.WEBCAM
    from .io.webcam import WebcamError

    failures: list[tuple[Path, str]] = []
    export_error = None
    completed = False
    try:
        if kind is InputKind.WEBCAM:
            run_webcam(webcam, run)
        elif kind is InputKind.FOLDER:
            failures = anonymize_folder(input_path, output, run, plan)
        else:
            remove_stale_partials(output)  # left by a killed run; another live run's are kept
            try:
                _anonymize_file(input_path, output, kind, run, input_path.name)
            except WeightsError:
                raise
            except Exception as e:  # as in a folder run: one line, never a traceback (--debug shows it)
                logger.debug("failure on %s", input_path, exc_info=True)
                failures.append((input_path, _with_path(input_path, str(e) or type(e).__name__)))
        completed = True
    except WeightsError as e:
        click.echo(_weights_error(e, cfg, config_path, weights_dir, ctx), err=True)
        sys.exit(EXIT_FAILED)
    except (WebcamError, OutputBusyError, OSError) as e:  # OSError: the output folder or its lock file
        click.echo(f"error: {e}", err=True)
        sys.exit(EXIT_FAILED)
    finally:
        if export is not None:
            try:
                export.write()
            except OSError as e:
                export_error = f"--export-detections {export.path}: cannot write ({e.strerror or e})"
                if not completed:  # the run is ending here; said after the summary otherwise
                    click.echo(f"error: {export_error}", err=True)

    stats = run.stats
    file_failed = kind is not InputKind.FOLDER and bool(failures)
    if kind is not InputKind.WEBCAM and stats.frames and not file_failed:  # only once the output is written
        click.echo(_summary(kind, input_path, output, run, visualize_detection), err=True)
    if failures:
        if kind is InputKind.FOLDER:
            click.echo(f"{count(len(failures), 'file')} failed:", err=True)
            for path, reason in failures:
                click.echo(f"  {_with_path(path, reason)}", err=True)
        else:
            click.echo(f"error: {failures[0][1]}", err=True)
    if export_error:
        click.echo(f"error: {export_error}", err=True)
    if failures or export_error:
        sys.exit(EXIT_FAILED)


_VD_TAIL = " (--vd: faces are NOT anonymized)"


def _summary(kind: InputKind, input_path: Path, output: Path | None, run: RunContext,
             visualize_detection: bool = False) -> str:
    """One line per input: what was anonymized, counted in words (``1 face``, ``240 frames``);
    with ``--vd``, what had detections drawn on it, saying that its faces are NOT anonymized."""
    stats = run.stats
    found = counts(stats.detections)
    if stats.filled:
        found += f" (incl. {stats.filled} filled in detection gaps)"
    if kind is InputKind.FOLDER:
        images, videos = run.files_done.get("image", 0), run.files_done.get("video", 0)
        parts = [count(images, "image")] if images else []
        if videos:
            parts.append(f"{count(videos, 'video')} with {count(run.files_done.get('video_frames', 0), 'frame')}")
        what = f"{count(images + videos, 'file')} ({', '.join(parts)})"
    elif kind is InputKind.VIDEO or stats.frames > 1:  # a video, or an image's frames or pages
        what = f"{input_path.name} ({count(stats.frames, 'frame')})"
    else:
        what = input_path.name
    verb = "drew detections on" if visualize_detection else "anonymized"
    return (f"{verb} {what}: {found}" + (f" -> {output}" if output is not None else "")
            + (_VD_TAIL if visualize_detection else ""))


def _weights_error(error: WeightsError, cfg, config_path: Path, weights_dir: Path | None, ctx: click.Context) -> str:
    """The missing-weights message: the models, their missing files, and the command to run."""
    from .cli_weights import missing_weights_message

    logger.debug("weights error: %s", error)  # the long form (every folder and URL tried)
    prog = ctx.find_root().info_name or "dp2-anonymize"
    return missing_weights_message(error, cfg, config_path, weights_dir=weights_dir, prog=prog)



if __name__ == "__main__":  # python -m dp2.cli
    main()
