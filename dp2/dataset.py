"""One file at a time, the same way on one machine and on Ray workers.

A folder run (a "dataset") maps every image and video under the input folder to the same
relative path under the output folder. :func:`anonymize_one` does one file and returns its
manifest record; the CLI's folder mode calls it in a loop and Ray workers call it through
:class:`DatasetWorker` (see :mod:`dp2.distributed.ray_backend`), so both write the same bytes.
A file's output depends only on the file, the settings and ``--seed``: its latent seeds come from
:func:`~dp2.io.manifest.file_seed` of the seed and its relative path, never from the files
processed before it on the same worker.

Records (dicts, JSON-ready) have ``input`` and ``output`` (relative paths), ``status``
(``ok``, ``failed``, or ``skipped`` when an earlier run already did the file), ``input_sha256``,
``settings_sha256``, ``detections`` (count per kind), ``frames`` and, when failed, ``error``.
"""
from __future__ import annotations

import errno
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from .io.atomic import release_finished, remove_if_stale
from .io.kinds import IMAGE_SUFFIXES, VIDEO_SUFFIXES, InputKind, classify_path
from .io.lock import LOCK_NAME
from .io.manifest import (MANIFEST_NAME, ManifestError, NotARegularFile, RunManifest, file_seed, file_sha256,
                          is_finished)
from .io.paths import (PathConflict, check_folder_output, file_identity, is_inside, not_regular_reason, same_path,
                       scan_folder)
from .weights import WeightsError

# The models, frames and tensors are imported where files are anonymized: planning a folder and
# checking paths (the CLI's usage errors) must not pay for torch.
if TYPE_CHECKING:
    import torch

    from .run import RunContext
    from .io.images import ImageMeta, ImageReader, ImageWriter

__all__ = ["DatasetJob", "DatasetSummary", "DatasetWorker", "FolderError", "FolderPlan", "anonymize_file",
           "anonymize_image_file", "anonymize_one", "anonymize_video_file", "check_file_run", "check_folders",
           "failed_record", "list_dataset", "open_manifest", "plan_folder", "progress_bar", "remove_partials",
           "same_file"]

logger = logging.getLogger(__name__)


def progress_bar(total=None, desc="", unit="frame", leave=False, position=0):
    """A bar on stderr: live on a terminal, a line every few seconds otherwise, off with
    ``DP2_NO_PROGRESS=1`` (see :mod:`dp2.progress`)."""
    from .progress import progress_bar as bar

    return bar(total=total, desc=desc, unit=unit, leave=leave, position=position)


def show(image: torch.Tensor, title: str = "dp2", wait: int = 1) -> int:
    """Show a uint8 [3, H, W] image in a window; returns the key pressed (``-v``)."""
    import cv2

    cv2.imshow(title, image.permute(1, 2, 0).numpy()[:, :, ::-1])
    return cv2.waitKey(wait) & 0xFF


# --- one input of each kind ------------------------------------------------------------------

def anonymize_image_file(src: Path, dst: Path, ctx: RunContext, source_name: str) -> None:
    """One image file: every frame of it (animations, pages) is anonymized and written.

    Size, memory and whether ``dst``'s format can hold the frames are checked before any frame
    is decoded. Animation frames go through the video frame loop (tracking and gap filling,
    the full detector on every frame); pages of a TIFF are independent images.
    """
    from .io.images import ImageReader, ImageWriter, resize_max_res
    from .structures import Frame

    with ImageReader(src) as reader:
        writer = ImageWriter(dst, reader, keep_metadata=ctx.keep_metadata)
        if reader.frames_to_write == 1:
            image, meta = next(reader.frames())
            reader.close()  # frees the decoded picture (4 bytes per pixel) before the models run
            processed = resize_max_res(image, ctx.max_res)
            del image
            frame = Frame(image=processed, index=0, source=str(src))
            result, dets = ctx.process(frame, source_name)
            ctx.stats.add(dets)
            if ctx.visualize:
                while True:
                    key = show(result, wait=0)
                    if key == ord("u"):
                        result, _ = ctx.process(frame, source_name)
                        continue
                    break
            writer.add(result, meta, original=processed)
        else:
            _anonymize_frames(reader, writer, ctx, source_name)
        writer.close()


def _anonymize_frames(reader: ImageReader, writer: ImageWriter, ctx: RunContext, source_name: str) -> None:
    from .io.images import resize_max_res
    from .runner import TemporalStage, run_frames
    from .structures import Frame

    metas: dict[int, ImageMeta] = {}

    def frames():
        time_s = 0.0
        for index, (image, meta) in enumerate(reader.frames()):
            metas[index] = meta
            yield Frame(image=resize_max_res(image, ctx.max_res), index=index, source=str(reader.path),
                        time_s=time_s if reader.kind == "animation" else None)
            time_s += (meta.duration_ms or 0) / 1000

    def emit(frame: Frame, result: torch.Tensor) -> None:
        writer.add(result, metas.pop(frame.index), original=frame.image)
        if ctx.visualize:
            show(result)

    temporal = None
    if reader.kind == "animation":
        temporal = TemporalStage(next_seed=ctx.process.next_seed, max_gap=ctx.temporal_fill, track_seeds=ctx.track)
    stats = run_frames(frames(), ctx.process, emit, source_name=source_name, temporal=temporal)
    ctx.stats.merge(stats)
    logger.info("%s: %d %s, detections %s%s", reader.path, stats.frames,
                "pages" if reader.kind == "pages" else "frames", stats.detections,
                f", {stats.filled} filled in gaps" if stats.filled else "")


def anonymize_video_file(src: Path, dst: Path, ctx: RunContext, source_name: str, position: int = 0) -> None:
    from .io.overlap import BackgroundWriter, prefetch
    from .io.sources import array_frames
    from .io.video import VideoReader, VideoWriter
    from .runner import VIDEO_DETECT_AHEAD, run_frames
    from .structures import Frame

    with VideoReader(src, start_time=ctx.start_time, end_time=ctx.end_time, fps=ctx.fps) as reader:
        info = reader.info
        # Decoding runs ahead in its own thread (bounded), encoding behind in another.
        frames = prefetch(array_frames(iter(reader), str(src), ctx.max_res), size=8)
        bar = None
        # Everything after the decoding thread starts sits in this try: the thread must be stopped
        # before the reader closes its container, whatever fails (the writer's set-up included),
        # or FFmpeg decodes from freed memory and the process dies of a segfault.
        try:
            first = next(frames, None)
            if first is None:
                raise ValueError(f"{src}: no video frames in the selected time range")
            out_fps = ctx.fps or info.fps
            start = ctx.start_time or 0.0
            writer = VideoWriter(dst, fps=out_fps, size_hw=first.size_hw, codec=ctx.codec, crf=ctx.crf,
                                 lossless=ctx.lossless, audio_from=src if info.has_audio else None,
                                 audio_start_s=start, audio_end_s=ctx.end_time)
            bar = progress_bar(total=info.num_frames, desc=src.name, position=position)

            def all_frames():
                yield first
                yield from frames

            with writer, BackgroundWriter(writer.write) as encoder:
                def emit(frame: Frame, result: torch.Tensor) -> bool:
                    encoder.submit(result.permute(1, 2, 0).numpy(), None if ctx.fps else frame.time_s)
                    if ctx.visualize and show(result) == ord("q"):
                        return False
                    return True

                stats = run_frames(all_frames(), ctx.process, emit, source_name=source_name, progress=bar,
                                   temporal=ctx.temporal(), detect_ahead=VIDEO_DETECT_AHEAD)
        finally:
            if bar is not None:
                bar.close()
            frames.close()  # joins the decoding thread
    ctx.stats.merge(stats)
    if ctx.end_time is not None and info.duration_s is not None and ctx.end_time > info.duration_s + 0.5 / info.fps:
        # --st/--et count from the first video frame; a player's clock may start earlier.
        logger.warning("%s: --end-time %g is past the end of the video (%.2f s after its first frame%s); "
                       "the output ends there", src, ctx.end_time, info.duration_s,
                       f", which is {info.start_time_s:.2f} s into the file" if info.start_time_s > 0.01 else "")
    logger.info("%s: %d frames at %.1f frames/s, detections %s, %d filled in gaps, %d shot cuts",
                src, stats.frames, stats.fps, stats.detections, stats.filled, stats.shot_cuts)


def same_file(a: Path, b: Path) -> bool:
    """Whether two existing paths are the same file (hard links and symlinks included)."""
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def anonymize_file(src: Path, dst: Path, kind: InputKind, ctx: RunContext, source_name: str, position: int = 0) -> None:
    """Anonymize one image or video file into ``dst`` (written atomically)."""
    if same_path(src, dst):
        raise ValueError(f"{dst}: output would overwrite the input; choose another -o")
    if kind is InputKind.IMAGE:
        anonymize_image_file(src, dst, ctx, source_name)
    else:
        anonymize_video_file(src, dst, ctx, source_name, position)


# --- folders ---------------------------------------------------------------------------------

class FolderError(ValueError):
    """A folder run cannot start: bad folders, an output that would overwrite or mix with an
    input, a manifest path holding something else, or nothing to anonymize. Names the path."""


def check_folders(input_dir: Path, output_dir: Path) -> None:
    """Raise :class:`FolderError` when ``output_dir`` cannot receive the mirror of ``input_dir``.

    Besides what :func:`dp2.io.paths.check_folder_output` refuses, an output folder inside the
    input must be new, or hold no images or videos but the outputs its manifest records (an
    earlier run into it, resumed): any other media there are originals, which the walk would
    leave out and the run could overwrite.
    """
    input_dir, output_dir = Path(input_dir), Path(output_dir)
    try:
        check_folder_output(input_dir, output_dir)
    except PathConflict as e:
        raise FolderError(str(e)) from None
    if output_dir.is_dir() and is_inside(output_dir, input_dir):
        strangers = _not_recorded_outputs(output_dir)
        if strangers:
            more = f" and {len(strangers) - 1} more" if len(strangers) > 1 else ""
            raise FolderError(f"output folder {output_dir} is an existing folder inside the input folder {input_dir} "
                              f"and holds files that are no outputs of an earlier run into it ({strangers[0]}{more}): "
                              "this run would leave them out and could overwrite them; choose a new folder (it is "
                              "left out of the walk) or one outside the input")


def _not_recorded_outputs(output_dir: Path) -> list[Path]:
    """Media files (or unreadable media entries) in ``output_dir`` that its manifest does not list as outputs."""
    try:
        recorded = {record.get("output") for record in RunManifest(output_dir).records.values()}
    except ManifestError:
        recorded = set()
    scan = scan_folder(output_dir, _is_media_name)
    found = scan.media + [path for path, _ in scan.failed]
    return [path for path in found if path.relative_to(output_dir).as_posix() not in recorded]


def _is_media_name(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES + VIDEO_SUFFIXES


@dataclass
class FolderPlan:
    """The files of a folder run, listed and checked before anything is written.

    Attributes:
        relatives: POSIX paths (relative to the input folder) of the images and videos to do.
        skipped: entries never read, with the reason (not media, symlinked folders, ...).
        failed: (relative path, error) of media entries that cannot be read safely (FIFOs,
            devices, sockets, broken links, symlink loops, unlistable folders).
    """

    input_dir: Path
    output_dir: Path
    relatives: list[str]
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)


def plan_folder(input_dir: Path, output_dir: Path, *, export: Path | None = None) -> FolderPlan:
    """List the folder run ``input_dir`` -> ``output_dir`` and check every path it would write.

    Refused (:class:`FolderError`): output folders :func:`check_folders` refuses; a manifest or
    lock path in the output folder that is an input file (hard link or symlink); an ``export``
    (``--export-detections``) file inside the input folder, that is an input, the output folder,
    the manifest or one of the outputs; a folder with nothing to anonymize. (What the manifest
    path holds is checked when it is read, under the run's lock: :func:`open_manifest`.)
    """
    input_dir, output_dir = Path(input_dir), Path(output_dir)
    check_folders(input_dir, output_dir)
    scan = scan_folder(input_dir, _is_media_name, exclude=output_dir)
    if scan.failed and scan.failed[0][0] == input_dir:
        raise FolderError(f"input folder {input_dir}: {scan.failed[0][1]}")
    relatives = [path.relative_to(input_dir).as_posix() for path in scan.media]
    failed = [(path.relative_to(input_dir).as_posix(), f"{path}: {reason}") for path, reason in scan.failed]
    if not relatives and not failed:
        others = f"; {len(scan.skipped)} other entr{'y' if len(scan.skipped) == 1 else 'ies'} skipped" \
            if scan.skipped else ""
        raise FolderError(f"input folder {input_dir} holds no images ({' '.join(IMAGE_SUFFIXES)}) or videos "
                          f"({' '.join(VIDEO_SUFFIXES)}){others}; nothing to do")
    for name in (MANIFEST_NAME, LOCK_NAME):
        path = output_dir / name
        if file_identity(path) in scan.identities:
            raise FolderError(f"{path} is an input file of this run (a link to it); dp2 would write into it; "
                              "move it away or choose another -o")
    if export is not None:
        _check_export(Path(export), input_dir, output_dir, scan.identities, set(relatives))
    return FolderPlan(input_dir=input_dir, output_dir=output_dir, relatives=relatives, skipped=scan.skipped,
                      failed=failed)


def _check_export(export: Path, input_dir: Path, output_dir: Path, identities, relatives: set[str]) -> None:
    problem = None
    if file_identity(export) in identities:
        problem = "is an input file of this run (or a link to one)"
    elif is_inside(export, input_dir) and not is_inside(export, output_dir):
        problem = f"lies inside the input folder {input_dir}"
    elif same_path(export, output_dir):
        problem = "is the output folder"
    elif is_inside(export, output_dir):
        inside = Path(os.path.realpath(export)).relative_to(os.path.realpath(output_dir)).as_posix()
        if inside in relatives or inside in (MANIFEST_NAME, LOCK_NAME):
            problem = f"is another output of this run ({output_dir / inside})"
    if problem:
        raise FolderError(f"--export-detections {export} {problem}; choose a file outside the input")


def check_file_run(input_path: Path, output: Path, *, export: Path | None = None) -> None:
    """Raise :class:`FolderError` when a single-file run would read a non-regular file, or write its
    output or ``export`` (``--export-detections``) over the input, or the export over the output."""
    reason = not_regular_reason(input_path)
    if reason is not None:
        raise FolderError(f"{input_path}: {reason}")
    if same_path(input_path, output):
        raise FolderError(f"{output} is the input file; dp2 never overwrites an input")
    if export is not None:
        for other, what in ((input_path, "the input file"), (output, "the output file")):
            if same_path(export, other):
                raise FolderError(f"--export-detections {export} is {what}; choose another file")


def list_dataset(input_dir: Path, output_dir: Path) -> tuple[list[str], list[Path]]:
    """Relative POSIX paths of the images and videos under ``input_dir`` (sorted; the output folder
    left out when it lies inside) and the other entries, which are not anonymized."""
    scan = scan_folder(Path(input_dir), _is_media_name, exclude=Path(output_dir))
    return [path.relative_to(input_dir).as_posix() for path in scan.media], [path for path, _ in scan.skipped]


def open_manifest(output_dir: Path) -> RunManifest:
    """The output folder's manifest; :class:`FolderError` when its path holds something else."""
    try:
        return RunManifest(output_dir)
    except ManifestError as e:
        raise FolderError(str(e)) from None


def failed_record(relative: str, error: str, settings_sha256: str = "") -> dict[str, Any]:
    """The record of a file that was not read (see :attr:`FolderPlan.failed`)."""
    return {"input": relative, "status": "failed", "input_sha256": None, "settings_sha256": settings_sha256,
            "output": relative, "detections": {}, "frames": 0, "error": error}


# errno values a retry a moment later cannot fix. A full disk (ENOSPC, EDQUOT) is among them:
# space is rarely freed within seconds, and each retry would redo the whole file.
_PERMANENT_ERRNOS = frozenset(getattr(errno, name) for name in (
    "ENOSPC", "EDQUOT", "EROFS", "EACCES", "EPERM", "ENOENT", "ENOTDIR", "EISDIR", "ELOOP", "ENAMETOOLONG",
    "EFBIG", "EEXIST", "EXDEV", "ENXIO", "ENODEV") if hasattr(errno, name))


def _os_error(error: BaseException) -> OSError | None:
    """The first OSError with an errno in ``error``'s chain (wrappers such as ImageError keep it as cause)."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno is not None:
            return error
        error = error.__cause__ or error.__context__
    return None


def _may_pass_on_retry(error: Exception) -> bool:
    """I/O errors that may pass (EIO, NFS timeouts ...), out of memory and other runtime errors may
    pass; bad input (ImageError, undecodable video: ValueError) and permanent I/O errors (no
    permission, read-only, a full disk: :data:`_PERMANENT_ERRNOS`) fail every time."""
    os_error = _os_error(error)
    if os_error is not None:
        return os_error.errno not in _PERMANENT_ERRNOS
    return not isinstance(error, ValueError)


_RETRY_PAUSE_S = 0.25


def anonymize_one(ctx: RunContext, input_dir: Path, output_dir: Path, relative: str, *,
                  previous: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Anonymize ``input_dir / relative`` into ``output_dir / relative``; returns its record.

    Args:
        ctx: the run's context (built pipeline and options); ``ctx.max_retries`` bounds the
            retries of errors that may pass (I/O, out of memory), not of bad input.
        previous: the file's last manifest record; when it is ``ok`` for the same input and
            settings and the output is there, nothing is done and the record says ``skipped``.

    Raises:
        KeyboardInterrupt, WeightsError: not about this file; the run should stop.
    """
    from .generation.latents import LatentSampler
    from .runner import LoopStats

    src, dst = input_dir / relative, output_dir / relative
    record: dict[str, Any] = {"input": relative, "status": "failed", "input_sha256": None,
                              "settings_sha256": ctx.settings_sha256, "output": relative, "detections": {}, "frames": 0}
    try:
        record["input_sha256"] = file_sha256(src)
    except NotARegularFile as e:
        record["error"] = str(e)
        return record
    except OSError as e:
        record["error"] = f"{src}: cannot read ({e.strerror or e})"
        return record
    if is_finished(previous, record["input_sha256"], ctx.settings_sha256, dst):
        record["status"] = "skipped"
        return record
    attempt = 0
    while True:
        # Each file's latents depend only on --seed and its path, not on what ran before it.
        ctx.process.next_seed = LatentSampler(file_seed(ctx.seed, relative)).next_seed
        # This file's counts alone (the record must not depend on what ran before it either).
        run_stats, ctx.stats = ctx.stats, LoopStats()
        try:
            dst.parent.mkdir(parents=True, exist_ok=True)
            anonymize_file(src, dst, classify_path(src), ctx, relative, position=1)
        except (KeyboardInterrupt, WeightsError):
            raise
        except Exception as e:  # one broken file must not stop a folder run
            reason = str(e) or type(e).__name__
            logger.debug("failure on %s", src, exc_info=True)
            if attempt < ctx.max_retries and _may_pass_on_retry(e):
                attempt += 1
                logger.warning("%s: %s; retry %d of %d", src, reason, attempt, ctx.max_retries)
                if _os_error(e) is not None:
                    time.sleep(_RETRY_PAUSE_S * attempt)  # give a flaky disk or share a moment
                continue
            record["error"] = reason
            return record
        finally:
            file_stats, ctx.stats = ctx.stats, run_stats
        run_stats.merge(file_stats)
        record.update(status="ok", detections=dict(file_stats.detections), frames=file_stats.frames)
        return record


def remove_partials(output_dir: Path, relatives: list[str]) -> int:
    """Delete temporaries (``.<stem>.<random>.partial<ext>``) that killed processes left next to
    the outputs of ``relatives``; returns how many. Temporaries a live process is writing (another
    run's, see :mod:`dp2.io.atomic`) are kept."""
    release_finished()
    wanted: dict[Path, list[tuple[str, str]]] = {}
    for relative in relatives:
        path = output_dir / relative
        wanted.setdefault(path.parent, []).append((f".{path.stem}.", f".partial{path.suffix}"))
    removed = 0
    for folder, patterns in wanted.items():
        try:
            names = os.listdir(folder)
        except OSError:
            continue
        for name in names:
            if ".partial" in name and any(name.startswith(a) and name.endswith(b) for a, b in patterns):
                removed += remove_if_stale(folder / name)
    if removed:
        logger.info("removed %d temporary file(s) left by interrupted workers in %s", removed, output_dir)
    return removed


@dataclass
class DatasetSummary:
    """What a folder run did: counts, and the files that failed with their reasons."""

    files: int = 0
    anonymized: int = 0
    skipped: int = 0
    frames: int = 0
    detections: dict[str, int] = field(default_factory=dict)
    failures: list[tuple[str, str]] = field(default_factory=list)
    not_read: list[tuple[Path, str]] = field(default_factory=list)  # entries skipped, with the reason

    @property
    def not_media(self) -> list[Path]:
        """The skipped entries' paths (as before ``not_read`` had the reasons)."""
        return [path for path, _ in self.not_read]

    def add(self, record: Mapping[str, Any]) -> None:
        status = record["status"]
        if status == "skipped":
            self.skipped += 1
        elif status == "ok":
            self.anonymized += 1
            self.frames += record.get("frames", 0)
            for kind, n in record.get("detections", {}).items():
                self.detections[kind] = self.detections.get(kind, 0) + n
        else:
            self.failures.append((record["input"], record.get("error", "")))


@dataclass(frozen=True)
class DatasetJob:
    """A folder run as plain, picklable data: what a worker needs to build the same pipeline.

    Made by :func:`dp2.run.dataset_job`.

    Attributes:
        input_dir, output_dir: absolute folders (on a cluster, a filesystem every node mounts).
        params: ``config_path``, ``options`` (:meth:`dp2.run.RunOptions.to_dict`, paths
            absolute) and the logging switches ``quiet``, ``verbose``, ``debug``.
    """

    input_dir: str
    output_dir: str
    params: Mapping[str, Any]

    @property
    def resume(self) -> bool:
        return bool(self.params.get("options", {}).get("resume", True))

    @property
    def max_retries(self) -> int:
        return int(self.params.get("options", {}).get("max_retries", 2))


class DatasetWorker:
    """The built pipeline of a job, once per process: ``worker(relative)`` -> record.

    Building loads the detector and generators (and sets the job's device and weights folder for
    the process), exactly as the CLI does for a folder run, so outputs are byte-identical.

    Example (a Ray Data pipeline of your own)::

        class Anonymize:
            def __init__(self, job):
                self.worker = DatasetWorker(job)
            def __call__(self, batch):
                return {"record": [json.dumps(self.worker(p)) for p in batch["path"]]}
    """

    def __init__(self, job: DatasetJob) -> None:
        from .run import worker_context  # the wiring the CLI uses too, so both build the same pipeline

        self.job = job
        self.context = worker_context(job.params)
        self._input_dir, self._output_dir = Path(job.input_dir), Path(job.output_dir)

    def __call__(self, relative: str, previous: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return anonymize_one(self.context, self._input_dir, self._output_dir, relative, previous=previous)
