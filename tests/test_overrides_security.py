"""``--opt`` values are data: no override may make the config build or call anything new."""
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from dp2.api import build_anonymizer
from dp2.cli import main
from dp2.config import ConfigError, apply_overrides, load_config

from helpers import REPO

GAUSSIAN = REPO / "configs" / "anonymizers" / "traditional" / "face" / "gaussian.py"
BASE = Path(__file__).parent / "data" / "configs" / "base.py"


def _run(tmp_path, *opts):
    Image.fromarray(np.full((32, 40, 3), 90, np.uint8)).save(tmp_path / "in.png")
    args = [str(GAUSSIAN), "-i", str(tmp_path / "in.png"), "-o", str(tmp_path / "out.png")]
    for opt in opts:
        args += ["--opt", opt]
    return CliRunner().invoke(main, args, catch_exceptions=False)


# Each row: an override that tries to reach a callable (it would create PWNED if it ran), and
# what the one-line message says. {pwned} is the file it would create.
ATTACKS = [
    ("detector={{'_target_': 'os.system', 'command': 'touch {pwned}'}}", "key '_target_' is reserved"),
    ("detector._target_=os.system", "key '_target_' is reserved"),
    ("anonymizer.face._target_=os.system", "key '_target_' is reserved"),
    ("anonymizer.face={{'_target_': 'os.system', 'command': 'touch {pwned}'}}", "key '_target_' is reserved"),
    # nested inside a field value, in a dict in a list
    ("anonymizer.face.mask_scale=[{{'x': {{'_target_': 'os.system', 'command': 'touch {pwned}'}}}}]",
     "key '_target_' is reserved"),
    # other hydra-style steering keys and dunder names
    ("anonymizer.face._partial_=True", "key '_partial_' is reserved"),
    ("anonymizer.face.generator={{'_args_': ['touch {pwned}']}}", "key '_args_' is reserved"),
    ("anonymizer.face.mask_scale={{'_args_': ['touch {pwned}']}}", "key '_args_' is reserved"),
    ("anonymizer.face.__class__=1", "key '__class__' is reserved"),
    # interpolations: point at another node, or call a resolver that builds a node with a _target_
    ("anonymizer.face.mask_scale=${{oc.create:{{_target_: os.system, command: touch {pwned}}}}}",
     "is an interpolation"),
    ("anonymizer.face.mask_scale=${{detector}}", "is an interpolation"),
    ("anonymizer.face.mask_scale=['${{oc.env:HOME}}']", "is an interpolation"),
    ("anonymizer.face.mask_scale={{'${{detector}}': 1}}", "holds an interpolation"),
    # replacing a node that builds something (its subtree has a _target_), directly or via ${...}
    ("anonymizer.face={{'generator': {{'sigma_fraction': 0.1}}}}", "this node builds dp2.stages.RegionFilterStage"),
    ("anonymizer.face.generator=os.system", "this node builds dp2.generation.classic.GaussianBlur"),
    ("anonymizer.detector=os.system", "this node builds dp2.detection.centerface.CenterFaceDetector"),
    ("anonymizer=None", "this node builds dp2.anonymizer.Anonymizer"),
    ("anonymizer.face=None", "this node builds"),
    # keys that are not plain dotted names
    ("anonymizer[face]=1", "not a dotted config key"),
    ("anonymizer.${{x}}=1", "not a dotted config key"),
    # values that are not plain data
    ("anonymizer.face.mask_scale={{1, 2}}", "set values are not config data"),
    ("anonymizer.face.mask_scale=...", "ellipsis values are not config data"),
    ("anonymizer.face.mask_scale=b'x'", "bytes values are not config data"),
    ("anonymizer.face.mask_scale={{1: 2}}", "keys must be strings"),
]


@pytest.mark.parametrize("override, message", ATTACKS)
def test_override_cannot_reach_a_callable(tmp_path, override, message):
    pwned = tmp_path / "pwned"
    result = _run(tmp_path, override.format(pwned=pwned))
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert len(result.output.strip().splitlines()[-1]) > 0 and "Traceback" not in result.output
    assert not pwned.exists()
    assert not (tmp_path / "out.png").exists()


def test_python_expressions_stay_strings(tmp_path):
    # Not a literal: kept as text, never evaluated (the component then refuses the string).
    cfg = load_config(BASE)
    pwned = tmp_path / "pwned"
    apply_overrides(cfg, [f"anonymizer.name=__import__('os').system('touch {pwned}')"])
    assert cfg.anonymizer.name.startswith("__import__") and not pwned.exists()


def test_literal_overrides_still_work(tmp_path):
    result = _run(tmp_path, "anonymizer.face.mask_scale=1.5", "detector.upscale=None", "anonymizer.face.shape=ellipse")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out.png").exists()


def test_api_overrides_are_checked_too(tmp_path):
    with pytest.raises(ConfigError, match="reserved"):
        build_anonymizer(GAUSSIAN, ["detector._target_=os.system"])


def test_the_check_after_all_overrides_catches_new_targets(monkeypatch):
    # Belt and braces: with the value check disabled, comparing the config's _target_s and
    # interpolations before and after the overrides still refuses them.
    import dp2.config as config

    monkeypatch.setattr(config, "check_literal", lambda value, where: value)
    for override in ("detector.scales={'_target_': 'os.system'}", "detector.scales='${anonymizer}'"):
        with pytest.raises(ConfigError, match="may not add"):
            apply_overrides(load_config(BASE), [override])
