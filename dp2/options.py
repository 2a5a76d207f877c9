"""The options of a run, typed: one table for the command line, the Python API and Ray workers.

:class:`RunOptions` holds every option that shapes a run (``--max-res``, ``--seed``, ``--opt`` ...)
with its default. Each field carries an :class:`OptionSpec` in its metadata: the command-line
spelling, help text, type and range. :mod:`dp2.cli` builds its Click options from these specs, the
API (:func:`dp2.load`) fills the dataclass from keyword arguments, and Ray workers rebuild it from
:meth:`RunOptions.to_dict`. Options of the command alone (``-i``, ``-o``, ``--webcam``, ``--ray``,
logging) are declared in :mod:`dp2.cli`.

Bad values raise :class:`RunUsageError` (a ValueError) naming the option as the command spells
it; the CLI turns it into its usage error (exit 2). This module imports neither Click nor torch.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .io.kinds import InputKind

__all__ = ["AUTO_FULL_DETECTION_EVERY", "DEFAULT_TEMPORAL_FILL", "OptionSpec", "RunOptions", "RunUsageError",
           "temporal_fill_for"]

# Videos: the detector's full mode every this many frames by default (bench/bench_deface.py).
AUTO_FULL_DETECTION_EVERY = 6
DEFAULT_TEMPORAL_FILL = 5  # videos; 0 for --webcam

DEVICE_SYNTAX = re.compile(r"^(cpu|mps|cuda(:\d+)?)$")


class RunUsageError(ValueError):
    """An option (or a combination of options) the run cannot honour.

    Attributes:
        param_hint: the option as the command spells it (``--device``), or None when the error is
            about several options or the config.
    """

    def __init__(self, message: str, param_hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param_hint = param_hint

    def format_message(self) -> str:
        """The text the command prints after ``Error:`` (as Click words a bad parameter)."""
        return f"Invalid value for {self.param_hint}: {self.message}" if self.param_hint else self.message

    def __str__(self) -> str:
        return self.format_message()


@dataclass(frozen=True)
class OptionSpec:
    """How an option is spelled and checked on the command line.

    Attributes:
        decls: the command's spellings (``("--start-time", "--st")``); a ``"--a/--b"`` pair is an
            on/off switch.
        help: the ``--help`` text.
        kind: ``"value"``, ``"flag"`` (present = True), ``"switch"`` (``--x/--no-x``) or
            ``"multiple"`` (repeatable, a tuple of str).
        type: ``int``, ``float``, ``str`` or ``Path`` for values.
        min, max, min_open, max_open: the range of a number (None = unbounded).
        path: for Path values: ``"file"`` (no folder), ``"dir"`` (no file) or ``"any"``.
        metavar: the value's name in ``--help``.
        choices: the values a str option accepts (None = any).
    """

    decls: tuple[str, ...]
    help: str
    kind: str = "value"
    type: type = str
    min: float | None = None
    max: float | None = None
    min_open: bool = False
    max_open: bool = False
    path: str | None = None
    metavar: str | None = None
    choices: tuple[str, ...] | None = None

    @property
    def hint(self) -> str:
        """The spelling error messages use (``-t/--truncation_value``), as Click joins them."""
        if self.kind == "switch":
            return self.decls[0]
        return "/".join(self.decls)


def _opt(default: Any, *decls: str, help: str, **spec: Any) -> Any:
    return field(default=default, metadata={"cli": OptionSpec(decls=decls, help=help, **spec)})


def _range_text(spec: OptionSpec) -> str:
    lo = "" if spec.min is None else f"{spec.min}{'<' if spec.min_open else '<='}"
    hi = "" if spec.max is None else f"{'<' if spec.max_open else '<='}{spec.max}"
    return f"{lo}x{hi}"


@dataclass(frozen=True)
class RunOptions:
    """Every option of a run, by the command's parameter names (``anonymize.py --help``).

    Fields are the command's options with the same defaults; each is documented by its
    :class:`OptionSpec` (``RunOptions.spec("max_res").help``). Values are checked on creation:
    :class:`RunUsageError` names the option as the command spells it.

    Example:
        >>> from dp2.run import RunOptions
        >>> RunOptions(max_res=1024, seed=3).max_res
        1024
        >>> RunOptions.from_dict(RunOptions(opts=("detector.score_threshold=0.4",)).to_dict()).opts
        ('detector.score_threshold=0.4',)
    """

    max_res: int | None = _opt(
        None, "--max-res", type=int, min=1,
        help="Shrink frames so the longer side is at most this (PIL bilinear) before anything else. "
             "The output keeps the reduced size, as in DeepPrivacy2.")
    start_time: float | None = _opt(
        None, "--start-time", "--st", type=float, min=0,
        help="Video: start of the range to write, in seconds from the video's first frame (t = 0 there, "
             "even when the file's audio or its container clock starts earlier, as players may show). "
             "The output holds only frames with --st <= t < --et.")
    end_time: float | None = _opt(
        None, "--end-time", "--et", type=float, min=0,
        help="Video: end of the range (exclusive), seconds from the first frame; past the end of the "
             "video the output simply ends with it.")
    fps: float | None = _opt(
        None, "--fps", type=float, min=0, min_open=True,
        help="Video: output frame rate (frames picked at n/fps). Default: the source's timing.")
    dst: float | None = _opt(
        None, "--detection-score-threshold", "--dst", type=float, min=0, max=1, max_open=True,
        help="Detector score threshold in [0, 1) (sets detector.score_threshold; 1 would find nothing). "
             "Default: the config's value.")
    visualize_detection: bool = _opt(
        False, "--visualize-detection", "--vd", kind="flag",
        help="Draw boxes, scores and landmarks instead of anonymizing: faces stay in the clear "
             "(default output <stem>_detections<ext>).")
    multi_modal_truncation: bool = _opt(
        False, "--multi-modal-truncation", "--mt", kind="flag",
        help="Truncate latents towards cluster centres (generators with w_centers).")
    cache: bool = _opt(
        False, "--cache", kind="flag",
        help="Reuse detections stored per image content and detector settings (JSON, no pickle).")
    cache_dir: Path | None = _opt(
        None, "--cache-dir", type=Path, path="any",
        help="Folder for --cache. Default: $DP2_CACHE_DIR or ~/.cache/dp2/detections.")
    amp: bool = _opt(True, "--amp/--no-amp", kind="switch",
                     help="DeepPrivacy2's mixed precision: fp16 generators on CUDA (no effect on CPU). "
                          "--precision overrides it.")
    precision: str | None = _opt(
        None, "--precision", choices=("fp32", "bf16", "fp16"),
        help="Generators' precision. fp32 reproduces DeepPrivacy2's pixels; bf16/fp16 (autocast, channels_last) "
             "are faster and change generated faces by some levels. Default: fp16 on CUDA with --amp, else fp32.")
    compile: bool | None = _opt(
        None, "--compile/--no-compile", kind="switch",
        help="Run generators compiled by torch.compile (within 1 level of eager; the first use compiles, tens of "
             "seconds, cached in ~/.cache/dp2/inductor). Default: on for videos, folders and --webcam, off for "
             "one image. Without a C++ compiler generators run eagerly, with a warning.")
    truncation_value: float | None = _opt(
        None, "-t", "--truncation_value", type=float, min=0, max=1,
        help="Truncation: 0 = average identity (DeepPrivacy2's default), 1 = most diverse.")
    track: bool = _opt(False, "--track", kind="flag", help="Keep one identity per tracked person in videos.")
    temporal_fill: int | None = _opt(
        None, "--temporal-fill", type=int, min=0,
        help="Videos: anonymize a face also in gaps of up to N frames where the detector missed it "
             "(interpolated box; holds N frames back). 0 disables. Default: 5 for videos, 0 for --webcam.")
    full_detection_every: int | None = _opt(
        None, "--full-detection-every", type=int, min=1, metavar="N",
        help="Videos: run the detector's full mode (CenterFace: full resolution plus its small-face pass) "
             "every N frames and its fast mode (one half-resolution pass) in between; faces only the full "
             "mode finds are carried across by gap filling (N <= --temporal-fill + 1). "
             f"Default: {AUTO_FULL_DETECTION_EVERY} (at most --temporal-fill + 1) for detectors with a fast "
             "mode, else 1. 1 = full mode on every frame: slowest, and a tiny face that shows for fewer "
             "than N frames between full passes cannot be missed this way.")
    seed: int = _opt(0, "--seed", type=int, min=0, max=2**32 - 1,
                     help="Seed for the per-detection latent seeds.")
    person_generator: str | None = _opt(None, "--person-generator",
                                        help="Generator config for persons without CSE.")
    cse_person_generator: str | None = _opt(None, "--cse-person-generator",
                                            help="Generator config for persons with CSE.")
    resume: bool = _opt(
        True, "--resume/--no-resume", kind="switch",
        help="Folders: skip files an earlier run with the same settings already finished "
             "(dp2_manifest.jsonl in the output folder).")
    max_retries: int = _opt(
        2, "--max-retries", type=int, min=0, metavar="N",
        help="Folders: retry a file up to N times when its failure may pass (I/O, out of memory, "
             "with --ray a worker process that died); bad input is not retried.")
    opts: tuple[str, ...] = _opt(
        (), "--opt", kind="multiple", metavar="KEY=VALUE",
        help="Override any config value, e.g. --opt detector.score_threshold=0.5 (repeatable).")
    keep_metadata: bool = _opt(
        False, "--keep-metadata", kind="flag",
        help="Keep EXIF (incl. GPS!) in output images, minus what can hold pixels: the MakerNote, the "
             "thumbnail, embedded images and blobs, and XMP/IPTC/comments (never written). Default: EXIF "
             "stripped. A valid ICC colour profile is always kept (rebuilt from its declared tags).")
    export_detections: Path | None = _opt(
        None, "--export-detections", type=Path, path="file",
        help="Write what is anonymized per image/frame to this JSON file (detections, and in videos "
             "the boxes filled in detection gaps).")
    detections_file: Path | None = _opt(
        None, "--detections", type=Path, path="file",
        help="Use face detections from this JSON file (the --export-detections format) instead of a "
             "detector. The file is checked like an upload; every frame needs an item with its source "
             "name, frame index and size (never rescaled).")
    weights_dir: Path | None = _opt(
        None, "--weights-dir", type=Path, path="dir",
        help="Folder with model weights under their official file names (also $DP2_WEIGHTS_DIR); "
             "searched before the torch hub cache. Nothing is downloaded if the files are there.")
    no_verify_weights: bool = _opt(
        False, "--no-verify-weights", kind="flag",
        help="Accept local weight files without checking their md5/sha256 (own or test checkpoints).")
    device: str | None = _opt(None, "--device",
                              help="cpu, cuda, cuda:1, mps for every model. Default: CUDA if available.")
    codec: str | None = _opt(None, "--codec",
                             help="Video codec (e.g. libx264, libx265, libvpx-vp9). Default: by extension.")
    crf: int | None = _opt(None, "--crf", type=int, min=0, max=63,
                           help="Video quality (x264/x265 CRF; lower = better).")
    lossless: bool = _opt(False, "--lossless", kind="flag",
                          help="Lossless video (x264 qp 0 / FFV1 / VP9 lossless): for datasets.")

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            spec = f.metadata["cli"]
            if value is None and f.default is None:
                continue  # "not given": the run picks the default for its input kind
            try:
                checked = _check_value(f.name, spec, value)
            except RunUsageError as e:  # name the keyword as given, and the command's spelling
                raise RunUsageError(f"{f.name}={value!r} ({spec.hint}): {e.message}") from None
            if checked is not value:
                object.__setattr__(self, f.name, checked)

    # --- the table ---------------------------------------------------------------------------

    @classmethod
    def names(cls) -> list[str]:
        """The options' parameter names, in ``--help`` order."""
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def spec(cls, name: str) -> OptionSpec:
        """The command-line spec of option ``name`` (KeyError with close matches when unknown)."""
        for f in dataclasses.fields(cls):
            if f.name == name:
                return f.metadata["cli"]
        raise KeyError(_unknown(name, cls.names()))

    # --- serialized form (Ray jobs, the API's keyword arguments) ------------------------------

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], *, ignore_unknown: bool = False) -> "RunOptions":
        """Options from ``{name: value}`` (keyword arguments, :meth:`to_dict`, Click's parameters).

        Raises:
            TypeError: an unknown name (with close matches), unless ``ignore_unknown``.
            RunUsageError: a bad value.
        """
        names = set(cls.names())
        unknown = [k for k in values if k not in names]
        if unknown and not ignore_unknown:
            raise TypeError(_unknown(unknown[0], cls.names()))
        return cls(**{k: v for k, v in values.items() if k in names})

    def to_dict(self) -> dict[str, Any]:
        """Plain values by name (paths as str, tuples as lists): JSON- and pickle-ready."""
        out: dict[str, Any] = {}
        for name in self.names():
            value = getattr(self, name)
            out[name] = str(value) if isinstance(value, Path) else list(value) if isinstance(value, tuple) else value
        return out

    def replace(self, **changes: Any) -> "RunOptions":
        """A copy with ``changes`` (checked like a new object; unknown names raise TypeError)."""
        unknown = [k for k in changes if k not in self.names()]
        if unknown:
            raise TypeError(_unknown(unknown[0], self.names()))
        return dataclasses.replace(self, **changes)

    # --- checks that depend on the input ------------------------------------------------------

    def temporal_fill_for(self, kind: InputKind | None) -> int:
        """``--temporal-fill`` for the input kind: as given, else 5 frames for videos and 0 live."""
        return temporal_fill_for(self.temporal_fill, kind)

    def check_for(self, kind: InputKind | None) -> None:
        """Checks between options and against the input kind, before any model is built.

        Raises:
            RunUsageError: options that do not combine, or do not apply to this input.
        """
        if self.device is not None and not DEVICE_SYNTAX.match(self.device):
            raise RunUsageError(f"{self.device!r}: expected cpu, cuda, cuda:N or mps", "--device")
        if kind is InputKind.IMAGE and any(v is not None for v in (self.start_time, self.end_time, self.fps)):
            raise RunUsageError("--start-time/--end-time/--fps apply to videos, not to an image")
        self._check_video_options()
        gap = self.temporal_fill_for(kind)
        every = self.full_detection_every
        if every is not None and every > gap + 1:
            raise RunUsageError(f"--full-detection-every {every} needs --temporal-fill >= "
                                f"{every - 1} to bridge the frames between full passes (now {gap})")
        if self.detections_file is not None and self.cache:
            raise RunUsageError("--detections and --cache exclude each other (given detections need no cache)")

    def _check_video_options(self) -> None:
        """``--st/--et/--fps/--codec``: finite times, a non-empty range, a video encoder."""
        for hint, value in (("--start-time/--st", self.start_time), ("--end-time/--et", self.end_time),
                            ("--fps", self.fps)):
            if value is not None and not math.isfinite(value):
                raise RunUsageError(f"{value} is not a finite number of seconds" if hint != "--fps"
                                    else f"{value} is not a finite frame rate", hint)
        if self.end_time is not None and self.end_time <= (self.start_time or 0.0):
            raise RunUsageError(f"--end-time ({self.end_time}) must be after --start-time ({self.start_time or 0.0})")
        if self.codec is not None:
            from .io.video import check_video_encoder

            try:
                check_video_encoder(self.codec)
            except ValueError as e:
                raise RunUsageError(str(e), "--codec") from e


def temporal_fill_for(given: int | None, kind: InputKind | None) -> int:
    """``--temporal-fill`` for the input kind: as given, else 5 frames for videos and 0 live (no latency)."""
    if given is not None:
        return given
    return 0 if kind is InputKind.WEBCAM else DEFAULT_TEMPORAL_FILL


def _unknown(name: str, names: list[str]) -> str:
    close = difflib.get_close_matches(name, names, n=3)
    return f"unknown option {name!r}" + (f"; did you mean {', '.join(close)}?" if close else "")


def _check_value(name: str, spec: OptionSpec, value: Any) -> Any:
    """``value`` checked (and converted: str -> Path, list -> tuple) as the command line would."""
    hint = None  # the caller names the option
    if spec.kind in ("flag", "switch"):
        if not isinstance(value, bool):
            raise RunUsageError(f"{value!r} is not a boolean ({name}=True or False)", hint)
        return value
    if spec.kind == "multiple":
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            raise RunUsageError(f"{value!r}: expected a list of strings ({name}=['key=value', ...])", hint)
        if not all(isinstance(v, str) for v in value):
            raise RunUsageError(f"{list(value)!r}: expected strings", hint)
        return tuple(value)
    if value is None:
        return None
    if spec.type is Path:
        if not isinstance(value, (str, Path)) or str(value) == "":
            raise RunUsageError(f"{value!r} is not a path", hint)
        return Path(value) if not isinstance(value, Path) else value
    if spec.type is str:
        if not isinstance(value, str):
            raise RunUsageError(f"{value!r} is not a string", hint)
        if spec.choices is not None and value not in spec.choices:
            raise RunUsageError(f"{value!r} is not one of {', '.join(map(repr, spec.choices))}.", hint)
        return value
    if spec.type is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise RunUsageError(f"{value!r} is not a valid integer.", hint)
    elif spec.type is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise RunUsageError(f"{value!r} is not a valid float.", hint)
        value = float(value)
        if not math.isfinite(value):
            return value  # as on the command line: the checks of the run name these (check_for)
    low_ok = spec.min is None or (value > spec.min if spec.min_open else value >= spec.min)
    high_ok = spec.max is None or (value < spec.max if spec.max_open else value <= spec.max)
    if not (low_ok and high_ok):
        raise RunUsageError(f"{value} is not in the range {_range_text(spec)}.", hint)
    return value
