"""The run layer: a run built from a config plus typed options (:class:`RunOptions`), below the CLI.

Layers, each importing only those before it: io -> detection -> stages -> anonymizer -> runner
(the frame loop) -> **run** (this module: config + options -> a built run; files, folders and
streams) -> :mod:`dp2.api` (the Python API) -> :mod:`dp2.cli` (options, printing, exit codes),
with :mod:`dp2.dataset` / :mod:`dp2.distributed` (Ray workers) on the run layer as well. The
command, the API and every Ray worker build their run here, so all of them get the same pipeline,
per-file seeds and settings hash.

A run is built in two steps: :func:`build_run_parts` loads what is costly and shared by every
input (the models, the ``--detections`` file, the ``--cache`` store), :func:`make_run_context`
makes the cheap per-run state around it (latent seeds, export collector, per-kind defaults).
:func:`run_file`, :func:`run_folder` and :func:`stream_frames` then run an input through it.

Options the config cannot honour raise :class:`RunUsageError` naming the option as the command
spells it; the CLI turns it into its usage error (exit 2). Importing this module needs neither
click nor torch: the models' modules are imported inside the functions that use them.
"""
from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Mapping, Sequence

from .cli_output import setup_logging
from .config_names import ConfigNameError, resolve_config
from .dataset import DatasetJob
from .io.kinds import InputKind
from .io.manifest import file_sha256
from .options import (AUTO_FULL_DETECTION_EVERY, DEFAULT_TEMPORAL_FILL, DEVICE_SYNTAX, RunOptions, RunUsageError,
                      temporal_fill_for)
from .weights import VERIFY_ENV_VAR, VERIFY_SOURCE_ENV_VAR, WEIGHTS_ENV_VAR

if TYPE_CHECKING:  # the heavy modules are imported inside the functions that run models
    from omegaconf import DictConfig

    from .anonymizer import Anonymizer
    from .dataset import FolderPlan
    from .io.detection_files import DetectionCache, DetectionExport, GivenDetections
    from .runner import FrameProcessor, LoopStats, TemporalStage
    from .structures import Detections, Frame

__all__ = ["AUTO_FULL_DETECTION_EVERY", "DEFAULT_TEMPORAL_FILL", "FolderResult", "RunContext", "RunOptions",
           "RunParts", "RunUsageError", "build_model", "build_run_context", "build_run_parts", "dataset_job",
           "load_anonymizer_config", "load_run_config", "make_run_context", "run_environment", "run_file",
           "run_folder", "run_webcam", "stream_frames", "worker_context"]

logger = logging.getLogger("dp2")

_DEVICE_SYNTAX = DEVICE_SYNTAX  # older name
_temporal_fill = temporal_fill_for  # older name
# Inputs long enough to pay for compiling the generators (--compile's default).
_LONG_RUNS = (InputKind.VIDEO, InputKind.FOLDER, InputKind.WEBCAM)


@dataclass
class RunContext:
    """Everything a single input needs besides the input itself."""

    process: FrameProcessor
    max_res: int | None
    keep_metadata: bool
    visualize: bool
    start_time: float | None
    end_time: float | None
    fps: float | None
    codec: str | None
    crf: int | None
    lossless: bool = False
    #: Folder runs: files finished per kind ("image", "video") and "video_frames", for the summary.
    files_done: dict[str, int] = field(default_factory=dict)
    temporal_fill: int = DEFAULT_TEMPORAL_FILL  # resolved for the input kind (see temporal_fill_for)
    track: bool = False
    full_detection_every: int = 1
    seed: int = 0
    resume: bool = True
    max_retries: int = 0
    settings_sha256: str = ""
    stats: LoopStats = field(default_factory=lambda: _new_stats())

    def temporal(self) -> TemporalStage:
        """Fresh tracking state for one stream (a video or the webcam)."""
        from .runner import TemporalStage

        return TemporalStage(next_seed=self.process.next_seed, max_gap=self.temporal_fill, track_seeds=self.track,
                             full_detection_every=self.full_detection_every)


def _new_stats() -> LoopStats:
    from .runner import LoopStats

    return LoopStats()


# --- config ----------------------------------------------------------------------------------

def load_anonymizer_config(config_path: str | Path, overrides: Sequence[str] = ()) -> DictConfig:
    """Load a config, apply ``key=value`` overrides, and check it defines ``anonymizer``.

    Args:
        config_path: a config file, or a bundled config by name (``"face"``,
            ``"traditional/face/gaussian"``, DeepPrivacy2's ``"configs/anonymizers/face.py"``;
            see :func:`dp2.config_names.resolve_config`).

    Raises:
        ConfigError: unknown name, or a broken config.
    """
    from .config import ConfigError, apply_overrides, load_config

    try:
        config_path = resolve_config(config_path)
    except ConfigNameError as e:
        raise ConfigError(str(e)) from e
    cfg = load_config(config_path)
    if "anonymizer" not in cfg:
        raise ConfigError(f"{config_path}: defines no 'anonymizer' (expected anonymizer = LazyCall(Anonymizer)(...))")
    return apply_overrides(cfg, overrides)


def build_model(cfg: DictConfig) -> Anonymizer:
    """The :class:`~dp2.anonymizer.Anonymizer` of a loaded config (detector and generators).

    Raises:
        ConfigError: the config builds something else, or fails to build.
    """
    from .anonymizer import Anonymizer
    from .config import ConfigError, instantiate

    anonymizer = instantiate(cfg.anonymizer, key_path="anonymizer")
    if not isinstance(anonymizer, Anonymizer):
        raise ConfigError(f"'anonymizer' built a {type(anonymizer).__name__}, expected dp2.anonymizer.Anonymizer")
    return anonymizer


def _person_overrides(cfg, person_generator: str | None, cse_person_generator: str | None) -> None:
    """``--person-generator`` / ``--cse-person-generator``: swap a body stage's generator for the
    ``generator`` node of another config file (e.g. configs/fdh/styleganL_nocse.py)."""
    from .config import ConfigError, load_config

    for flag, value, key in (("--person-generator", person_generator, "person"),
                             ("--cse-person-generator", cse_person_generator, "cse_person")):
        if value is None:
            continue
        stage = cfg.anonymizer.get(key)
        if stage is None or "generator" not in stage:
            raise RunUsageError(f"{flag}: this config has no {key.replace('_', ' ')} stage to replace the generator of")
        try:
            other = load_config(resolve_config(value))
        except (ConfigError, ConfigNameError) as e:
            raise RunUsageError(str(e), flag) from e
        if "generator" not in other:
            raise RunUsageError(f"{value} defines no 'generator'", flag)
        stage.generator = other.generator


def load_run_config(config_path: str | Path, options: RunOptions = RunOptions()) -> DictConfig:
    """The run's config: the file, ``--opt`` overrides, ``--dst`` and the person generator options.

    Raises:
        RunUsageError: a broken config, bad overrides, an option the config has no place for.
    """
    from .config import ConfigError, apply_overrides

    try:
        cfg = load_anonymizer_config(config_path)
        if options.dst is not None:
            if "detector" not in cfg:
                raise ConfigError(f"--dst: {Path(config_path).name} has no top-level 'detector' "
                                  "to set the threshold of")
            cfg.detector.score_threshold = options.dst  # added when the config relies on the default
        apply_overrides(cfg, list(options.opts))
    except ConfigError as e:
        raise RunUsageError(str(e)) from e
    _person_overrides(cfg, options.person_generator, options.cse_person_generator)
    return cfg


# --- environment (weights folder, device) -----------------------------------------------------

@contextlib.contextmanager
def _environment(values: dict[str, str]):
    """Set environment variables for the run (the weights lookup reads them), then restore them."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run_environment(options: RunOptions) -> dict[str, str]:
    """Environment variables for the run: the weights lookup and every model's device read them.

    Raises:
        RunUsageError: ``weights_dir`` is no folder, ``device`` is unknown or not available.
    """
    env = {}
    if options.weights_dir is not None:
        if not options.weights_dir.is_dir():
            raise RunUsageError(f"{options.weights_dir} is not a folder", "--weights-dir")
        env[WEIGHTS_ENV_VAR] = str(options.weights_dir)
    if options.no_verify_weights:
        env[VERIFY_ENV_VAR] = "0"
        env[VERIFY_SOURCE_ENV_VAR] = "--no-verify-weights"  # so the warning names the flag used
    device = options.device
    if device is not None:
        if not DEVICE_SYNTAX.match(device):
            raise RunUsageError(f"{device!r}: expected cpu, cuda, cuda:N or mps", "--device")
        from .detection.base import DEVICE_ENV_VAR, resolve_device

        try:
            resolve_device(device)
        except (RuntimeError, ValueError) as e:
            raise RunUsageError(str(e), "--device") from e
        env[DEVICE_ENV_VAR] = device  # every model of the run: detectors and generators
    return env


def _run_environment(weights_dir: Path | None, no_verify_weights: bool, device: str | None) -> dict[str, str]:
    return run_environment(RunOptions(weights_dir=weights_dir, no_verify_weights=no_verify_weights, device=device))


# --- building a run --------------------------------------------------------------------------

def _check_capabilities(anonymizer: Anonymizer, config_path: Path, options: RunOptions, *, amp_given: bool,
                        kind: InputKind | None, warn: bool = True) -> None:
    name = Path(config_path).name
    truncation, mt = options.truncation_value, options.multi_modal_truncation
    if not anonymizer.uses_latent:
        for flag, used in (("-t/--truncation_value", truncation is not None), ("--multi-modal-truncation/--mt", mt),
                           ("--amp/--no-amp", amp_given)):
            if used:
                raise RunUsageError(f"{flag} only affects generative models; {name} uses classic filters only")
    elif mt and not anonymizer.supports_multi_modal_truncation:
        raise RunUsageError(f"--mt needs a generator with cluster centres (w_centers); {name} has none")
    if options.track:
        if not anonymizer.uses_latent:
            raise RunUsageError(f"--track keeps one generated identity per person; {name} uses classic filters, "
                                "whose result does not depend on identity")
        if not warn:
            return
        if kind is InputKind.IMAGE:
            logger.warning("--track has no effect on a single image")
        elif not truncation and not mt:
            logger.warning("--track has no visible effect with -t 0: every identity is the average face "
                           "(DeepPrivacy2 issue #14); use -t > 0 or --mt")


@dataclass
class RunParts:
    """What a run loads once and every input shares: the config, the models, the given detections
    (``--detections``) and the detection cache (``--cache``). Made by :func:`build_run_parts`."""

    cfg: Any
    config_path: Path
    anonymizer: Anonymizer
    given: GivenDetections | None = None
    cache: DetectionCache | None = None


def build_run_parts(cfg, options: RunOptions, *, config_path: str | Path,
                    build: Callable[[Any], Anonymizer] | None = None, amp_given: bool = False) -> RunParts:
    """Load the models and the other shared parts of a run.

    Args:
        cfg: the run's config (:func:`load_run_config`).
        config_path: its file (named in messages).
        build: builds the model from ``cfg`` (default :func:`build_model`).

    Raises:
        RunUsageError: options this config cannot honour, a bad ``--detections`` file.
        WeightsError: missing weights.
    """
    from .config import ConfigError, config_to_yaml
    from .io.detection_files import DetectionCache, GivenDetections

    config_path = Path(config_path)
    try:  # the whole file is checked before any model is built
        given = GivenDetections(options.detections_file) if options.detections_file is not None else None
    except ValueError as e:
        raise RunUsageError(str(e)) from e
    try:
        anonymizer = (build or build_model)(cfg)
    except ConfigError as e:
        raise RunUsageError(str(e)) from e
    if not anonymizer.needs_torch_threads and anonymizer.device.type == "cpu":
        # Only small tensors go through torch (decoding, boxes): one thread avoids the pool's
        # overhead, which made CenterFace + blur ~30% slower per image on a busy 2-core CPU.
        import torch

        torch.set_num_threads(1)
    _check_capabilities(anonymizer, config_path, options, amp_given=amp_given, kind=None, warn=False)
    logger.info("config %s, generators %s", config_path,
                {k: type(g).__name__ for k, g in anonymizer.generators.items()})
    if options.detections_file is not None:
        bodies = [k for k in anonymizer.stages if k != "faces"]
        if bodies:
            raise RunUsageError(f"--detections holds face boxes only, and {config_path.name} also "
                                f"anonymizes {' and '.join(bodies)}, which need its detector (person masks are "
                                "not stored in detection files); use a face config or drop --detections")
    store = None
    if options.cache:
        root = options.cache_dir or Path(os.environ.get("DP2_CACHE_DIR", Path.home() / ".cache" / "dp2" / "detections"))
        detector_node = cfg.anonymizer.get("detector")
        settings = config_to_yaml(detector_node, resolve=True) if detector_node is not None else ""
        try:
            store = DetectionCache(root, settings)
        except OSError as e:
            raise RunUsageError(f"cannot use {root} as the cache folder ({e.strerror or e})", "--cache-dir") from e
    return RunParts(cfg=cfg, config_path=config_path, anonymizer=anonymizer, given=given, cache=store)


def make_run_context(parts: RunParts, options: RunOptions, kind: InputKind | None, *,
                     amp_given: bool = False) -> tuple[RunContext, DetectionExport | None]:
    """A fresh run around built parts: latent seeds from ``options.seed``, new stats, an export
    collector, and the defaults that depend on the input kind (gap filling, detection schedule).

    Returns:
        The run's context and the ``--export-detections`` collector (or None).

    Raises:
        RunUsageError: options this config or input kind cannot honour.
    """
    from .anonymizer import SynthesisOptions
    from .generation.latents import LatentSampler
    from .io.detection_files import DetectionExport
    from .runner import FrameProcessor

    p = options
    anonymizer = parts.anonymizer
    gap = temporal_fill_for(p.temporal_fill, kind)
    every = p.full_detection_every
    if every is None:
        has_fast_mode = callable(getattr(anonymizer.detector, "detect_fast", None))
        every = min(AUTO_FULL_DETECTION_EVERY, gap + 1) if has_fast_mode else 1
    elif every > gap + 1:
        raise RunUsageError(f"--full-detection-every {every} needs --temporal-fill >= "
                            f"{every - 1} to bridge the frames between full passes (now {gap})")
    _check_capabilities(anonymizer, parts.config_path, p, amp_given=amp_given, kind=kind)
    try:
        export = DetectionExport(p.export_detections) if p.export_detections is not None else None
    except ValueError as e:
        raise RunUsageError(str(e)) from e
    sampler = LatentSampler(p.seed)
    compile_generators = p.compile if p.compile is not None else kind in _LONG_RUNS
    synthesis = SynthesisOptions(truncation_value=p.truncation_value or 0.0,
                                 multi_modal_truncation=p.multi_modal_truncation, amp=p.amp, precision=p.precision,
                                 compile=bool(compile_generators) and anonymizer.uses_latent,
                                 compile_in_background=kind is InputKind.WEBCAM)
    process = FrameProcessor(anonymizer, next_seed=sampler.next_seed, options=synthesis,
                             visualize_detections=p.visualize_detection, cache=parts.cache, given=parts.given,
                             export=export)
    digest = _settings_digest(parts.cfg, seed=p.seed, t=p.truncation_value, mt=p.multi_modal_truncation,
                              max_res=p.max_res, st=p.start_time, et=p.end_time, fps=p.fps, codec=p.codec, crf=p.crf,
                              lossless=p.lossless, temporal_fill=p.temporal_fill, track=p.track,
                              vd=p.visualize_detection, full_detection_every=every, keep_metadata=p.keep_metadata,
                              detections=p.detections_file, **_precision_setting(p.precision, p.amp, anonymizer))
    run = RunContext(process=process, max_res=p.max_res, keep_metadata=p.keep_metadata, visualize=False,
                     start_time=p.start_time, end_time=p.end_time, fps=p.fps, codec=p.codec, crf=p.crf,
                     lossless=p.lossless, temporal_fill=gap, track=p.track, seed=p.seed, resume=p.resume,
                     full_detection_every=every, max_retries=p.max_retries, settings_sha256=digest)
    return run, export


def build_run_context(cfg, options: RunOptions, kind: InputKind | None, *, config_path: str | Path,
                      amp_given: bool = False) -> tuple[RunContext, DetectionExport | None]:
    """:func:`build_run_parts` and :func:`make_run_context` in one (a run with one input)."""
    parts = build_run_parts(cfg, options, config_path=config_path, amp_given=amp_given)
    return make_run_context(parts, options, kind, amp_given=amp_given)


def _precision_setting(precision: str | None, amp: bool, anonymizer: Anonymizer) -> dict[str, str]:
    """``--precision`` for the settings hash when it changes the pixels from the default (so runs
    made before the option keep their hash)."""
    from .generation.compile import resolve_precision

    chosen = resolve_precision(precision, amp=amp, device=anonymizer.device)
    return {} if chosen == resolve_precision(None, amp=amp, device=anonymizer.device) else {"precision": chosen}


def _settings_digest(cfg, **options) -> str:
    """Everything besides the input that decides an output: the resolved config and the options."""
    import hashlib
    import json

    detections = options.get("detections")
    if detections is not None:
        options["detections"] = file_sha256(Path(detections))
    from .config import config_to_yaml

    text = config_to_yaml(cfg) + json.dumps(options, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


# --- running inputs --------------------------------------------------------------------------

def run_file(ctx: RunContext, src: Path, dst: Path, kind: InputKind, source_name: str | None = None) -> None:
    """Anonymize one image or video file into ``dst`` (written atomically; temporaries that a
    killed run left next to ``dst`` are removed first). Counts go to ``ctx.stats``.

    Raises:
        ValueError: ``dst`` is the input, or the input is broken. OSError: reading or writing.
    """
    from .dataset import anonymize_file
    from .io.atomic import remove_stale_partials

    remove_stale_partials(dst)  # left by a killed run; another live run's are kept
    anonymize_file(src, dst, kind, ctx, src.name if source_name is None else source_name)


@dataclass
class FolderResult:
    """What :func:`run_folder` did: the files that failed with their reasons, and how many an
    earlier run had finished (skipped, see the manifest)."""

    failures: list[tuple[Path, str]] = field(default_factory=list)
    already_done: int = 0
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # entries not read, with the reason
    manifest_path: Path | None = None


def run_folder(ctx: RunContext, src: Path, dst: Path, plan: FolderPlan | None = None, *,
               on_skipped: Callable[[Path, str], None] | None = None,
               on_failure: Callable[[Path, str], None] | None = None, progress: bool = True) -> FolderResult:
    """Mirror ``src`` into ``dst`` with a manifest (resumable); broken files fail alone.

    Args:
        plan: the checked listing (:func:`dp2.dataset.plan_folder`), made here when None.
        on_skipped: called with each entry that is not read (not media ...) and why, before the run.
        on_failure: called with each file that failed and why, as it fails.
        progress: show a files bar (see :mod:`dp2.progress`).

    Raises:
        FolderError: the folders or the manifest cannot be used.
        OutputBusyError: another run holds ``dst``.
    """
    from .dataset import anonymize_one, failed_record, open_manifest, plan_folder, progress_bar, remove_partials
    from .io.kinds import VIDEO_SUFFIXES
    from .io.lock import output_lock

    plan = plan if plan is not None else plan_folder(src, dst)
    result = FolderResult(skipped=list(plan.skipped))
    for path, reason in plan.skipped:
        if on_skipped is not None:
            on_skipped(path, reason)
    dst.mkdir(exist_ok=True)

    def failed(path: Path, reason: str) -> None:
        result.failures.append((path, reason))
        if on_failure is not None:
            on_failure(path, reason)

    with output_lock(dst):  # before reading the manifest: it is ours until the end
        manifest = open_manifest(dst)
        result.manifest_path = manifest.path
        for rel, error in plan.failed:
            manifest.append(failed_record(rel, error, ctx.settings_sha256))
            failed(src / rel, error)
        bar = progress_bar(total=len(plan.relatives), desc="files", unit="file", leave=True) if progress else None
        try:
            for rel in plan.relatives:
                previous = manifest.records.get(rel) if ctx.resume else None
                record = anonymize_one(ctx, src, dst, rel, previous=previous)
                if record["status"] == "skipped":
                    result.already_done += 1
                else:
                    manifest.append(record)
                    if record["status"] == "failed":
                        failed(src / rel, record["error"])
                    else:
                        kind = "video" if Path(rel).suffix.lower() in VIDEO_SUFFIXES else "image"
                        ctx.files_done[kind] = ctx.files_done.get(kind, 0) + 1
                        if kind == "video":
                            ctx.files_done["video_frames"] = (ctx.files_done.get("video_frames", 0)
                                                              + int(record.get("frames", 0)))
                if bar is not None:
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()
        remove_partials(dst, plan.relatives)
    return result


def stream_frames(ctx: RunContext, frames: Iterable[Frame], *, source_name: str | None = None,
                  temporal: bool = True) -> Iterator[tuple[Frame, Detections, Any]]:
    """Anonymize a stream of frames as the video path does: yields ``(frame, detections, result)``
    in order, ``detections`` being what was anonymized (gap filling included).

    The video files' frame loop (:func:`dp2.runner.process_frames`) with the same look-ahead
    (:data:`dp2.runner.VIDEO_DETECT_AHEAD` frames detected in a background thread, which also
    pulls ``frames``) and the same temporal state (tracking, gap filling, one seed per track with
    ``track``); frames are held back up to ``temporal_fill`` frames. Counts go to ``ctx.stats``
    when the stream ends or is closed.
    """
    from .runner import LoopStats, VIDEO_DETECT_AHEAD, process_frames

    stats = LoopStats()
    try:
        yield from process_frames(frames, ctx.process, source_name=source_name,
                                  temporal=ctx.temporal() if temporal else None,
                                  detect_ahead=VIDEO_DETECT_AHEAD, stats=stats)
    finally:
        ctx.stats.merge(stats)


# --- folder runs in other processes (Ray workers) ---------------------------------------------

def dataset_job(config_path: str | Path, input_dir: str | Path, output_dir: str | Path, options: RunOptions, *,
                quiet: bool = False, verbose: bool = False, debug: bool = False) -> DatasetJob:
    """A folder run as data for workers in other processes or on other machines.

    Paths become absolute (a worker's working folder differs; on a cluster, the input, output,
    config and weights must be on a filesystem every node mounts at the same path).
    """
    changes: dict[str, Any] = {}
    for name in RunOptions.names():
        value = getattr(options, name)
        if isinstance(value, Path):
            changes[name] = value.resolve()
    for name in ("person_generator", "cse_person_generator"):
        value = getattr(options, name)
        if value and Path(value).is_file():
            changes[name] = str(Path(value).resolve())
    # Options of the driver only: a worker builds a plain folder run.
    options = options.replace(**{**changes, "export_detections": None})
    try:
        config = str(resolve_config(config_path).resolve())
    except ConfigNameError:
        config = str(config_path)  # the worker reports it as the command would
    params = {"config_path": config,
              "options": options.to_dict(), "quiet": quiet, "verbose": verbose, "debug": debug}
    return DatasetJob(input_dir=str(Path(input_dir).resolve()), output_dir=str(Path(output_dir).resolve()),
                      params=params)


def worker_context(params: Mapping[str, Any]) -> RunContext:
    """The run a folder run's driver builds, built again from its job's parameters in a worker.

    The same functions as the command (:func:`load_run_config`, :func:`build_run_context`), hence
    the same pipeline, seeds and settings hash as the single-machine run; the driver has checked
    the paths and options already. The run's environment (weights folder, device) stays set for
    the rest of the process, since detectors load their weights on the first frame.

    Raises:
        RunUsageError, WeightsError: as the command would report them.
    """
    setup_logging(quiet=params.get("quiet", False), verbose=params.get("verbose", False),
                  debug=params.get("debug", False))
    options = RunOptions.from_dict(params.get("options", {}))
    os.environ.update(run_environment(options))
    cfg = load_run_config(params["config_path"], options)
    run, _ = build_run_context(cfg, options, InputKind.FOLDER, config_path=params["config_path"])
    return run


def run_webcam(ctx: RunContext, index: int, capture_factory: Callable | None = None) -> None:
    """Anonymize a webcam live into a window until q (``--webcam``). Counts go to ``ctx.stats``.

    Raises:
        WebcamError: no camera at ``index``, or no window can be shown.
    """
    from .io.webcam import WebcamSource, WindowSink
    from .runner import run_frames

    source = WebcamSource(index, max_res=ctx.max_res, capture_factory=capture_factory)
    sink = WindowSink(title="dp2 (q quits)")
    try:
        # Gap filling holds frames back; live, only when asked for (--temporal-fill).
        stats = run_frames(source, ctx.process, sink, source_name=f"webcam:{index}", temporal=ctx.temporal())
    finally:
        source.close()
        sink.close()
    ctx.stats.merge(stats)
