"""Video-only behaviour: gap filling through the CLI, stable seeds per track, shot-cut resets."""
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from dp2.cli import main
from dp2.io.video import VideoReader, VideoWriter
from dp2.runner import TemporalStage
from dp2.structures import Detections, FaceDetections, Frame

from helpers import moving_square_frames

MISSES = (5, 11, 12, 20)

CONFIG = """
from dp2.anonymizer import Anonymizer
from dp2.config import LazyCall as L
from dp2.generation.classic import MaskOut
from dp2.stages import RegionFilterStage
from helpers import SquareDetector

detector = L(SquareDetector)()
anonymizer = L(Anonymizer)(detector="${detector}", face=L(RegionFilterStage)(generator=L(MaskOut)(fill="black")))
"""


@pytest.fixture
def clip(tmp_path):
    path = tmp_path / "square.mkv"
    with VideoWriter(path, fps=25, size_hw=(64, 96), lossless=True) as writer:
        for frame in moving_square_frames(misses=MISSES):
            writer.write(frame)
    (tmp_path / "cfg.py").write_text(CONFIG)
    return path


def leaked_frames(path):
    leaks = []
    with VideoReader(path) as reader:
        for i, (frame, _) in enumerate(reader):
            x = 4 + 2 * i
            if frame[22:30, x + 2:x + 10].mean() > 100:  # lossy encode: white (leak) vs black
                leaks.append(i)
    return leaks


def test_missed_frames_are_filled(clip, tmp_path):
    runner = CliRunner()
    off = runner.invoke(main, [str(tmp_path / "cfg.py"), "-i", str(clip), "-o", str(tmp_path / "off.mkv"),
                               "--temporal-fill", "0"], catch_exceptions=False)
    assert off.exit_code == 0, off.output
    assert leaked_frames(tmp_path / "off.mkv") == list(MISSES), "without filling, the misses leak"
    export = tmp_path / "anonymized.json"
    on = runner.invoke(main, [str(tmp_path / "cfg.py"), "-i", str(clip), "-o", str(tmp_path / "on.mkv"),
                              "--export-detections", str(export)], catch_exceptions=False)
    assert on.exit_code == 0, on.output
    assert leaked_frames(tmp_path / "on.mkv") == [], "every frame must be anonymized"
    assert "4 filled in detection gaps" in on.output
    # The export lists what was anonymized, filled boxes included: a face in every frame.
    items = json.loads(export.read_text())["items"]
    assert [len(item["faces"]) for item in items] == [1] * len(items)


def _dets(box, size_hw=(64, 96)):
    boxes = torch.tensor([box]) if box is not None else torch.zeros(0, 4, dtype=torch.int64)
    return Detections(image_size_hw=size_hw, faces=FaceDetections(boxes_xyxy=boxes, scores=torch.ones(len(boxes)),
                                                                  image_size_hw=size_hw))


def test_track_seeds_stay_fixed_and_reset_at_cuts():
    counter = iter(range(1000, 2000))
    stage = TemporalStage(next_seed=lambda: next(counter), max_gap=2, track_seeds=True)
    frames = moving_square_frames(n=12, misses=(4,))
    released = []
    for i, arr in enumerate(frames):
        image = torch.from_numpy(arr).permute(2, 0, 1).contiguous()
        box = None if i == 4 else [4 + 2 * i, 20, 16 + 2 * i, 32]
        released += stage.push(Frame(image=image, index=i), _dets(box))
    released += stage.flush()
    assert [f.index for f, _, _ in released] == list(range(12))
    seeds = [s["faces"] for _, d, s in released]
    assert all(len(s) == 1 for s in seeds), "the missed frame 4 got a filled face"
    assert len({s[0] for s in seeds}) == 1, "one identity along the track"
    # A shot cut (a completely different picture) starts new tracks and new seeds.
    other = torch.zeros(3, 64, 96, dtype=torch.uint8)
    after = []
    for i in range(12, 16):
        after += stage.push(Frame(image=other, index=i), _dets([40, 20, 52, 32]))
    after += stage.flush()
    assert stage.stats.shot_cuts == 1
    assert {s["faces"][0] for _, _, s in after}.isdisjoint({seeds[0][0]})


def test_track_needs_a_generative_config(clip, tmp_path):
    result = CliRunner().invoke(main, [str(tmp_path / "cfg.py"), "-i", str(clip), "--track"])
    assert result.exit_code == 2 and "classic filters" in result.output


class CountingDetector:
    """Fixed face; counts full and fast calls."""

    def __init__(self):
        self.full = self.fast = 0

    def _dets(self, image):
        size = tuple(image.shape[1:])
        return FaceDetections(boxes_xyxy=torch.tensor([[10, 10, 30, 30]]), scores=torch.ones(1), image_size_hw=size)

    def __call__(self, image):
        self.full += 1
        return self._dets(image)

    def detect_fast(self, image):
        self.fast += 1
        return self._dets(image)


def test_full_detection_every_n_frames():
    from dp2.anonymizer import Anonymizer
    from dp2.generation.classic import MaskOut
    from dp2.runner import FrameProcessor, run_frames
    from dp2.stages import RegionFilterStage

    detector = CountingDetector()
    anonymizer = Anonymizer(detector=detector, face=RegionFilterStage(generator=MaskOut()))
    process = FrameProcessor(anonymizer, next_seed=lambda: 0)
    frames = [Frame(image=torch.full((3, 40, 40), 100, dtype=torch.uint8), index=i) for i in range(9)]
    stats = run_frames(frames, process, lambda f, r: None,
                       temporal=TemporalStage(next_seed=lambda: 0, max_gap=5, full_detection_every=3))
    assert (detector.full, detector.fast) == (3, 6) and stats.frames == 9
    with pytest.raises(ValueError, match="max_gap"):
        TemporalStage(next_seed=lambda: 0, max_gap=1, full_detection_every=3)


def test_faces_only_full_passes_find_are_covered_between_them():
    # A small face that only the full mode finds, moving too fast for the tracker to link one
    # full pass to the next (no overlap 4 frames later): every frame must still be covered.
    stage = TemporalStage(next_seed=lambda: 0, max_gap=5, full_detection_every=4)
    image = torch.zeros(3, 64, 96, dtype=torch.uint8)
    released = []
    for i in range(13):
        box = [5 * i, 10, 5 * i + 8, 18] if i % 4 == 0 else None  # fast frames see nothing
        released += stage.push(Frame(image=image, index=i), _dets(box))
    released += stage.flush()
    assert [f.index for f, _, _ in released] == list(range(13))
    assert [len(d.faces) >= 1 for _, d, _ in released] == [True] * 13


def test_full_detection_every_needs_gap_filling(clip, tmp_path):
    result = CliRunner().invoke(main, [str(tmp_path / "cfg.py"), "-i", str(clip), "--full-detection-every", "4",
                                       "--temporal-fill", "2"])
    assert result.exit_code == 2 and "--temporal-fill >= 3" in result.output


@pytest.mark.parametrize("args, full", [((), 5), (("--temporal-fill", "2"), 10), (("--full-detection-every", "1"), 30)])
def test_default_schedule_uses_the_fast_mode_and_leaks_nothing(clip, tmp_path, args, full):
    from helpers import FastModeSquareDetector

    (tmp_path / "fast_cfg.py").write_text(CONFIG.replace("SquareDetector", "FastModeSquareDetector"))
    FastModeSquareDetector.calls.update(full=0, fast=0)
    out = tmp_path / "out.mkv"
    result = CliRunner().invoke(main, [str(tmp_path / "fast_cfg.py"), "-i", str(clip), "-o", str(out), *args],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    # 30 frames: the full mode every 6th frame by default, every (fill + 1)-th with a shorter fill.
    assert FastModeSquareDetector.calls == {"full": full, "fast": 30 - full}
    assert leaked_frames(out) == []


def test_detecting_ahead_in_a_thread_changes_nothing():
    from dp2.anonymizer import Anonymizer
    from dp2.generation.classic import MaskOut
    from dp2.runner import FrameProcessor, run_frames
    from dp2.stages import RegionFilterStage

    from helpers import FastModeSquareDetector

    frames = [Frame(image=torch.from_numpy(a).permute(2, 0, 1).contiguous(), index=i)
              for i, a in enumerate(moving_square_frames(n=20))]
    results = {}
    for ahead in (0, 2):
        process = FrameProcessor(Anonymizer(detector=FastModeSquareDetector(), face=RegionFilterStage(
            generator=MaskOut(fill="black"))), next_seed=lambda: 0)
        out = []
        stats = run_frames(frames, process, lambda f, r: out.append((f.index, r)), detect_ahead=ahead,
                           temporal=TemporalStage(next_seed=lambda: 0, max_gap=5, full_detection_every=3))
        results[ahead] = (out, stats.filled)
    (a, filled_a), (b, filled_b) = results[0], results[2]
    assert [i for i, _ in a] == [i for i, _ in b] == list(range(20)) and filled_a == filled_b > 0
    assert all(torch.equal(x, y) for (_, x), (_, y) in zip(a, b))


def test_detection_errors_in_the_thread_reach_the_caller():
    from dp2.anonymizer import Anonymizer
    from dp2.generation.classic import MaskOut
    from dp2.runner import FrameProcessor, run_frames
    from dp2.stages import RegionFilterStage

    class Broken:
        def __call__(self, image):
            raise RuntimeError("detector exploded")

    process = FrameProcessor(Anonymizer(detector=Broken(), face=RegionFilterStage(generator=MaskOut())),
                             next_seed=lambda: 0)
    frames = [Frame(image=torch.zeros(3, 16, 16, dtype=torch.uint8), index=i) for i in range(3)]
    with pytest.raises(RuntimeError, match="detector exploded"):
        run_frames(frames, process, lambda f, r: None, detect_ahead=2)
