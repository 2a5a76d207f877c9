"""Runs with the official weights, when a folder with them is given as $DP2_WEIGHTS_DIR."""
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from dp2.cli import main
from dp2.detection.dsfd import DSFD_WEIGHTS
from dp2.weights import FDF128_WEIGHTS, FDF256_WEIGHTS

from helpers import REPO

pytestmark = pytest.mark.weights


def _need(*specs):
    folder = Path(os.environ.get("DP2_WEIGHTS_DIR", ""))
    missing = [s.filename for s in specs if not (folder / s.filename).is_file()]
    if missing:
        pytest.skip(f"$DP2_WEIGHTS_DIR lacks {missing}")


@pytest.mark.parametrize("config, specs", [
    ("face.py", (FDF256_WEIGHTS, DSFD_WEIGHTS)),
    ("face_fdf128.py", (FDF128_WEIGHTS, DSFD_WEIGHTS)),
    ("face_centerface.py", (FDF256_WEIGHTS,)),
])
def test_official_face_models_anonymize_a_real_face(corpus, tmp_path, config, specs):
    _need(*specs)
    src = corpus / "images" / "fr_two_people.jpg"
    result = CliRunner().invoke(main, [str(REPO / "configs" / "anonymizers" / config), "-i", str(src),
                                       "-o", str(tmp_path / "out.png"), "-t", "0.5"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "2 faces" in result.output
    before = np.array(Image.open(src).convert("RGB")).astype(int)
    after = np.array(Image.open(tmp_path / "out.png")).astype(int)
    assert (np.abs(after - before).sum(axis=2) > 30).mean() > 0.01, "faces must visibly change"
