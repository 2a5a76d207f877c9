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

import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import torch

from .generation.latents import LatentSampler
from .io.images import ImageMeta, ImageReader, ImageWriter, resize_max_res
from .io.manifest import file_seed, file_sha256, is_finished
from .io.sources import InputKind, array_frames, classify_path, list_media
from .runner import LoopStats, TemporalStage, run_frames
from .structures import Frame
from .weights import WeightsError

if TYPE_CHECKING:
    from .cli import RunContext

__all__ = ["DatasetJob", "DatasetSummary", "DatasetWorker", "anonymize_file", "anonymize_image_file", "progress_bar",
           "anonymize_one", "anonymize_video_file", "check_folders", "list_dataset", "remove_partials", "same_file"]

logger = logging.getLogger(__name__)


def progress_bar(total=None, desc="", unit="frame", leave=False, position=0):
    """A tqdm bar on stderr; off when stderr is not a terminal or ``DP2_NO_PROGRESS=1``."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, leave=leave, position=position, dynamic_ncols=True,
                disable=not sys.stderr.isatty() or os.environ.get("DP2_NO_PROGRESS") == "1")


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
    from .io.video import VideoReader, VideoWriter

    with VideoReader(src, start_time=ctx.start_time, end_time=ctx.end_time, fps=ctx.fps) as reader:
        info = reader.info
        # Decoding runs ahead in its own thread (bounded), encoding behind in another.
        frames = prefetch(array_frames(iter(reader), str(src), ctx.max_res), size=8)
        first = next(frames, None)
        if first is None:
            raise ValueError(f"{src}: no video frames in the selected time range")
        out_fps = ctx.fps or info.fps
        start = ctx.start_time or 0.0
        writer = VideoWriter(dst, fps=out_fps, size_hw=first.size_hw, codec=ctx.codec, crf=ctx.crf, lossless=ctx.lossless,
                             audio_from=src if info.has_audio else None,
                             audio_start_s=start, audio_end_s=ctx.end_time)
        bar = progress_bar(total=info.num_frames, desc=src.name, position=position)

        def all_frames():
            yield first
            yield from frames

        try:
            with writer, BackgroundWriter(writer.write) as encoder:
                def emit(frame: Frame, result: torch.Tensor) -> bool:
                    encoder.submit(result.permute(1, 2, 0).numpy(), None if ctx.fps else frame.time_s)
                    if ctx.visualize and show(result) == ord("q"):
                        return False
                    return True

                stats = run_frames(all_frames(), ctx.process, emit, source_name=source_name, progress=bar,
                                   temporal=ctx.temporal(), detect_ahead=2)
        finally:
            bar.close()
            frames.close()
    ctx.stats.merge(stats)
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
    if same_file(src, dst) or src.resolve() == dst.resolve():
        raise ValueError(f"{dst}: output would overwrite the input; choose another -o")
    if kind is InputKind.IMAGE:
        anonymize_image_file(src, dst, ctx, source_name)
    else:
        anonymize_video_file(src, dst, ctx, source_name, position)


# --- folders ---------------------------------------------------------------------------------

def check_folders(input_dir: Path, output_dir: Path) -> None:
    """Raise ValueError when ``output_dir`` cannot receive the mirror of ``input_dir``."""
    if not input_dir.is_dir():
        raise ValueError(f"input {input_dir} is not a folder")
    if output_dir.resolve() == input_dir.resolve():
        raise ValueError(f"output folder {output_dir} is the input folder; choose another -o")
    if output_dir.exists() and not output_dir.is_dir():
        raise ValueError(f"output {output_dir} exists and is not a folder")


def list_dataset(input_dir: Path, output_dir: Path) -> tuple[list[str], list[Path]]:
    """Relative POSIX paths of the images and videos under ``input_dir`` (sorted; the output folder
    left out when it lies inside) and the other files, which are not anonymized."""
    media, skipped = list_media(input_dir, exclude=output_dir)
    return [path.relative_to(input_dir).as_posix() for path in media], skipped


def _may_pass_on_retry(error: Exception) -> bool:
    """Bad input (ImageError, undecodable video: ValueError) fails every time; I/O and memory may not."""
    return not isinstance(error, ValueError)


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
    src, dst = input_dir / relative, output_dir / relative
    record: dict[str, Any] = {"input": relative, "status": "failed", "input_sha256": None,
                              "settings_sha256": ctx.settings_sha256, "output": relative, "detections": {}, "frames": 0}
    try:
        record["input_sha256"] = file_sha256(src)
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
    the outputs of ``relatives``; returns how many. Call only while no worker writes there."""
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
                (folder / name).unlink(missing_ok=True)
                removed += 1
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
    not_media: list[Path] = field(default_factory=list)

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

    Made by :func:`dp2.cli.dataset_job`.

    Attributes:
        input_dir, output_dir: absolute folders (on a cluster, a filesystem every node mounts).
        params: the command's parameters by name (``dp2.cli.main``: ``config_path``,
            ``max_res``, ``seed`` ...), paths absolute.
    """

    input_dir: str
    output_dir: str
    params: Mapping[str, Any]

    @property
    def resume(self) -> bool:
        return bool(self.params.get("resume", True))

    @property
    def max_retries(self) -> int:
        return int(self.params.get("max_retries", 2))


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
        from .cli import worker_context  # the CLI's wiring, so both build the same pipeline

        self.job = job
        self.context = worker_context(job.params)
        self._input_dir, self._output_dir = Path(job.input_dir), Path(job.output_dir)

    def __call__(self, relative: str, previous: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return anonymize_one(self.context, self._input_dir, self._output_dir, relative, previous=previous)
