"""ShotCutDetector on synthetic shots and on a real clip with three verified cuts."""
from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dp2.tracking import ShotCutDetector

HW = (90, 160)


@functools.lru_cache(maxsize=None)
def scene(seed: int) -> np.ndarray:
    """A smooth random colour field, float32 [3, H, W] in [0, 255] (read-only, cached)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, 3, 5, generator=g) * 255
    out = F.interpolate(coarse, size=HW, mode="bicubic", align_corners=False)[0].clamp(0, 255).numpy()
    out.flags.writeable = False
    return out


def shot_frame(background: np.ndarray, t: int, seed: int = 0, shift: int = 0) -> torch.Tensor:
    """``background`` panned by ``shift`` px, a moving square and sensor noise; uint8 [3, H, W].

    numpy, not torch: per-frame torch ops on busy 2-core CI machines cost more in thread
    hand-offs than in work.
    """
    img = np.roll(background, shift, axis=2)  # a copy
    x = (10 + 4 * t) % (HW[1] - 30)
    img[:, 30:60, x:x + 30] = np.array([230.0, 40, 40])[:, None, None]
    img += np.random.default_rng(1000 * seed + t).normal(0, 4, img.shape).astype(np.float32)
    return torch.from_numpy(img.clip(0, 255).astype(np.uint8))


def cuts_of(frames, detector: ShotCutDetector | None = None) -> list[int]:
    detector = detector or ShotCutDetector()
    return [i for i, f in enumerate(frames) if detector.is_cut(f)]


def test_hard_cuts_between_synthetic_shots_are_found():
    frames = [shot_frame(scene(s), t, s) for s, n in ((1, 20), (2, 15), (3, 10)) for t in range(n)]
    assert cuts_of(frames) == [20, 35]


def test_cut_between_shots_of_similar_colours_is_found():
    # Same palette (one scene mirrored): the histogram barely changes, the layout does.
    a = scene(5)
    frames = [shot_frame(a, t) for t in range(12)] + [shot_frame(a[:, :, ::-1], t) for t in range(12)]
    assert cuts_of(frames) == [12]


def test_motion_pan_and_slow_fade_are_not_cuts():
    a, b = scene(1), scene(2)
    pan = [shot_frame(a, t, shift=6 * t) for t in range(30)]
    fade = [shot_frame(a + (b - a) * (t / 29), t) for t in range(30)]
    assert cuts_of(pan) == [] and cuts_of(fade) == []


def test_first_frame_is_never_a_cut_and_reset_starts_over():
    det = ShotCutDetector()
    a, b = shot_frame(scene(1), 0), shot_frame(scene(2), 0)
    assert det.is_cut(a) is False and det.is_cut(b) is True
    det.reset()
    assert det.is_cut(a) is False and det.last_score == 0.0


def test_no_second_cut_within_min_shot_len():
    a, flash = scene(1), torch.full((3, *HW), 255, dtype=torch.uint8)
    frames = [shot_frame(a, t) for t in range(10)] + [flash] + [shot_frame(a, t) for t in range(11, 20)]
    assert cuts_of(frames, ShotCutDetector(min_shot_len=5)) == [10]  # the flash, not the return


def test_frame_size_does_not_matter():
    frames = [shot_frame(scene(1), t) for t in range(5)] + [shot_frame(scene(2), t) for t in range(5)]
    big = [f.repeat_interleave(6, dim=1).repeat_interleave(6, dim=2) for f in frames]
    assert cuts_of(big) == cuts_of(frames) == [5]


@pytest.mark.parametrize("image, message", [
    (torch.zeros(3, 8, 8), r"image must be uint8 \[3, H, W\], got torch.float32 \[3, 8, 8\]"),
    (torch.zeros(8, 8, 3, dtype=torch.uint8), r"got torch.uint8 \[8, 8, 3\]"),
])
def test_validation_messages(image, message):
    with pytest.raises(ValueError, match=message):
        ShotCutDetector().is_cut(image)


def test_real_clip_has_its_three_cuts(corpus):
    """fr_short_hamilton_clip.mp4: new shots start at frames 20, 82 and 211 (checked by eye on
    thumbnails of frames 18-23, 80-85, 161-164 and 209-214). The clip is telecined: every fifth
    frame repeats, which the adaptive level must tolerate."""
    av = pytest.importorskip("av")
    path = corpus / "videos" / "fr_short_hamilton_clip.mp4"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    detector, cuts, scores = ShotCutDetector(), [], []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for i, frame in enumerate(container.decode(stream)):
            image = torch.from_numpy(frame.to_ndarray(format="rgb24")).permute(2, 0, 1)
            if detector.is_cut(image):
                cuts.append(i)
            scores.append(detector.last_score)
    print(f"cuts at {cuts}; scores there {[round(scores[i], 3) for i in cuts]}; "
          f"largest other score {max(s for i, s in enumerate(scores) if i not in cuts):.3f}")
    assert cuts == [20, 82, 211]
    assert min(scores[i] for i in cuts) > 2 * max(s for i, s in enumerate(scores) if i not in cuts)
