"""The Python API (dp2.load -> Pipeline) against the command line: the same frames, the same counts.

The corpus clip goes through ``dp2-anonymize`` (lossless FFV1, so decoded frames are the exact
RGB written), through ``Pipeline.stream`` and through ``Pipeline.anonymize_file``; every frame
and the number of faces filled in detection gaps must agree. The other tests use a fixed-box
detector (no model) so they run without the corpus.
"""
from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import dp2
from dp2.cli import main
from dp2.io.video import VideoReader

from helpers import CORPUS, make_image

CLIP = CORPUS / "videos" / "fr_short_hamilton_clip.mp4"
END_S = 1.2  # ~36 frames: a shot of the performer with gaps the tracker fills
CLASSIC = "traditional/face/gaussian"
BOX = (20, 16, 44, 40)  # the fixed_config detector's face


def run_cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def decoded(path: Path, end_time: float | None = None) -> list[np.ndarray]:
    with VideoReader(path, end_time=end_time) as reader:
        return [frame for frame, _ in reader]


def filled_count(output: str) -> int:
    found = re.search(r"incl\. (\d+) filled in detection gaps", output)
    return int(found.group(1)) if found else 0


@pytest.fixture(scope="module")
def cli_clip(tmp_path_factory):
    """The CLI's run of the first seconds of the corpus clip: frames, filled count, export."""
    if not CLIP.is_file():
        pytest.skip("../shared/corpus not found: real-media tests need it")
    root = tmp_path_factory.mktemp("api_clip")
    out, export = root / "cli.mkv", root / "cli.json"
    result = run_cli(CLASSIC, "-i", CLIP, "-o", out, "--et", END_S, "--lossless", "--export-detections", export,
                     "--device", "cpu")
    assert result.exit_code == 0, result.output
    return {"root": root, "frames": decoded(out), "filled": filled_count(result.output),
            "items": json.loads(export.read_text())["items"]}


@pytest.fixture(scope="module")
def classic():
    return dp2.load(CLASSIC, device="cpu")


def test_stream_gives_the_clis_frames_and_gap_fills(cli_clip, classic):
    with VideoReader(CLIP, end_time=END_S) as reader:
        source = [frame for frame, _ in reader]
    stream = classic.stream(iter(source), source=CLIP.name)
    results = list(stream)
    assert len(results) == len(cli_clip["frames"]) == len(source) > 20
    for i, (ours, theirs) in enumerate(zip(results, cli_clip["frames"])):
        assert ours.frame == i and isinstance(ours.image, np.ndarray)
        assert np.array_equal(ours.image, theirs), f"frame {i} differs from the CLI's"
    assert cli_clip["filled"] > 0, "the clip should exercise gap filling"
    assert stream.stats.filled == cli_clip["filled"]
    # What was anonymized per frame is the CLI's export, item for item (times aside: none given).
    items = [{k: v for k, v in item.items() if k != "time_s"} for item in cli_clip["items"]]
    assert [r.to_dict() for r in results] == items


def test_anonymize_file_is_the_clis_run(cli_clip, classic):
    out = cli_clip["root"] / "api.mkv"
    result = classic.anonymize_file(CLIP, out, end_time=END_S, lossless=True)
    assert result.output == out and result.stats.frames == len(cli_clip["frames"])
    assert result.stats.filled == cli_clip["filled"]
    frames = decoded(out)
    assert len(frames) == len(cli_clip["frames"])
    assert all(np.array_equal(a, b) for a, b in zip(frames, cli_clip["frames"]))


def test_module_level_anonymize_file_writes_the_export(cli_clip):
    out, export = cli_clip["root"] / "api2.mkv", cli_clip["root"] / "api2.json"
    dp2.anonymize_file(CLIP, out, config=CLASSIC, end_time=END_S, lossless=True, export_detections=export)
    assert json.loads(export.read_text())["items"] == cli_clip["items"]


# --- images of every kind (fixed detector: no model, no corpus) -------------------------------

@pytest.fixture
def fixed(fixed_config):
    return dp2.load(fixed_config)


def _masked(array: np.ndarray) -> bool:
    x0, y0, x1, y1 = BOX
    return bool((array[y0:y1, x0:x1] == 0).all())


def test_numpy_read_only_input_is_taken_without_a_warning_and_left_as_is(fixed):
    image = make_image(64, 80)
    image.setflags(write=False)
    before = image.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch warns on non-writable arrays
        result = fixed(image)
    assert isinstance(result.image, np.ndarray) and result.image.shape == (64, 80, 3)
    assert result.image.flags.writeable
    assert _masked(result.image) and np.array_equal(image, before)
    assert result.detections.count() == {"faces": 1}
    assert result.detections.faces.boxes_xyxy.tolist() == [list(BOX)]


def test_pil_and_torch_inputs_come_back_as_the_same_kind(fixed):
    array = make_image(64, 80)
    reference = fixed(array).image
    pil = fixed(Image.fromarray(array)).image
    assert isinstance(pil, Image.Image) and pil.mode == "RGB" and np.array_equal(np.asarray(pil), reference)
    grey = fixed(Image.fromarray(array).convert("L")).image  # any PIL mode is read as RGB
    assert isinstance(grey, Image.Image) and grey.size == (80, 64)
    tensor = torch.from_numpy(array).permute(2, 0, 1).contiguous()
    out = fixed(tensor).image
    assert isinstance(out, torch.Tensor) and out.dtype == torch.uint8 and out.shape == (3, 64, 80)
    assert np.array_equal(out.permute(1, 2, 0).numpy(), reference)
    assert np.array_equal(tensor.permute(1, 2, 0).numpy(), array), "the input tensor is not written"


def test_detect_then_anonymize_given_detections(fixed):
    image = make_image(64, 80)
    dets = fixed.detect(image)
    assert dets.count() == {"faces": 1}
    direct = fixed(image).image
    assert np.array_equal(fixed(image, detections=dets).image, direct)
    assert np.array_equal(fixed.anonymize(image, dets).image, direct)
    # An export item is accepted as well (the --detections format), and an empty one changes nothing.
    item = fixed(image).to_dict()
    assert np.array_equal(fixed(image, detections=item).image, direct)
    empty = {"size_hw": [64, 80], "faces": []}
    assert np.array_equal(fixed(image, detections=empty).image, image)


def test_to_dict_is_the_export_format(tmp_path, fixed_config, fixed):
    image = make_image(64, 80)
    path = tmp_path / "a.png"
    Image.fromarray(image).save(path)
    export = tmp_path / "dets.json"
    result = run_cli(fixed_config, "-i", path, "-o", tmp_path / "b.png", "--export-detections", export)
    assert result.exit_code == 0, result.output
    ours = fixed(image, source="a.png")
    assert json.loads(dp2.api.export_json([ours])) == json.loads(export.read_text())
    assert json.loads(ours.to_json()) == json.loads(export.read_text())["items"][0]
    assert ours.detections.to_dict() == {k: v for k, v in ours.to_dict().items() if k not in ("source", "frame")}


def test_anonymize_file_image_matches_the_cli(tmp_path, fixed_config, fixed):
    path = tmp_path / "a.png"
    Image.fromarray(make_image(64, 80)).save(path)
    assert run_cli(fixed_config, "-i", path, "-o", tmp_path / "cli.png").exit_code == 0
    result = fixed.anonymize_file(path, tmp_path / "api.png")
    assert result.stats.frames == 1 and result.stats.detections == {"faces": 1}
    assert (tmp_path / "api.png").read_bytes() == (tmp_path / "cli.png").read_bytes()


def test_folder_run_has_a_manifest_and_resumes(tmp_path, fixed):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    for rel in ("a.png", "sub/b.png"):
        Image.fromarray(make_image(40, 50)).save(src / rel)
    (src / "notes.txt").write_text("not media")
    first = fixed.anonymize_folder(src, tmp_path / "out")
    assert first.failures == [] and first.files_done == {"image": 2} and first.already_done == 0
    assert [p.name for p, _ in first.skipped] == ["notes.txt"]
    assert (tmp_path / "out" / "dp2_manifest.jsonl").is_file() and (tmp_path / "out" / "sub" / "b.png").is_file()
    again = fixed.anonymize_folder(src, tmp_path / "out")
    assert again.already_done == 2 and again.files_done == {}
    redo = fixed.anonymize_folder(src, tmp_path / "out", resume=False)
    assert redo.already_done == 0 and redo.files_done == {"image": 2}


SQUARE_CONFIG = """
from dp2.anonymizer import Anonymizer
from dp2.config import LazyCall as L
from dp2.generation.classic import MaskOut
from dp2.stages import RegionFilterStage
from helpers import SquareDetector

detector = L(SquareDetector)()
anonymizer = L(Anonymizer)(detector="${detector}", face=L(RegionFilterStage)(generator=L(MaskOut)(fill="black")))
"""


def test_stream_fills_detector_misses_and_keeps_the_input_kind(tmp_path):
    from helpers import moving_square_frames

    misses = (5, 11, 12)
    frames = moving_square_frames(n=16, misses=misses)
    config = tmp_path / "square.py"
    config.write_text(SQUARE_CONFIG)
    pipeline = dp2.load(config)
    tensors = [torch.from_numpy(f).permute(2, 0, 1).contiguous() for f in frames]
    stream = pipeline.stream(tensors, fps=10)
    results = list(stream)
    assert [r.frame for r in results] == list(range(16)) and results[3].time_s == pytest.approx(0.3)
    assert all(isinstance(r.image, torch.Tensor) for r in results)
    assert stream.stats.filled == len(misses)
    for r in results:  # the square is masked in every frame, the missed ones included
        x = 4 + 2 * r.frame
        assert (r.image[:, 20:32, x:x + 12] == 0).all(), f"frame {r.frame} left the square"
        assert len(r.detections) == 1
    # Without gap filling the missed frames keep their square.
    plain = list(pipeline.stream(tensors, temporal_fill=0))
    assert not (plain[5].image[:, 20:32, 14:26] == 0).all()


# --- bad inputs -------------------------------------------------------------------------------

@pytest.mark.parametrize("image, error, message", [
    (np.zeros((64, 80), np.uint8), ValueError, r"RGB uint8 array \[H, W, 3\], got uint8 \[64, 80\]"),
    (np.zeros((64, 80, 3), np.float32), ValueError, "got float32"),
    (np.zeros((64, 80, 4), np.uint8), ValueError, r"got uint8 \[64, 80, 4\]"),
    (np.zeros((0, 80, 3), np.uint8), ValueError, "non-empty"),
    (torch.zeros(64, 80, 3, dtype=torch.uint8), ValueError, r"torch uint8 tensor \[3, H, W\], got torch.uint8 \[64, 80, 3\]"),
    (torch.zeros(3, 64, 80), ValueError, "got torch.float32"),
    ([[0, 0, 0]], TypeError, "got builtins.list"),
    ("photo.jpg", TypeError, "got builtins.str"),
])
def test_bad_images_are_refused_with_what_was_expected(fixed, image, error, message):
    with pytest.raises(error, match=message):
        fixed(image)


def test_bad_detections_and_options_are_refused(fixed, fixed_config, tmp_path):
    image = make_image(64, 80)
    with pytest.raises(ValueError, match="does not match the image's"):
        fixed(image, detections={"size_hw": [10, 10], "faces": []})
    with pytest.raises(TypeError, match="detections must be"):
        fixed(image, detections=[[0, 0, 10, 10]])
    with pytest.raises(TypeError, match="did you mean max_res"):
        dp2.load(fixed_config, max_resolution=5)
    with pytest.raises(ValueError, match=r"max_res=0 \(--max-res\)"):
        dp2.load(fixed_config, max_res=0)
    with pytest.raises(ValueError, match="expected cpu, cuda, cuda:N or mps"):
        dp2.load(fixed_config, device="gpu")
    with pytest.raises(ValueError, match="unknown config|not found|no such"):
        dp2.load("traditional/face/no_such_filter")
    with pytest.raises(TypeError, match="set when loading"):
        fixed.anonymize_file(tmp_path / "a.png", tmp_path / "b.png", dst=0.5)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        fixed.anonymize_file(tmp_path / "missing.png", tmp_path / "b.png")
    path = tmp_path / "a.png"
    Image.fromarray(image).save(path)
    with pytest.raises(ValueError, match="output suffix"):
        fixed.anonymize_file(path, tmp_path / "b.mp4")
    with pytest.raises(ValueError, match="never overwrites an input"):
        fixed.anonymize_file(path, path)
    with pytest.raises(ValueError, match="apply to videos"):
        fixed.anonymize_file(path, tmp_path / "b.png", start_time=1.0)
    with pytest.raises(ValueError, match="every frame of a stream needs one size"):
        list(fixed.stream([image, make_image(32, 32)]))


def test_overrides_are_those_of_opt(fixed_config):
    pipeline = dp2.load(fixed_config, overrides=["anonymizer.face.generator.fill=white"])
    out = pipeline(make_image(64, 80)).image
    x0, y0, x1, y1 = BOX
    assert (out[y0:y1, x0:x1] == 255).all()


def test_run_options_round_trip_and_name_the_flag():
    options = dp2.RunOptions(max_res=512, opts=["a=1"], weights_dir="w", seed=7)
    assert options.opts == ("a=1",) and options.weights_dir == Path("w")
    assert dp2.RunOptions.from_dict(json.loads(json.dumps(options.to_dict()))) == options
    assert dp2.RunOptions.spec("start_time").decls == ("--start-time", "--st")
    with pytest.raises(ValueError, match=r"crf=99 \(--crf\): 99 is not in the range 0<=x<=63"):
        dp2.RunOptions(crf=99)


def test_old_helpers_still_work(fixed_config):
    from dp2.api import anonymize_array, anonymize_arrays, build_anonymizer

    model = build_anonymizer(fixed_config)
    image = make_image(64, 80)
    out = anonymize_array(model, image)
    assert _masked(out)
    with pytest.warns(DeprecationWarning, match="stream"):
        outs = list(anonymize_arrays(model, [image, image]))
    assert len(outs) == 2 and all(np.array_equal(o, out) for o in outs)


def test_importing_dp2_and_its_api_is_light():
    import subprocess
    import sys

    from helpers import REPO

    code = ("import sys, dp2, dp2.api; dp2.load; dp2.Pipeline; "
            "print(sorted(m for m in ('torch', 'cv2', 'av', 'onnxruntime', 'click') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={"PYTHONPATH": str(REPO), "PATH": ""})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_video_options_given_to_load_do_not_stop_still_images(fixed_config):
    pipeline = dp2.load(fixed_config, end_time=2.0, temporal_fill=2)
    assert _masked(pipeline(make_image(64, 80)).image)


def test_the_run_layer_and_the_api_never_import_click():
    """Click belongs to dp2.cli: the run layer and the API raise RunUsageError, which the CLI maps."""
    import ast

    from helpers import REPO

    for name in ("run.py", "options.py", "api.py"):
        tree = ast.parse((REPO / "dp2" / name).read_text(encoding="utf-8"))
        for node in ast.walk(tree):  # lazy imports too
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any(m == "click" or m.startswith("click.") or m.endswith("cli") for m in modules), \
                f"dp2/{name} imports {modules}"


def test_anonymize_file_video_keeps_the_audio_and_every_frame(tmp_path, fixed):
    import av

    from media_factory import N, make_clip

    clip = make_clip(tmp_path / "clip.mp4")
    result = fixed.anonymize_file(clip, tmp_path / "out.mp4")
    assert result.stats.frames == N and result.stats.detections == {"faces": N}
    with av.open(str(tmp_path / "out.mp4")) as container:
        assert len(container.streams.audio) == 1, "the audio track is copied"
    frames = decoded(tmp_path / "out.mp4")
    x0, y0, x1, y1 = BOX
    assert len(frames) == N and all(f[y0 + 2:y1 - 2, x0 + 2:x1 - 2].max() < 40 for f in frames)
