"""Outputs get the permissions a plain open() would give, not mkstemp's 0600."""
import os
import stat

import numpy as np
import torch

from dp2.io.atomic import partial_sibling
from dp2.io.images import save_image
from dp2.io.video import VideoWriter


def test_outputs_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        import dp2.io.atomic as atomic
        saved, atomic._UMASK = atomic._UMASK, 0o022
        try:
            save_image(tmp_path / "a.png", torch.zeros(3, 8, 8, dtype=torch.uint8))
            with VideoWriter(tmp_path / "v.mkv", fps=5, size_hw=(16, 16), lossless=True) as writer:
                writer.write(np.zeros((16, 16, 3), np.uint8))
            fd, tmp = partial_sibling(tmp_path / "x.json", prefix=".x.", suffix=".partial")
            os.close(fd)
        finally:
            atomic._UMASK = saved
    finally:
        os.umask(old)
    for path in (tmp_path / "a.png", tmp_path / "v.mkv", tmp):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path
