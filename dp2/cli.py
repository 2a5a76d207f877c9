"""``anonymize.py CONFIG -i INPUT -o OUTPUT``: DeepPrivacy2's command line, made dependable.

The CLI parses options, wires components, shows progress and sets the exit code:
0 = everything anonymized, 1 = some inputs failed (listed at the end), 2 = usage error.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import click
import torch

from .anonymizer import Anonymizer, SynthesisOptions
from .api import build_anonymizer, load_anonymizer_config
from .config import ConfigError, apply_overrides, config_to_yaml
from .generation.latents import LatentSampler
from .io.detection_files import DetectionCache, DetectionExport, GivenDetections
from .io.images import IMAGE_SUFFIXES, ImageError, load_image, resize_max_res, save_image
from .io.manifest import RunManifest, file_seed, file_sha256
from .io.sources import VIDEO_SUFFIXES, InputKind, array_frames, classify_path, list_media
from .runner import FrameProcessor, LoopStats, TemporalStage, run_frames
from .structures import Frame
from .detection.base import DEVICE_ENV_VAR, resolve_device
from .weights import VERIFY_ENV_VAR, WEIGHTS_ENV_VAR, WeightsError

logger = logging.getLogger("dp2")

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _progress(total=None, desc="", unit="frame", leave=False, position=0):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, leave=leave, position=position, dynamic_ncols=True,
                disable=not sys.stderr.isatty() or os.environ.get("DP2_NO_PROGRESS") == "1")


def default_output_path(input_path: Path, kind: InputKind) -> Path:
    """``<stem>_anonymized<ext>`` next to a file, ``<dir>_anonymized/`` next to a folder."""
    if kind is InputKind.FOLDER:
        return input_path.with_name(f"{input_path.name}_anonymized")
    return input_path.with_name(f"{input_path.stem}_anonymized{input_path.suffix}")


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


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
    temporal_fill: int = 5
    temporal_fill_given: bool = False
    track: bool = False
    full_detection_every: int = 1
    seed: int = 0
    resume: bool = True
    settings_sha256: str = ""
    stats: LoopStats = field(default_factory=LoopStats)

    def temporal(self, max_gap: int | None = None) -> TemporalStage:
        """Fresh tracking state for one stream (a video or the webcam)."""
        gap = self.temporal_fill if max_gap is None else max_gap
        return TemporalStage(next_seed=self.process.next_seed, max_gap=gap, track_seeds=self.track,
                             full_detection_every=self.full_detection_every if gap + 1 >= self.full_detection_every else 1)


# --- one input of each kind ------------------------------------------------------------------

def _show(image: torch.Tensor, title: str = "dp2", wait: int = 1) -> int:
    import cv2

    cv2.imshow(title, image.permute(1, 2, 0).numpy()[:, :, ::-1])
    return cv2.waitKey(wait) & 0xFF


def anonymize_image_file(src: Path, dst: Path, ctx: RunContext, source_name: str) -> None:
    image, meta = load_image(src)
    processed = resize_max_res(image, ctx.max_res)
    frame = Frame(image=processed, index=0, source=str(src))
    result, dets = ctx.process(frame, source_name)
    ctx.stats.add(dets)
    if ctx.visualize:
        while True:
            key = _show(result, wait=0)
            if key == ord("u"):
                result, _ = ctx.process(frame, source_name)
                continue
            break
    save_image(dst, result, meta, original=processed, keep_metadata=ctx.keep_metadata)


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
        bar = _progress(total=info.num_frames, desc=src.name, position=position)

        def all_frames():
            yield first
            yield from frames

        try:
            with writer, BackgroundWriter(writer.write) as encoder:
                def emit(frame: Frame, result: torch.Tensor) -> bool:
                    encoder.submit(result.permute(1, 2, 0).numpy(), None if ctx.fps else frame.time_s)
                    if ctx.visualize and _show(result) == ord("q"):
                        return False
                    return True

                stats = run_frames(all_frames(), ctx.process, emit, source_name=source_name, progress=bar,
                                   temporal=ctx.temporal())
        finally:
            bar.close()
            frames.close()
    ctx.stats.merge(stats)
    logger.info("%s: %d frames at %.1f frames/s, detections %s, %d filled in gaps, %d shot cuts",
                src, stats.frames, stats.fps, stats.detections, stats.filled, stats.shot_cuts)


def _anonymize_file(src: Path, dst: Path, kind: InputKind, ctx: RunContext, source_name: str, position: int = 0) -> None:
    if _same_file(src, dst) or src.resolve() == dst.resolve():
        raise ValueError(f"{dst}: output would overwrite the input; choose another -o")
    if kind is InputKind.IMAGE:
        anonymize_image_file(src, dst, ctx, source_name)
    else:
        anonymize_video_file(src, dst, ctx, source_name, position)


def anonymize_folder(src: Path, dst: Path, ctx: RunContext) -> list[tuple[Path, str]]:
    """Mirror ``src`` into ``dst``; returns the files that failed with their reasons."""
    if dst.resolve() == src.resolve():
        raise click.UsageError(f"output folder {dst} is the input folder; choose another -o")
    if dst.exists() and not dst.is_dir():
        raise click.UsageError(f"output {dst} exists and is not a folder")
    media, skipped = list_media(src, exclude=dst)
    for path in skipped:
        click.echo(f"skipped (not an image or video): {path}", err=True)
    dst.mkdir(exist_ok=True)
    manifest = RunManifest(dst, ctx.settings_sha256)
    failures: list[tuple[Path, str]] = []
    already_done = 0
    bar = _progress(total=len(media), desc="files", unit="file", leave=True)
    for path in media:
        rel = path.relative_to(src)
        out = dst / rel
        try:
            digest = file_sha256(path)
        except OSError as e:
            failures.append((path, f"cannot read: {e.strerror or e}"))
            bar.update(1)
            continue
        if ctx.resume and manifest.is_done(rel.as_posix(), digest, out):
            already_done += 1
            bar.update(1)
            continue
        # Each file's latents depend only on --seed and its path, not on what ran before it.
        ctx.process.next_seed = LatentSampler(file_seed(ctx.seed, rel.as_posix())).next_seed
        before = dict(ctx.stats.detections)
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            _anonymize_file(path, out, classify_path(path), ctx, rel.as_posix(), position=1)
        except (KeyboardInterrupt, WeightsError):
            raise  # not about this file: stop the run
        except Exception as e:  # one broken file must not stop a folder run
            reason = str(e) or type(e).__name__
            logger.debug("failure on %s", path, exc_info=True)
            failures.append((path, reason))
            manifest.record(rel.as_posix(), status="failed", input_sha256=digest, output=rel.as_posix(), error=reason)
            click.echo(f"failed: {reason if str(path) in reason else f'{path}: {reason}'}", err=True)
        else:
            counts = {k: n - before.get(k, 0) for k, n in ctx.stats.detections.items()}
            manifest.record(rel.as_posix(), status="ok", input_sha256=digest, output=rel.as_posix(), detections=counts)
        bar.update(1)
    bar.close()
    if already_done:
        click.echo(f"{already_done} file(s) already done in an earlier run (see {manifest.path.name}); skipped",
                   err=True)
    return failures


def run_webcam(index: int, ctx: RunContext, capture_factory: Callable | None = None) -> None:
    from .io.webcam import WebcamSource, WindowSink

    source = WebcamSource(index, max_res=ctx.max_res, capture_factory=capture_factory)
    sink = WindowSink(title="dp2 (q quits)")
    try:
        # Gap filling holds frames back; live, only when asked for (--temporal-fill).
        stats = run_frames(source, ctx.process, sink, source_name=f"webcam:{index}",
                           temporal=ctx.temporal(ctx.temporal_fill if ctx.temporal_fill_given else 0))
    finally:
        source.close()
        sink.close()
    ctx.stats.merge(stats)


# --- option checks ---------------------------------------------------------------------------

def _check_capabilities(anonymizer: Anonymizer, config_path: Path, *, truncation: float | None, mt: bool,
                        amp_given: bool, track: bool, kind: InputKind | None) -> None:
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
    from .config import load_config

    for flag, value, key in (("--person-generator", person_generator, "person"),
                             ("--cse-person-generator", cse_person_generator, "cse_person")):
        if value is None:
            continue
        stage = cfg.anonymizer.get(key)
        if stage is None or "generator" not in stage:
            raise click.UsageError(f"{flag}: this config has no {key.replace('_', ' ')} stage to replace the generator of")
        try:
            other = load_config(value)
        except ConfigError as e:
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


def _setup_logging(quiet: bool, debug: bool) -> None:
    level = logging.DEBUG if debug else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr, force=True)


# --- the command -----------------------------------------------------------------------------

@click.command(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.argument("config_path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
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
              help="Video: first second to process; the output holds only the chosen range.")
@click.option("--end-time", "--et", "end_time", type=click.FloatRange(min=0), default=None,
              help="Video: second to stop at (exclusive).")
@click.option("--fps", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Video: output frame rate (frames picked at n/fps). Default: the source's timing.")
@click.option("--detection-score-threshold", "--dst", "dst", type=click.FloatRange(0, 1), default=None,
              help="Detector score threshold (sets detector.score_threshold). Default: the config's value.")
@click.option("--visualize-detection", "--vd", "visualize_detection", is_flag=True,
              help="Draw boxes, scores and landmarks instead of anonymizing.")
@click.option("--multi-modal-truncation", "--mt", "multi_modal_truncation", is_flag=True,
              help="Truncate latents towards cluster centres (generators with w_centers).")
@click.option("--cache", is_flag=True,
              help="Reuse detections stored per image content and detector settings (JSON, no pickle).")
@click.option("--cache-dir", type=click.Path(path_type=Path), default=None,
              help="Folder for --cache. Default: $DP2_CACHE_DIR or ~/.cache/dp2/detections.")
@click.option("--amp/--no-amp", default=True, help="Mixed precision for generators on CUDA (no effect on CPU).")
@click.option("-t", "--truncation_value", type=click.FloatRange(0, 1), default=None,
              help="Truncation: 0 = average identity (DeepPrivacy2's default), 1 = most diverse.")
@click.option("--track", is_flag=True, help="Keep one identity per tracked person in videos.")
@click.option("--temporal-fill", type=click.IntRange(min=0), default=None,
              help="Videos: anonymize a face also in gaps of up to N frames where the detector missed it "
                   "(interpolated box; holds N frames back). 0 disables. Default: 5 for videos, 0 for --webcam.")
@click.option("--full-detection-every", type=click.IntRange(min=1), default=1, metavar="N",
              help="Videos: run the detector's full mode (CenterFace's small-face pass) every N frames and its "
                   "single pass in between; gap filling bridges the frames between (N <= --temporal-fill + 1). "
                   "Faster; a tiny face seen only between full passes can be missed.")
@click.option("--seed", type=int, default=0, help="Seed for the per-detection latent seeds.")
@click.option("--person-generator", default=None, help="Generator config for persons without CSE.")
@click.option("--cse-person-generator", default=None, help="Generator config for persons with CSE.")
@click.option("--webcam", type=int, is_flag=False, flag_value=0, default=None, metavar="[INDEX]",
              help="Anonymize a webcam live (device INDEX, default 0); q quits.")
@click.option("--resume/--no-resume", default=True,
              help="Folders: skip files an earlier run with the same settings already finished "
                   "(dp2_manifest.jsonl in the output folder).")
@click.option("--opt", "opts", multiple=True, metavar="KEY=VALUE",
              help="Override any config value, e.g. --opt detector.score_threshold=0.5 (repeatable).")
@click.option("--print-config", is_flag=True, help="Print the resolved config and exit.")
@click.option("--keep-metadata", is_flag=True, help="Keep EXIF (incl. GPS!) in output images. Default: stripped.")
@click.option("--export-detections", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write every detection per image/frame to this JSON file.")
@click.option("--detections", "detections_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Use detections from this JSON file (the --export-detections format) instead of a detector.")
@click.option("--weights-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder with model weights under their official file names (also $DP2_WEIGHTS_DIR); "
                   "searched before the torch hub cache. Nothing is downloaded if the files are there.")
@click.option("--no-verify-weights", is_flag=True,
              help="Accept local weight files without checking their md5/sha256 (own or test checkpoints).")
@click.option("--device", default=None, help="cpu, cuda, cuda:1, mps for every model. Default: CUDA if available.")
@click.option("--codec", default=None, help="Video codec (e.g. libx264, libx265, libvpx-vp9). Default: by extension.")
@click.option("--crf", type=click.IntRange(0, 63), default=None, help="Video quality (x264/x265 CRF; lower = better).")
@click.option("--lossless", is_flag=True, help="Lossless video (x264 qp 0 / FFV1 / VP9 lossless): for datasets.")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors.")
@click.option("--debug", is_flag=True, help="Debug logging.")
@click.pass_context
def main(ctx: click.Context, config_path: Path, input_path: Path | None, output_path: Path | None, visualize: bool,
         max_res: int | None, start_time: float | None, end_time: float | None, fps: float | None,
         dst: float | None, visualize_detection: bool, multi_modal_truncation: bool, cache: bool,
         cache_dir: Path | None, amp: bool, truncation_value: float | None, track: bool,
         temporal_fill: int | None, full_detection_every: int, seed: int,
         person_generator: str | None, cse_person_generator: str | None, webcam: int | None, resume: bool,
         opts: tuple[str, ...],
         print_config: bool, keep_metadata: bool, export_detections: Path | None, detections_file: Path | None,
         weights_dir: Path | None, no_verify_weights: bool, device: str | None, codec: str | None, crf: int | None,
         lossless: bool, quiet: bool, debug: bool) -> None:
    """Anonymize every person in an image, a folder, a video or a webcam stream.

    \b
    Examples:
      anonymize.py configs/anonymizers/traditional/face/gaussian.py -i media/astronaut.png -o out.png
      anonymize.py configs/anonymizers/traditional/face/pixelation16.py -i photos/ -o photos_anon/
      anonymize.py configs/anonymizers/traditional/face/maskout_black.py -i clip.mp4 --st 5 --et 10
      anonymize.py configs/anonymizers/traditional/face/gaussian.py --webcam
    """
    _setup_logging(quiet, debug)
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
        if not input_path.exists():
            raise click.BadParameter(f"{input_path} does not exist", param_hint="-i/--input_path")
        kind = classify_path(input_path)
        if kind is None:
            raise click.BadParameter(f"{input_path}: not an image ({', '.join(IMAGE_SUFFIXES)}), "
                                     f"video ({', '.join(VIDEO_SUFFIXES)}) or folder", param_hint="-i/--input_path")
    if kind is InputKind.IMAGE and any(v is not None for v in (start_time, end_time, fps)):
        raise click.UsageError("--start-time/--end-time/--fps apply to videos, not to an image")
    if start_time is not None and end_time is not None and end_time <= start_time:
        raise click.UsageError(f"--end-time ({end_time}) must be after --start-time ({start_time})")
    gap = temporal_fill if temporal_fill is not None else (0 if kind is InputKind.WEBCAM else 5)
    if full_detection_every > gap + 1:
        raise click.UsageError(f"--full-detection-every {full_detection_every} needs --temporal-fill >= "
                               f"{full_detection_every - 1} to bridge the frames between full passes (now {gap})")
    if detections_file is not None and cache:
        raise click.UsageError("--detections and --cache exclude each other (given detections need no cache)")

    output = None
    if kind in (InputKind.IMAGE, InputKind.VIDEO, InputKind.FOLDER):
        output = output_path if output_path is not None else default_output_path(input_path, kind)
        if kind is not InputKind.FOLDER and output.is_dir():
            output = output / input_path.name
        if kind is not InputKind.FOLDER:
            if output.suffix.lower() not in (IMAGE_SUFFIXES if kind is InputKind.IMAGE else VIDEO_SUFFIXES):
                raise click.BadParameter(f"{output}: the output suffix must be one of "
                                         f"{', '.join(IMAGE_SUFFIXES if kind is InputKind.IMAGE else VIDEO_SUFFIXES)}",
                                         param_hint="-o/--output_path")
            if _same_file(input_path, output):
                raise click.BadParameter(f"{output} is the input file; dp2 never overwrites an input",
                                         param_hint="-o/--output_path")
        parent = output.parent
        if not parent.is_dir():
            raise click.BadParameter(f"folder {parent} does not exist (create it first)", param_hint="-o/--output_path")
        if not os.access(parent, os.W_OK):
            raise click.BadParameter(f"folder {parent} is not writable", param_hint="-o/--output_path")

    # Config: load, override, print or build.
    try:
        cfg = load_anonymizer_config(config_path)
        overrides = list(opts)
        if dst is not None:
            if "detector" not in cfg:
                raise ConfigError(f"--dst: {config_path.name} has no top-level 'detector' to set the threshold of")
            cfg.detector.score_threshold = dst  # added when the config relies on the default
        apply_overrides(cfg, overrides)
    except ConfigError as e:
        raise click.UsageError(str(e)) from e
    _person_overrides(cfg, person_generator, cse_person_generator)
    if print_config:
        click.echo(config_to_yaml(cfg))
        return
    env = {}
    if weights_dir is not None:
        if not weights_dir.is_dir():
            raise click.BadParameter(f"{weights_dir} is not a folder", param_hint="--weights-dir")
        env[WEIGHTS_ENV_VAR] = str(weights_dir)
    if no_verify_weights:
        env[VERIFY_ENV_VAR] = "0"
    if device is not None:
        try:
            resolve_device(device)
        except (RuntimeError, ValueError) as e:
            raise click.BadParameter(str(e), param_hint="--device") from e
        env[DEVICE_ENV_VAR] = device  # every model of the run: detectors and generators
    # Detectors load their weights lazily, on the first frame: keep these for the whole run.
    ctx.with_resource(_environment(env))
    try:
        anonymizer = build_anonymizer(cfg)
    except ConfigError as e:
        raise click.UsageError(str(e)) from e
    except WeightsError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(EXIT_FAILED)
    _check_capabilities(anonymizer, config_path, truncation=truncation_value, mt=multi_modal_truncation,
                        amp_given=amp_given, track=track, kind=kind)
    logger.info("config %s, generators %s", config_path, {k: type(g).__name__ for k, g in anonymizer.generators.items()})

    try:
        given = GivenDetections(detections_file) if detections_file is not None else None
        export = DetectionExport(export_detections) if export_detections is not None else None
    except ValueError as e:
        raise click.UsageError(str(e)) from e
    store = None
    if cache:
        root = cache_dir or Path(os.environ.get("DP2_CACHE_DIR", Path.home() / ".cache" / "dp2" / "detections"))
        detector_node = cfg.anonymizer.get("detector")
        store = DetectionCache(root, config_to_yaml(detector_node, resolve=True) if detector_node is not None else "")
    sampler = LatentSampler(seed)
    options = SynthesisOptions(truncation_value=truncation_value or 0.0,
                               multi_modal_truncation=multi_modal_truncation, amp=amp)
    process = FrameProcessor(anonymizer, next_seed=sampler.next_seed, options=options,
                             visualize_detections=visualize_detection, cache=store, given=given, export=export)
    run = RunContext(process=process, max_res=max_res, keep_metadata=keep_metadata, visualize=visualize,
                     start_time=start_time, end_time=end_time, fps=fps, codec=codec, crf=crf, lossless=lossless,
                     temporal_fill=5 if temporal_fill is None else temporal_fill,
                     temporal_fill_given=temporal_fill is not None, track=track, seed=seed, resume=resume,
                     full_detection_every=full_detection_every,
                     settings_sha256=_settings_digest(cfg, seed=seed, t=truncation_value, mt=multi_modal_truncation,
                                                      max_res=max_res, st=start_time, et=end_time, fps=fps,
                                                      codec=codec, crf=crf, lossless=lossless,
                                                      temporal_fill=temporal_fill, track=track, vd=visualize_detection,
                                                      full_detection_every=full_detection_every,
                                                      keep_metadata=keep_metadata, detections=detections_file))

    failures: list[tuple[Path, str]] = []
    try:
        if kind is InputKind.WEBCAM:
            run_webcam(webcam, run)
        elif kind is InputKind.FOLDER:
            failures = anonymize_folder(input_path, output, run)
        else:
            try:
                _anonymize_file(input_path, output, kind, run, input_path.name)
            except (ImageError, ValueError, OSError) as e:
                failures.append((input_path, str(e)))
    except KeyboardInterrupt:
        click.echo("interrupted: partial outputs were removed", err=True)
        sys.exit(130)
    except WeightsError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(EXIT_FAILED)
    finally:
        if export is not None:
            export.write()

    stats = run.stats
    if kind is not InputKind.WEBCAM and stats.frames:
        summary = ", ".join(f"{n} {k}" for k, n in stats.detections.items())
        if stats.filled:
            summary += f" (incl. {stats.filled} filled in detection gaps)"
        click.echo(f"anonymized {stats.frames} frame(s): {summary}" + (f" -> {output}" if output is not None else ""),
                   err=True)
    if failures:
        if kind is InputKind.FOLDER:
            click.echo(f"{len(failures)} file(s) failed:", err=True)
            for path, reason in failures:
                click.echo(f"  {path}: {reason}", err=True)
        else:
            click.echo(f"error: {failures[0][1]}", err=True)
        sys.exit(EXIT_FAILED)


def _settings_digest(cfg, **options) -> str:
    """Everything besides the input that decides an output: the resolved config and the options."""
    import hashlib
    import json

    detections = options.get("detections")
    if detections is not None:
        options["detections"] = file_sha256(Path(detections))
    text = config_to_yaml(cfg) + json.dumps(options, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()
