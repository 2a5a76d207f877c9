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
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Mapping

import click

from . import api
from .cli_output import count, counts, setup_logging
from .config_names import ConfigNameError, resolve_config
from .dataset import FolderError, check_file_run, check_folders, plan_folder
from .io.kinds import IMAGE_SUFFIXES, UNSUPPORTED_SUFFIXES, VIDEO_SUFFIXES, InputKind, classify_path
from .io.lock import OutputBusyError
from .io.manifest import MANIFEST_NAME
from .io.paths import PathConflict, check_writable_file
from .options import OptionSpec, RunOptions, RunUsageError
from .run import _environment, dataset_job, load_run_config
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


def _usage_error(e: RunUsageError) -> click.UsageError:
    """The run layer's option error as the command's usage error (exit 2)."""
    if e.param_hint is not None:
        return click.BadParameter(e.message, param_hint=e.param_hint)
    return click.UsageError(e.message)


# --- option checks ---------------------------------------------------------------------------

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

    job = dataset_job(params["config_path"], input_dir, output, RunOptions.from_dict(params, ignore_unknown=True),
                      quiet=params["quiet"], verbose=params["verbose"], debug=params["debug"])
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


def _run_option(name: str) -> Callable:
    """The Click option of a run option, from its spec in :class:`dp2.run.RunOptions`."""
    spec: OptionSpec = RunOptions.spec(name)
    default = RunOptions.__dataclass_fields__[name].default
    kwargs: dict[str, Any] = {"help": spec.help, "default": default}
    if spec.metavar is not None:
        kwargs["metavar"] = spec.metavar
    if spec.kind == "flag":
        kwargs["is_flag"] = True
    elif spec.kind == "multiple":
        kwargs["multiple"] = True
    elif spec.kind == "value":
        if spec.type is Path:
            kwargs["type"] = click.Path(path_type=Path, dir_okay=spec.path != "file", file_okay=spec.path != "dir")
        elif spec.type in (int, float) and (spec.min is not None or spec.max is not None):
            kind = click.IntRange if spec.type is int else click.FloatRange
            bounds = {"min": spec.min, "max": spec.max}
            if spec.min_open:
                bounds["min_open"] = True
            if spec.max_open:
                bounds["max_open"] = True
            kwargs["type"] = kind(**bounds)
        elif spec.choices is not None:
            kwargs["type"] = click.Choice(spec.choices)
        elif spec.type is not str:
            kwargs["type"] = spec.type
    return click.option(*spec.decls, name, **kwargs)


def _run_options(*names: str) -> Callable:
    """Declare run options (in this order in ``--help``)."""
    def decorate(command: Callable) -> Callable:
        for name in reversed(names):
            command = _run_option(name)(command)
        return command

    return decorate


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
@_run_options("max_res", "start_time", "end_time", "fps", "dst", "visualize_detection", "multi_modal_truncation",
              "cache", "cache_dir", "amp", "precision", "compile",
              "truncation_value", "track", "temporal_fill", "full_detection_every",
              "seed", "person_generator", "cse_person_generator")
@click.option("--webcam", type=int, is_flag=False, flag_value=0, default=None, metavar="[INDEX]",
              help="Anonymize a webcam live (device INDEX, default 0); q quits.")
@_run_options("resume", "max_retries")
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
@_run_options("opts")
@click.option("--print-config", is_flag=True, help="Print the resolved config and exit.")
@_run_options("keep_metadata", "export_detections", "detections_file", "weights_dir", "no_verify_weights", "device",
              "codec", "crf", "lossless")
@click.option("-q", "--quiet", is_flag=True, help="Errors only: no warnings, no progress bars.")
@click.option("--verbose", is_flag=True, help="Also informational messages (models, weights, per-file details).")
@click.option("--debug", is_flag=True, help="Debug logging, with tracebacks of failed files.")
@click.pass_context
@_exit_on_interrupt
def main(ctx: click.Context, config_path: Path, input_path: Path | None, output_path: Path | None, visualize: bool,
         webcam: int | None, ray_address: str | None, ray_workers: int | None, ray_gpus_per_worker: float | None,
         ray_cpus_per_worker: float, ray_batch_size: int, print_config: bool, quiet: bool, verbose: bool,
         debug: bool, **run_options: Any) -> None:
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
    setup_logging(quiet=quiet, verbose=verbose, debug=debug)
    ctx.with_resource(_sigterm_as_interrupt())
    amp_given = ctx.get_parameter_source("amp") is click.core.ParameterSource.COMMANDLINE
    options = RunOptions.from_dict(run_options)  # Click has checked every value
    vd, export_detections = options.visualize_detection, options.export_detections

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
    try:
        options.check_for(kind)
    except RunUsageError as e:
        raise _usage_error(e) from e
    show_window = not print_config and _check_window(visualize, kind)

    # Every path the run writes is checked against its inputs and its other outputs, first.
    output = None
    plan = None
    try:
        if kind in (InputKind.IMAGE, InputKind.VIDEO, InputKind.FOLDER):
            tag = "detections" if vd else "anonymized"
            output = output_path if output_path is not None else default_output_path(input_path, kind, tag)
            if vd and "anonymi" in output.name.lower():
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
    try:
        cfg = load_run_config(config_path, options)
    except RunUsageError as e:
        raise _usage_error(e) from e
    if print_config:
        from .config import config_to_yaml

        click.echo(config_to_yaml(cfg))
        return
    if ray_address is not None:  # workers check --device and --weights-dir: the driver may lack a GPU
        sys.exit(_run_on_ray(ctx.params, kind, output))
    try:
        pipeline = api.Pipeline.from_config(cfg, options, config_path=config_path, amp_given=amp_given)
    except RunUsageError as e:
        raise _usage_error(e) from e
    except WeightsError as e:
        click.echo(_weights_error(e, cfg, config_path, options.weights_dir, ctx), err=True)
        sys.exit(EXIT_FAILED)
    from .io.webcam import WebcamError

    failures: list[tuple[Path, str]] = []
    export_error = None
    result: Any = None
    try:
        if kind is InputKind.WEBCAM:
            pipeline.anonymize_webcam(webcam)
        elif kind is InputKind.FOLDER:
            def skipped(path: Path, reason: str) -> None:
                click.echo(f"skipped ({reason}): {path}", err=True)

            result = pipeline.anonymize_folder(input_path, output, plan=plan, on_skipped=skipped,
                                               on_failure=_echo_failure, show=show_window)
            failures = result.failures
            if result.already_done:
                click.echo(f"{count(result.already_done, 'file')} already done in an earlier run "
                           f"(see {MANIFEST_NAME}); skipped", err=True)
        else:
            try:
                result = pipeline.anonymize_file(input_path, output, show=show_window)
            except (WeightsError, api.ExportError, RunUsageError):
                raise
            except Exception as e:  # as in a folder run: one line, never a traceback (--debug shows it)
                logger.debug("failure on %s", input_path, exc_info=True)
                failures.append((input_path, _with_path(input_path, str(e) or type(e).__name__)))
    except api.ExportError as e:  # the outputs are written; said after the summary
        export_error, result = str(e), e.result
        failures = getattr(result, "failures", failures)
    except RunUsageError as e:
        raise _usage_error(e) from e
    except FolderError as e:
        raise click.UsageError(str(e)) from e
    except WeightsError as e:
        click.echo(_weights_error(e, cfg, config_path, options.weights_dir, ctx), err=True)
        sys.exit(EXIT_FAILED)
    except (WebcamError, OutputBusyError, OSError) as e:  # OSError: the output folder or its lock file
        click.echo(f"error: {e}", err=True)
        sys.exit(EXIT_FAILED)

    file_failed = kind is not InputKind.FOLDER and bool(failures)
    if result is not None and result.stats.frames and not file_failed:  # only once the output is written
        click.echo(_summary(kind, input_path, output, result, vd), err=True)
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


def _summary(kind: InputKind, input_path: Path, output: Path | None, run: Any,
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
