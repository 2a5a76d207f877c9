"""The live path with a fake capture device and a fake window."""
import time

import numpy as np
import torch

from dp2.anonymizer import Anonymizer
from dp2.stages import RegionFilterStage
from dp2.detection.fixed import FixedFaceDetector
from dp2.generation.classic import MaskOut
from dp2.generation.latents import LatentSampler
from dp2.io.webcam import WebcamSource, WindowSink
from dp2.runner import FrameProcessor, run_frames

from helpers import make_image


class FakeCapture:
    def __init__(self, n_frames=20):
        self.frames = [make_image(48, 64, seed=i)[:, :, ::-1].copy() for i in range(n_frames)]  # BGR
        self.released = False

    def read(self):
        time.sleep(0.02)  # a camera delivers frames at its own pace
        if not self.frames:
            return False, None
        return True, self.frames.pop(0)

    def release(self):
        self.released = True


def test_webcam_loop_anonymizes_and_quits_on_q():
    capture = FakeCapture()
    shown = []

    def show(bgr):
        shown.append(bgr)
        return ord("q") if len(shown) == 3 else -1

    anonymizer = Anonymizer(detector=FixedFaceDetector(boxes=[[20, 32, 44, 48]]),
                            face=RegionFilterStage(generator=MaskOut(fill="black")))
    source = WebcamSource(0, capture_factory=lambda index: capture, max_failures=2)
    sink = WindowSink(show=show)
    process = FrameProcessor(anonymizer, next_seed=LatentSampler(0).next_seed)
    stats = run_frames(source, process, sink)
    source.close()
    assert stats.frames == 3 and len(shown) == 3
    assert all((bgr[34:46, 22:42] == 0).all() for bgr in shown)
    assert capture.released


def test_webcam_ends_when_the_device_stops():
    capture = FakeCapture(n_frames=4)
    source = WebcamSource(0, capture_factory=lambda index: capture, max_failures=2, max_res=32)
    frames = list(source)
    source.close()
    assert 1 <= len(frames) <= 4  # frames may be dropped to stay live, never delayed
    assert all(max(f.size_hw) <= 32 and f.image.dtype == torch.uint8 for f in frames)
    assert [f.index for f in frames] == sorted(f.index for f in frames)
