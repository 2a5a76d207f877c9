"""The Python API: everything the command line does, from Python, through the same run layer.

:func:`load` builds a :class:`Pipeline` from a config name or file (with ``--opt``-style
overrides and any option of the command by its parameter name). A pipeline anonymizes images
given as NumPy arrays, PIL images or torch tensors (:meth:`Pipeline.__call__`, returning the
same kind plus the detections), detects (:meth:`Pipeline.detect`), anonymizes given detections,
streams frames with the video path's temporal state (:meth:`Pipeline.stream`), and runs files
and folders (:meth:`Pipeline.anonymize_file`, :meth:`Pipeline.anonymize_folder`). ``dp2-anonymize``
calls the same methods, so both write the same bytes.

Example:
    >>> import numpy as np, dp2
    >>> anonymizer = dp2.load("traditional/face/gaussian", device="cpu")
    >>> result = anonymizer(np.zeros((64, 64, 3), np.uint8))
    >>> result.image.shape, result.detections.count()
    ((64, 64, 3), {'faces': 0})

Importing this module is light (no torch): the models' modules load with :func:`load`.
"""
from __future__ import annotations

import contextlib
import json
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Mapping, Sequence

from .io.kinds import IMAGE_SUFFIXES, UNSUPPORTED_SUFFIXES, VIDEO_SUFFIXES, InputKind, classify_path
from .options import RunOptions, RunUsageError
from .run import (FolderResult, RunContext, RunParts, _environment, build_model, build_run_parts,
                  load_anonymizer_config, load_run_config, make_run_context, run_environment, run_file, run_folder,
                  run_webcam, stream_frames)

if TYPE_CHECKING:
    import numpy as np
    import torch
    from omegaconf import DictConfig

    from .anonymizer import Anonymizer, SynthesisOptions
    from .dataset import FolderPlan
    from .io.detection_files import DetectionExport
    from .runner import LoopStats
    from .structures import Detections, Frame

__all__ = ["ExportError", "FileResult", "FolderRunResult", "Pipeline", "Result", "RunOptions", "RunUsageError", "Stream",
           "anonymize_file",
           "anonymize_folder", "load",
           # older helpers, kept working
           "anonymize_array", "anonymize_arrays", "build_anonymizer", "load_anonymizer_config"]

logger = logging.getLogger(__name__)

#: Options that shape what :func:`load` builds (the config, the models, the shared detections):
#: given to :func:`load`, not per call.
LOAD_ONLY = frozenset({"opts", "dst", "person_generator", "cse_person_generator", "device", "weights_dir",
                       "no_verify_weights", "detections_file", "cache", "cache_dir"})


# --- results ---------------------------------------------------------------------------------

@dataclass
class Result:
    """One anonymized image or frame.

    Attributes:
        image: the anonymized image, of the input's kind: NumPy [H, W, 3] uint8, PIL RGB image,
            or torch uint8 [3, H, W] on the input's device (after ``max_res``, if set).
        detections: what was anonymized (:class:`dp2.structures.Detections`: faces, persons);
            in streams, boxes filled in detection gaps included.
        frame: index in the stream (0 for an image).
        time_s: the frame's time, when known.
        source: the name detections are recorded under (``--export-detections`` ``source``).
    """

    image: Any
    detections: Detections
    frame: int = 0
    time_s: float | None = None
    source: str = "image"

    def to_dict(self) -> dict[str, Any]:
        """This frame's item of an ``--export-detections`` file (``source``, ``frame``,
        ``time_s``, ``size_hw``, ``faces`` ...)."""
        import math

        item: dict[str, Any] = {"source": self.source, "frame": self.frame}
        if self.time_s is not None and math.isfinite(self.time_s):
            item["time_s"] = round(self.time_s, 6)
        item.update(self.detections.to_dict())
        return item

    def to_json(self) -> str:
        return json.dumps(self.to_dict())


def export_json(results: Iterable[Result]) -> str:
    """Results as a whole ``--export-detections`` file (``{"version": 1, "items": [...]}``), which
    ``--detections`` / :meth:`Pipeline.anonymize` can read back."""
    from .detection.serialize import FORMAT_VERSION

    return json.dumps({"version": FORMAT_VERSION, "items": [r.to_dict() for r in results]})


@dataclass
class FileResult:
    """What :meth:`Pipeline.anonymize_file` did: the output and the counts (``stats.frames``,
    ``stats.detections`` per kind, ``stats.filled`` boxes filled in detection gaps)."""

    output: Path
    stats: LoopStats
    files_done: dict[str, int] = field(default_factory=dict)


@dataclass
class FolderRunResult:
    """What :meth:`Pipeline.anonymize_folder` did: counts, failures (path, reason), and how many
    files an earlier run had finished (skipped, per the manifest)."""

    output: Path
    stats: LoopStats
    files_done: dict[str, int]
    failures: list[tuple[Path, str]]
    already_done: int
    skipped: list[tuple[Path, str]]


class ExportError(OSError):
    """The run finished but its ``export_detections`` file could not be written.

    Attributes:
        result: the run's result (its outputs are written).
    """

    def __init__(self, message: str, result: Any = None) -> None:
        super().__init__(message)
        self.result = result


# --- images in, images out -------------------------------------------------------------------

def _image_kind(image: Any) -> str:
    import numpy as np

    if isinstance(image, np.ndarray):
        return "numpy"
    try:
        import torch

        if isinstance(image, torch.Tensor):
            return "torch"
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    try:
        from PIL import Image

        if isinstance(image, Image.Image):
            return "pil"
    except ImportError:  # pragma: no cover - Pillow is a dependency
        pass
    raise TypeError(f"image must be a NumPy array [H, W, 3] uint8, a PIL image or a torch uint8 tensor [3, H, W], "
                    f"got {type(image).__module__}.{type(image).__name__}")


def _to_chw(image: Any) -> tuple[torch.Tensor, str, Any]:
    """uint8 [3, H, W] CPU tensor (a copy) for an input image; its kind and its torch device."""
    import numpy as np
    import torch

    kind = _image_kind(image)
    if kind == "pil":
        image = np.asarray(image.convert("RGB"))
    if kind in ("numpy", "pil"):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected an RGB uint8 array [H, W, 3], got {image.dtype} {list(image.shape)}")
        if image.shape[0] == 0 or image.shape[1] == 0:
            raise ValueError(f"expected a non-empty image, got shape {list(image.shape)}")
        # A copy: read-only arrays are fine (torch warns on them) and the input is never written.
        return torch.from_numpy(np.array(image, copy=True)).permute(2, 0, 1).contiguous(), kind, None
    if image.dtype != torch.uint8 or image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"expected a torch uint8 tensor [3, H, W], got {image.dtype} {list(image.shape)}")
    if image.shape[1] == 0 or image.shape[2] == 0:
        raise ValueError(f"expected a non-empty image, got shape {list(image.shape)}")
    return image.detach().to("cpu", copy=True).contiguous(), kind, image.device


def _from_chw(result: torch.Tensor, kind: str, device: Any) -> Any:
    if kind == "torch":
        return result.to(device) if device is not None and device.type != "cpu" else result
    array = result.permute(1, 2, 0).contiguous().numpy()
    if kind == "pil":
        from PIL import Image

        return Image.fromarray(array)  # [H, W, 3] uint8: RGB
    return array


def _to_detections(detections: Any, size_hw: tuple[int, int]) -> Detections:
    from .structures import Detections, FaceDetections

    if isinstance(detections, Detections):
        if tuple(detections.image_size_hw) != tuple(size_hw):
            raise ValueError(f"detections are for an image of size {tuple(detections.image_size_hw)}, "
                             f"got an image of size {tuple(size_hw)}")
        return detections
    if isinstance(detections, FaceDetections):
        return Detections(image_size_hw=detections.image_size_hw, faces=detections)
    if isinstance(detections, Mapping):
        return Detections.from_dict(dict(detections), size_hw)
    raise TypeError(f"detections must be dp2.structures.Detections, FaceDetections or a dict in the "
                    f"--export-detections format, got {type(detections).__name__}")


# --- the pipeline ----------------------------------------------------------------------------

class Pipeline:
    """A loaded config: models built once, then images, streams, files and folders.

    Made by :func:`load`. Every call starts from the same latent seeds (``seed``), so the same
    input and options give the same output, as two runs of the command do.

    Attributes:
        options: the options given to :func:`load` (:class:`dp2.run.RunOptions`).
        model: the built :class:`dp2.anonymizer.Anonymizer` (detector and generators).
        config: the resolved config (omegaconf).
    """

    def __init__(self, parts: RunParts, options: RunOptions, *, environment: Mapping[str, str] | None = None,
                 amp_given: bool = False) -> None:
        self._parts = parts
        self.options = options
        self._env = dict(environment or {})
        self._amp_given = amp_given
        self._image_run: RunContext | None = None

    @classmethod
    def from_config(cls, cfg: DictConfig, options: RunOptions = RunOptions(), *, config_path: str | Path,
                    amp_given: bool = False) -> "Pipeline":
        """Build from a loaded run config (:func:`dp2.run.load_run_config`); the run's environment
        (device, weights folder) is set while building and during every call."""
        env = run_environment(options)
        with _environment(env):
            parts = build_run_parts(cfg, options, config_path=config_path,
                                    build=lambda c: build_anonymizer(c), amp_given=amp_given)
        return cls(parts, options, environment=env, amp_given=amp_given)

    @property
    def model(self) -> Anonymizer:
        return self._parts.anonymizer

    @property
    def config(self) -> DictConfig:
        return self._parts.cfg

    def __repr__(self) -> str:
        return f"Pipeline({self._parts.config_path.name!r}, stages={list(self.model.stages)})"

    # --- options per call --------------------------------------------------------------------

    def _options_for(self, given: Mapping[str, Any]) -> RunOptions:
        fixed = sorted(set(given) & LOAD_ONLY)
        if fixed:
            raise TypeError(f"{fixed[0]} is set when loading: dp2.load(config, {fixed[0]}=...)")
        return self.options.replace(**given) if given else self.options

    def _context(self, kind: InputKind | None, options: RunOptions,
                 show: bool = False) -> tuple[RunContext, DetectionExport | None]:
        options.check_for(kind)
        run, export = make_run_context(self._parts, options, kind,
                                       amp_given=self._amp_given or options.amp != self.options.amp)
        run.visualize = show
        return run, export

    def run_context(self, kind: InputKind | None, **options: Any) -> tuple[RunContext, DetectionExport | None]:
        """A fresh run of this pipeline for an input kind (the run layer's :class:`~dp2.run.RunContext`),
        for your own loop (e.g. :func:`dp2.runner.run_frames` on a webcam)."""
        return self._context(kind, self._options_for(options))

    @contextlib.contextmanager
    def _running(self, export: DetectionExport | None, result_box: list):
        """The run's environment; writes the export at the end (an error after a finished run
        raises :class:`ExportError`, after a failed one it is logged and the failure raised)."""
        try:
            with _environment(self._env):
                yield
        except BaseException:
            if export is not None:
                try:
                    export.write()
                except OSError as e:
                    logger.error("--export-detections %s: cannot write (%s)", export.path, e.strerror or e)
            raise
        if export is not None:
            try:
                export.write()
            except OSError as e:
                raise ExportError(f"--export-detections {export.path}: cannot write ({e.strerror or e})",
                                  result_box[0] if result_box else None) from e

    # --- images ------------------------------------------------------------------------------

    def _frame(self, image: Any, index: int = 0, time_s: float | None = None,
               source: str = "image") -> tuple[Frame, str, Any]:
        from .io.images import resize_max_res
        from .structures import Frame

        chw, kind, device = _to_chw(image)
        return Frame(image=resize_max_res(chw, self.options.max_res), index=index, time_s=time_s,
                     source=source), kind, device

    def _single(self) -> RunContext:
        """The context single images share; its latent seeds restart at every call."""
        from .generation.latents import LatentSampler

        if self._image_run is None:
            # Video-only options given to load() are for streams and videos, not for still images.
            still = self.options.replace(export_detections=None, start_time=None, end_time=None, fps=None)
            self._image_run, _ = self._context(InputKind.IMAGE, still)
        self._image_run.process.next_seed = LatentSampler(self.options.seed).next_seed
        return self._image_run

    def detect(self, image: Any, *, source: str = "image") -> Detections:
        """The detections of one image (NumPy [H, W, 3] uint8, PIL, or torch uint8 [3, H, W]),
        as the command finds them in a still image (``--detections``/``--cache`` honoured)."""
        frame, _, _ = self._frame(image, source=source)
        with _environment(self._env):
            return self._single().process.detections(frame, source)

    def anonymize(self, image: Any, detections: Any = None, *, source: str = "image") -> Result:
        """Anonymize one image; returns the image of the input's kind and what was anonymized.

        Args:
            image: NumPy [H, W, 3] uint8 (read-only arrays too), PIL image (converted to RGB) or
                torch uint8 [3, H, W]. Never modified.
            detections: what to anonymize instead of running the detector: :class:`Detections`
                (e.g. from :meth:`detect`), or a dict in the ``--export-detections`` format
                (:meth:`Result.to_dict`), checked like a ``--detections`` file.
            source: the name detections are recorded and looked up under.

        Raises:
            TypeError, ValueError: an image or detections of the wrong type, shape or size.
        """
        frame, kind, device = self._frame(image, source=source)
        with _environment(self._env):
            run = self._single()
            if detections is None:
                dets = run.process.detections(frame, source)
            else:
                dets = _to_detections(detections, frame.size_hw)
            result = run.process.render(frame, dets)
        return Result(image=_from_chw(result, kind, device), detections=dets, frame=0, source=source)

    __call__ = anonymize

    # --- streams -----------------------------------------------------------------------------

    def stream(self, frames: Iterable[Any], *, fps: float | None = None, source: str = "stream",
               **options: Any) -> "Stream":
        """Anonymize a sequence of frames as the command does a video: one :class:`Result` per
        frame, in order, with tracking, gap filling (frames are held back ``temporal_fill``
        frames), the detection schedule (``full_detection_every``) and, with ``track``, one
        identity per tracked person.

        Frames are images as for :meth:`anonymize` (one size throughout); they are pulled a few
        frames ahead, from a background thread, while earlier ones are anonymized.

        Args:
            fps: the frames' rate, for their ``time_s`` (None: no times).
            source: the name detections are recorded under (and looked up, with ``--detections``).
            **options: per-call options (``temporal_fill``, ``full_detection_every``, ``seed``, ...).

        Returns:
            A :class:`Stream`: iterate it; ``stream.stats`` has the counts once it is done.
        """
        run, _ = self._context(InputKind.VIDEO, self._options_for(options).replace(export_detections=None))
        return Stream(self, run, frames, fps=fps, source=source)

    # --- files and folders -------------------------------------------------------------------

    def anonymize_file(self, input: str | Path, output: str | Path, *, show: bool = False,
                       **options: Any) -> FileResult:
        """Anonymize an image or a video file into ``output``, as ``dp2-anonymize CONFIG -i INPUT -o OUTPUT``.

        Videos keep their audio and timing and go through tracking, gap filling and the detection
        schedule; images keep their format (and EXIF with ``keep_metadata``). The output is written
        atomically and never over the input.

        Args:
            show: show the result in a window (``-v``).
            **options: per-call options by the command's names: ``start_time``, ``end_time``,
                ``fps``, ``codec``, ``crf``, ``lossless``, ``max_res``, ``seed``, ``export_detections`` ...

        Raises:
            ValueError: not an image or video, bad options, output over the input.
            ExportError: the outputs are written, the ``export_detections`` file is not.
        """
        from .dataset import check_file_run

        run_options = self._options_for(options)
        src, dst = Path(input), Path(output)
        kind = _file_kind(src)
        suffixes = IMAGE_SUFFIXES if kind is InputKind.IMAGE else VIDEO_SUFFIXES
        if dst.suffix.lower() not in suffixes:
            raise ValueError(f"{dst}: the output suffix must be one of {', '.join(suffixes)}")
        check_file_run(src, dst, export=run_options.export_detections)
        run, export = self._context(kind, run_options, show)
        result: list[FileResult] = []
        with self._running(export, result):
            run_file(run, src, dst, kind, src.name)
            result.append(FileResult(output=dst, stats=run.stats, files_done=run.files_done))
        return result[0]

    anonymize_video = anonymize_file

    def anonymize_folder(self, input_dir: str | Path, output_dir: str | Path, *, plan: FolderPlan | None = None,
                         on_skipped: Callable[[Path, str], None] | None = None,
                         on_failure: Callable[[Path, str], None] | None = None, show: bool = False,
                         **options: Any) -> FolderRunResult:
        """Mirror a folder's images and videos into ``output_dir``, as the command's folder mode:
        a manifest (``dp2_manifest.jsonl``) records each file, and a run with the same settings
        skips what an earlier one finished (``resume=False`` redoes all). A broken file fails
        alone (see ``result.failures``); it is retried ``max_retries`` times when the failure may pass.

        Args:
            plan: the checked listing (:func:`dp2.dataset.plan_folder`), made here when None.
            on_skipped, on_failure: called with (path, reason) for entries not read and files failed.

        Raises:
            FolderError (a ValueError): the folders cannot be used. OutputBusyError: another run
            holds ``output_dir``. ExportError: as :meth:`anonymize_file`.
        """
        from .dataset import plan_folder

        src, dst = Path(input_dir), Path(output_dir)
        run_options = self._options_for(options)
        if plan is None:
            plan = plan_folder(src, dst, export=run_options.export_detections)
        run, export = self._context(InputKind.FOLDER, run_options, show)
        result: list[FolderRunResult] = []
        with self._running(export, result):
            done: FolderResult = run_folder(run, src, dst, plan, on_skipped=on_skipped or _log_skipped,
                                            on_failure=on_failure or _log_failure)
            result.append(FolderRunResult(output=dst, stats=run.stats, files_done=run.files_done,
                                          failures=done.failures, already_done=done.already_done,
                                          skipped=done.skipped))
        return result[0]

    def anonymize_webcam(self, index: int = 0, **options: Any) -> LoopStats:
        """Anonymize webcam ``index`` live into a window until q is pressed (``--webcam``); returns
        the counts. Gap filling is off unless ``temporal_fill`` is given (it adds latency).

        Raises:
            WebcamError: no camera, or no window can be shown.
        """
        run, export = self._context(InputKind.WEBCAM, self._options_for(options))
        result: list = []
        with self._running(export, result):
            run_webcam(run, index)
            result.append(FileResult(output=Path(f"webcam:{index}"), stats=run.stats))
        return run.stats


def _log_skipped(path: Path, reason: str) -> None:
    logger.info("skipped (%s): %s", reason, path)


def _log_failure(path: Path, reason: str) -> None:
    logger.warning("failed: %s", reason if str(path) in reason else f"{path}: {reason}")


def _file_kind(path: Path) -> InputKind:
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    kind = classify_path(path)
    if kind is None and path.suffix.lower() in UNSUPPORTED_SUFFIXES:
        raise ValueError(f"{path}: {UNSUPPORTED_SUFFIXES[path.suffix.lower()]}")
    if kind not in (InputKind.IMAGE, InputKind.VIDEO):
        what = "a folder (use anonymize_folder)" if kind is InputKind.FOLDER else "not an image or video"
        raise ValueError(f"{path}: {what}; expected an image ({', '.join(IMAGE_SUFFIXES)}) "
                         f"or a video ({', '.join(VIDEO_SUFFIXES)})")
    return kind


class Stream:
    """The frames of :meth:`Pipeline.stream`, anonymized, as an iterator of :class:`Result`.

    Attributes:
        stats: counts (``frames``, ``detections``, ``filled`` in detection gaps, ``shot_cuts``),
            complete once the stream is exhausted or closed.
    """

    def __init__(self, pipeline: Pipeline, run: RunContext, frames: Iterable[Any], *, fps: float | None,
                 source: str) -> None:
        self._pipeline = pipeline
        self._run = run
        self._kinds: dict[int, tuple[str, Any]] = {}
        self._size: tuple[int, int] | None = None
        self._source = source
        self._fps = fps
        self._loop = stream_frames(run, self._frames(frames), source_name=source)

    @property
    def stats(self) -> LoopStats:
        return self._run.stats

    def _frames(self, images: Iterable[Any]) -> Iterator[Frame]:
        for index, image in enumerate(images):
            time_s = index / self._fps if self._fps else None
            frame, kind, device = self._pipeline._frame(image, index, time_s, self._source)
            if self._size is None:
                self._size = frame.size_hw
            elif frame.size_hw != self._size:
                raise ValueError(f"frame {index} is {frame.size_hw[1]}x{frame.size_hw[0]}, the stream's first "
                                 f"frame {self._size[1]}x{self._size[0]}: every frame of a stream needs one size")
            self._kinds[index] = (kind, device)
            yield frame

    def __iter__(self) -> "Stream":
        return self

    def __next__(self) -> Result:
        with _environment(self._pipeline._env):
            frame, dets, result = next(self._loop)
        kind, device = self._kinds.pop(frame.index)
        return Result(image=_from_chw(result, kind, device), detections=dets, frame=frame.index,
                      time_s=frame.time_s, source=self._source)

    def close(self) -> None:
        """Stop early (frames held back for gap filling are dropped)."""
        self._loop.close()

    def __enter__(self) -> "Stream":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --- entry points ----------------------------------------------------------------------------

def load(name_or_path: str | Path, device: str | None = "cpu", overrides: Sequence[str] = (),
         **options: Any) -> Pipeline:
    """Load a config by name (``"traditional/face/gaussian"``, ``"face"``; see
    ``dp2-anonymize --list-configs``) or file, and build its models.

    Args:
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"``, or None (CUDA when available).
        overrides: ``key=value`` config overrides, as ``--opt``.
        **options: any option of the command by its parameter name (:class:`dp2.run.RunOptions`):
            ``dst=0.5``, ``max_res=1024``, ``seed=1``, ``temporal_fill=3``, ``weights_dir=...``.

    Raises:
        TypeError: an unknown option (with close matches). ValueError (``RunUsageError``,
        ``ConfigError``): a bad value, an unknown config, bad overrides. WeightsError: missing weights.
    """
    if overrides and options.get("opts"):
        raise TypeError("give config overrides once: overrides=[...] or opts=[...]")
    if isinstance(overrides, str):
        raise TypeError(f"overrides must be a list of 'key=value' strings, got the string {overrides!r}")
    given = {"opts": tuple(overrides), **options, "device": device}
    run_options = RunOptions.from_dict(given)
    run_options.check_for(None)
    cfg = load_run_config(name_or_path, run_options)
    return Pipeline.from_config(cfg, run_options, config_path=_config_file(name_or_path), amp_given="amp" in options)


def _config_file(name_or_path: str | Path) -> Path:
    from .config_names import resolve_config

    return resolve_config(name_or_path)


def anonymize_file(input: str | Path, output: str | Path, *, config: str | Path, device: str | None = "cpu",
                   overrides: Sequence[str] = (), **options: Any) -> FileResult:
    """``dp2-anonymize CONFIG -i INPUT -o OUTPUT`` in one call: :func:`load` then
    :meth:`Pipeline.anonymize_file` (options of either kind by name)."""
    load_options = {k: v for k, v in options.items() if k in LOAD_ONLY}
    call_options = {k: v for k, v in options.items() if k not in LOAD_ONLY}
    return load(config, device, overrides, **load_options).anonymize_file(input, output, **call_options)


def anonymize_folder(input_dir: str | Path, output_dir: str | Path, *, config: str | Path,
                     device: str | None = "cpu", overrides: Sequence[str] = (), **options: Any) -> FolderRunResult:
    """``dp2-anonymize CONFIG -i FOLDER -o OUTPUT_FOLDER`` in one call (see :func:`anonymize_file`)."""
    load_options = {k: v for k, v in options.items() if k in LOAD_ONLY}
    call_options = {k: v for k, v in options.items() if k not in LOAD_ONLY}
    return load(config, device, overrides, **load_options).anonymize_folder(input_dir, output_dir, **call_options)


# --- older helpers (kept working) ------------------------------------------------------------

def build_anonymizer(config: str | Path | DictConfig, overrides: Sequence[str] = ()) -> Anonymizer:
    """Build the :class:`~dp2.anonymizer.Anonymizer` model of a config file (or a loaded config).
    Prefer :func:`load`, which also gives tracking, gap filling, files and folders."""
    from omegaconf import DictConfig

    cfg = config if isinstance(config, DictConfig) else load_anonymizer_config(config, overrides)
    return build_model(cfg)


def anonymize_arrays(anonymizer: Anonymizer, frames: Iterable[np.ndarray], *, seed: int = 0,
                     options: SynthesisOptions | None = None) -> Iterator[np.ndarray]:
    """Anonymize RGB uint8 [H, W, 3] frames one by one, each on its own (no tracking or gap
    filling). Deprecated: use ``dp2.load(...).stream(frames)`` for videos (the command's
    temporal path) or ``dp2.load(...)(image)`` for images."""
    from .anonymizer import SynthesisOptions
    from .generation.latents import LatentSampler

    warnings.warn("anonymize_arrays() processes frames one by one, without tracking or gap filling; "
                  "use dp2.load(config).stream(frames) (videos) or dp2.load(config)(image)",
                  DeprecationWarning, stacklevel=2)
    options = options if options is not None else SynthesisOptions()
    sampler = LatentSampler(seed)
    for array in frames:
        if not hasattr(array, "dtype") or _image_kind(array) != "numpy":
            raise ValueError(f"expected an RGB uint8 array [H, W, 3], got {type(array).__name__}")
        chw, _, _ = _to_chw(array)
        out = anonymizer.anonymize(chw, next_seed=sampler.next_seed, options=options)
        yield out.permute(1, 2, 0).numpy()


def anonymize_array(anonymizer: Anonymizer, image: np.ndarray, *, seed: int = 0,
                    options: SynthesisOptions | None = None) -> np.ndarray:
    """Anonymize one RGB uint8 [H, W, 3] image with a model from :func:`build_anonymizer`;
    returns a new array. (``dp2.load(config)(image)`` also returns the detections.)"""
    from .anonymizer import SynthesisOptions
    from .generation.latents import LatentSampler

    options = options if options is not None else SynthesisOptions()
    chw, _, _ = _to_chw(image)
    out = anonymizer.anonymize(chw, next_seed=LatentSampler(seed).next_seed, options=options)
    return out.permute(1, 2, 0).numpy()
