"""The run layer: a run built from a config plus the command's options, below the CLI.

:mod:`dp2.cli` parses options, prints and sets exit codes; the single-machine command, the Python
API (:func:`dp2.distributed.ray_backend.anonymize_dataset`) and every Ray worker
(:class:`dp2.dataset.DatasetWorker`) build their run here, so all of them get the same pipeline,
per-file seeds and settings hash. :mod:`dp2.dataset` and :mod:`dp2.distributed` import this
module, never the CLI.

Options that the config cannot honour raise ``click.UsageError`` / ``click.BadParameter``, the
CLI's own errors, so messages and exit codes are the command's. Importing this module is as light
as importing the CLI: click, torch and the models' modules are imported inside the functions
that use them. The options themselves (names, types, defaults) are declared once, on
:func:`dp2.cli.main`; :func:`folder_run_params` and :func:`worker_context` read them from there.
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Mapping

from .cli_output import setup_logging
from .config_names import ConfigNameError, resolve_config
from .dataset import DatasetJob
from .io.kinds import InputKind
from .io.manifest import file_sha256
from .weights import VERIFY_ENV_VAR, VERIFY_SOURCE_ENV_VAR, WEIGHTS_ENV_VAR

if TYPE_CHECKING:  # the heavy modules are imported inside the functions that run models
    import click

    from .anonymizer import Anonymizer
    from .io.detection_files import DetectionExport
    from .runner import FrameProcessor, LoopStats, TemporalStage

__all__ = ["RunContext", "build_run_context", "dataset_job", "folder_run_params", "load_run_config",
           "worker_context"]

logger = logging.getLogger("dp2")

# Videos: the detector's full mode every this many frames by default (bench/bench_deface.py).
AUTO_FULL_DETECTION_EVERY = 6
DEFAULT_TEMPORAL_FILL = 5  # videos; 0 for --webcam
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
    temporal_fill: int = DEFAULT_TEMPORAL_FILL  # resolved for the input kind (see _temporal_fill)
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


def _temporal_fill(given: int | None, kind: InputKind | None) -> int:
    """``--temporal-fill`` for the input kind: as given, else 5 frames for videos and 0 live (no latency)."""
    if given is not None:
        return given
    return 0 if kind is InputKind.WEBCAM else DEFAULT_TEMPORAL_FILL

def _check_capabilities(anonymizer: Anonymizer, config_path: Path, *, truncation: float | None, mt: bool,
                        amp_given: bool, track: bool, kind: InputKind | None) -> None:
    import click

    name = config_path.name
    if not anonymizer.uses_latent:
        for flag, used in (("-t/--truncation_value", truncation is not None), ("--multi-modal-truncation/--mt", mt),
                           ("--amp/--no-amp", amp_given)):
            if used:
                raise click.UsageError(f"{flag} only affects generative models; {name} uses classic filters only")
    elif mt and not anonymizer.supports_multi_modal_truncation:
        raise click.UsageError(f"--mt needs a generator with cluster centres (w_centers); {name} has none")
    if track:
        if not anonymizer.uses_latent:
            raise click.UsageError(f"--track keeps one generated identity per person; {name} uses classic filters, "
                                   "whose result does not depend on identity")
        if kind is InputKind.IMAGE:
            logger.warning("--track has no effect on a single image")
        elif not truncation and not mt:
            logger.warning("--track has no visible effect with -t 0: every identity is the average face "
                           "(DeepPrivacy2 issue #14); use -t > 0 or --mt")


def _person_overrides(cfg, person_generator: str | None, cse_person_generator: str | None) -> None:
    """``--person-generator`` / ``--cse-person-generator``: swap a body stage's generator for the
    ``generator`` node of another config file (e.g. configs/fdh/styleganL_nocse.py)."""
    import click

    from .config import ConfigError, load_config

    for flag, value, key in (("--person-generator", person_generator, "person"),
                             ("--cse-person-generator", cse_person_generator, "cse_person")):
        if value is None:
            continue
        stage = cfg.anonymizer.get(key)
        if stage is None or "generator" not in stage:
            raise click.UsageError(f"{flag}: this config has no {key.replace('_', ' ')} stage to replace the generator of")
        try:
            other = load_config(resolve_config(value))
        except (ConfigError, ConfigNameError) as e:
            raise click.BadParameter(str(e), param_hint=flag) from e
        if "generator" not in other:
            raise click.BadParameter(f"{value} defines no 'generator'", param_hint=flag)
        stage.generator = other.generator


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


_DEVICE_SYNTAX = re.compile(r"^(cpu|mps|cuda(:\d+)?)$")


def _run_environment(weights_dir: Path | None, no_verify_weights: bool, device: str | None) -> dict[str, str]:
    """Environment variables for the run: the weights lookup and every model's device read them."""
    import click

    env = {}
    if weights_dir is not None:
        if not weights_dir.is_dir():
            raise click.BadParameter(f"{weights_dir} is not a folder", param_hint="--weights-dir")
        env[WEIGHTS_ENV_VAR] = str(weights_dir)
    if no_verify_weights:
        env[VERIFY_ENV_VAR] = "0"
        env[VERIFY_SOURCE_ENV_VAR] = "--no-verify-weights"  # so the warning names the flag used
    if device is not None:
        if not _DEVICE_SYNTAX.match(device):
            raise click.BadParameter(f"{device!r}: expected cpu, cuda, cuda:N or mps", param_hint="--device")
        from .detection.base import DEVICE_ENV_VAR, resolve_device

        try:
            resolve_device(device)
        except (RuntimeError, ValueError) as e:
            raise click.BadParameter(str(e), param_hint="--device") from e
        env[DEVICE_ENV_VAR] = device  # every model of the run: detectors and generators
    return env


def _command() -> click.Command:
    """The anonymize command: its options (names, types, defaults) are those of every run."""
    from .cli import main  # declared there, and imported only once a run is built: no load-time cycle

    return main


# --- folder runs in other processes (Ray workers) ---------------------------------------------

# Options of the driver only: a worker builds a plain folder run.
_DRIVER_ONLY = {"ray_address": None, "ray_workers": None, "ray_gpus_per_worker": None, "ray_cpus_per_worker": 1.0,
                "ray_batch_size": 8,
                "visualize": False, "webcam": None, "print_config": False, "export_detections": None}


def _option_defaults() -> dict[str, Any]:
    """main()'s value for every option left out (what click passes when it is not given)."""
    import click

    main = _command()
    defaults = {}
    with click.Context(main) as ctx:
        for param in main.params:
            if isinstance(param, click.Option):
                value = param.get_default(ctx)
                if param.multiple:
                    value = tuple(value) if isinstance(value, (list, tuple)) else ()
                defaults[param.name] = value
    return defaults


def worker_context(params: Mapping[str, Any]) -> RunContext:
    """What :func:`dp2.cli.main` builds for a folder run, built again from its parameters in a worker.

    The same functions as main() (:func:`load_run_config`, :func:`build_run_context`), hence the
    same pipeline, seeds and settings hash as the single-machine run; the driver has checked the
    paths and options already.
    The run's environment (weights folder, device) stays set for the rest of the process, since
    detectors load their weights on the first frame.

    Raises:
        click.UsageError, WeightsError: as main() would report them.
    """
    params = {**_option_defaults(), **params, **_DRIVER_ONLY}
    setup_logging(quiet=params["quiet"], verbose=params.get("verbose", False), debug=params["debug"])
    os.environ.update(_run_environment(params["weights_dir"], params["no_verify_weights"], params["device"]))
    cfg = load_run_config(params["config_path"], params["opts"], params["dst"], params["person_generator"],
                          params["cse_person_generator"])
    run, _ = build_run_context(cfg, params, InputKind.FOLDER)
    return run


def folder_run_params(config_path: str | Path, input_dir: str | Path, output_dir: str | Path,
                      **options: Any) -> dict[str, Any]:
    """:func:`dp2.cli.main`'s parameters for a folder run given by keyword (the Python API).

    Names are main()'s (``max_res``, ``truncation_value``, ``opts``, ``device`` ...; see
    ``anonymize.py --help``); values are checked and converted as on the command line.

    Raises:
        TypeError: unknown option name (with close matches). ValueError: a bad value.
    """
    import difflib

    import click

    main = _command()
    by_name = {p.name: p for p in main.params}
    ctx = click.Context(main)
    params: dict[str, Any] = {}
    given = {"config_path": config_path, "input_path": input_dir, "output_path": output_dir, **options}
    for name, value in given.items():
        param = by_name.get(name)
        if param is None or name in _DRIVER_ONLY:
            close = difflib.get_close_matches(name, [n for n in by_name if n not in _DRIVER_ONLY], n=3)
            raise TypeError(f"unknown option {name!r}" + (f"; did you mean {', '.join(close)}?" if close else ""))
        try:
            params[name] = None if value is None else param.type_cast_value(ctx, value)
        except click.BadParameter as e:
            raise ValueError(f"{name}={value!r}: {e.format_message()}") from e
    return params


def dataset_job(params: Mapping[str, Any]) -> DatasetJob:
    """A folder run as data for workers in other processes or on other machines.

    Paths become absolute (a worker's working folder differs; on a cluster, the input, output,
    config and weights must be on a filesystem every node mounts at the same path).
    """
    params = {k: v for k, v in params.items() if k not in _DRIVER_ONLY}
    for key, value in params.items():
        if isinstance(value, Path):
            params[key] = value.resolve()
    for key in ("person_generator", "cse_person_generator"):
        if params.get(key) and Path(params[key]).is_file():
            params[key] = str(Path(params[key]).resolve())
    return DatasetJob(input_dir=str(params["input_path"]), output_dir=str(params["output_path"]), params=params)


def load_run_config(config_path: Path, opts: tuple[str, ...] = (), dst: float | None = None,
                    person_generator: str | None = None, cse_person_generator: str | None = None):
    """The run's config: the file, ``--opt`` overrides, ``--dst`` and the person generator options."""
    import click

    from .api import load_anonymizer_config
    from .config import ConfigError, apply_overrides

    try:
        cfg = load_anonymizer_config(config_path)
        if dst is not None:
            if "detector" not in cfg:
                raise ConfigError(f"--dst: {Path(config_path).name} has no top-level 'detector' "
                                  "to set the threshold of")
            cfg.detector.score_threshold = dst  # added when the config relies on the default
        apply_overrides(cfg, list(opts))
    except ConfigError as e:
        raise click.UsageError(str(e)) from e
    _person_overrides(cfg, person_generator, cse_person_generator)
    return cfg


def build_run_context(cfg, params: Mapping[str, Any], kind: InputKind | None, *,
                      amp_given: bool = False) -> tuple[RunContext, DetectionExport | None]:
    """Build the models and everything else a run needs, from :func:`dp2.cli.main`'s parameters.

    The single-machine CLI and every Ray worker (:func:`worker_context`) build their run here, so
    both get the same pipeline, per-file seeds and settings hash.

    Returns:
        The run's context and the ``--export-detections`` collector (or None).

    Raises:
        click.UsageError: options this config cannot honour. WeightsError: missing weights.
    """
    import click

    from .anonymizer import SynthesisOptions
    from .api import build_anonymizer
    from .config import ConfigError, config_to_yaml
    from .generation.latents import LatentSampler
    from .io.detection_files import DetectionCache, DetectionExport, GivenDetections
    from .runner import FrameProcessor

    p = SimpleNamespace(**params)
    gap = _temporal_fill(p.temporal_fill, kind)
    try:  # the whole file is checked before any model is built
        given = GivenDetections(p.detections_file) if p.detections_file is not None else None
    except ValueError as e:
        raise click.UsageError(str(e)) from e
    try:
        anonymizer = build_anonymizer(cfg)
    except ConfigError as e:
        raise click.UsageError(str(e)) from e
    if not anonymizer.needs_torch_threads and anonymizer.device.type == "cpu":
        # Only small tensors go through torch (decoding, boxes): one thread avoids the pool's
        # overhead, which made CenterFace + blur ~30% slower per image on a busy 2-core CPU.
        import torch

        torch.set_num_threads(1)
    every = p.full_detection_every
    if every is None:
        has_fast_mode = callable(getattr(anonymizer.detector, "detect_fast", None))
        every = min(AUTO_FULL_DETECTION_EVERY, gap + 1) if has_fast_mode else 1
    _check_capabilities(anonymizer, p.config_path, truncation=p.truncation_value, mt=p.multi_modal_truncation,
                        amp_given=amp_given, track=p.track, kind=kind)
    logger.info("config %s, generators %s", p.config_path,
                {k: type(g).__name__ for k, g in anonymizer.generators.items()})

    if p.detections_file is not None:
        bodies = [k for k in anonymizer.stages if k != "faces"]
        if bodies:
            raise click.UsageError(f"--detections holds face boxes only, and {Path(p.config_path).name} also "
                                   f"anonymizes {' and '.join(bodies)}, which need its detector (person masks are "
                                   "not stored in detection files); use a face config or drop --detections")
    try:
        export = DetectionExport(p.export_detections) if p.export_detections is not None else None
    except ValueError as e:
        raise click.UsageError(str(e)) from e
    store = None
    if p.cache:
        root = p.cache_dir or Path(os.environ.get("DP2_CACHE_DIR", Path.home() / ".cache" / "dp2" / "detections"))
        detector_node = cfg.anonymizer.get("detector")
        settings = config_to_yaml(detector_node, resolve=True) if detector_node is not None else ""
        try:
            store = DetectionCache(root, settings)
        except OSError as e:
            raise click.BadParameter(f"cannot use {root} as the cache folder ({e.strerror or e})",
                                     param_hint="--cache-dir") from e
    sampler = LatentSampler(p.seed)
    compile_generators = p.compile if p.compile is not None else kind in _LONG_RUNS
    options = SynthesisOptions(truncation_value=p.truncation_value or 0.0,
                               multi_modal_truncation=p.multi_modal_truncation, amp=p.amp, precision=p.precision,
                               compile=bool(compile_generators) and anonymizer.uses_latent,
                               compile_in_background=kind is InputKind.WEBCAM)
    process = FrameProcessor(anonymizer, next_seed=sampler.next_seed, options=options,
                             visualize_detections=p.visualize_detection, cache=store, given=given, export=export)
    digest = _settings_digest(cfg, seed=p.seed, t=p.truncation_value, mt=p.multi_modal_truncation, max_res=p.max_res,
                              st=p.start_time, et=p.end_time, fps=p.fps, codec=p.codec, crf=p.crf,
                              lossless=p.lossless, temporal_fill=p.temporal_fill, track=p.track,
                              vd=p.visualize_detection, full_detection_every=every, keep_metadata=p.keep_metadata,
                              detections=p.detections_file, **_precision_setting(p.precision, p.amp, anonymizer))
    run = RunContext(process=process, max_res=p.max_res, keep_metadata=p.keep_metadata, visualize=p.visualize,
                     start_time=p.start_time, end_time=p.end_time, fps=p.fps, codec=p.codec, crf=p.crf,
                     lossless=p.lossless, temporal_fill=gap, track=p.track, seed=p.seed, resume=p.resume,
                     full_detection_every=every, max_retries=p.max_retries, settings_sha256=digest)
    return run, export


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

