"""--compile/--no-compile and --precision: how they reach the generative stages."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from dp2.cli import main
from dp2.io.kinds import InputKind
from dp2.run import RunOptions, build_run_context, load_run_config

CONFIG = """
from dp2.anonymizer import Anonymizer
from dp2.config import LazyCall as L
from dp2.detection.fixed import FixedFaceDetector
from dp2.generation.build import build_generator
from dp2.stages import FaceCropStage

anonymizer = L(Anonymizer)(detector=L(FixedFaceDetector)(boxes=[[20, 16, 44, 40]]),
                           face=L(FaceCropStage)(generator=L(build_generator)(kind="fdf128", mini=True)),
                           device="cpu")
"""


@pytest.fixture
def generative_config(tmp_path):
    path = tmp_path / "mini_face.py"
    path.write_text(CONFIG)
    return path


def _run(config, kind, **given):
    run, _ = build_run_context(load_run_config(config), RunOptions(**given), kind, config_path=config)
    return run


@pytest.mark.parametrize("kind, expected", [(InputKind.IMAGE, False), (InputKind.VIDEO, True),
                                            (InputKind.FOLDER, True), (InputKind.WEBCAM, True)])
def test_compile_default_follows_the_input_kind(generative_config, kind, expected):
    options = _run(generative_config, kind).process.options
    assert options.compile is expected
    assert options.compile_in_background is (kind is InputKind.WEBCAM)  # live: no frozen first frames
    assert options.precision is None  # DeepPrivacy2's --amp rule: fp32 on this CPU


def test_compile_and_precision_given(generative_config):
    assert _run(generative_config, InputKind.IMAGE, compile=True).process.options.compile is True
    assert _run(generative_config, InputKind.FOLDER, compile=False).process.options.compile is False
    assert _run(generative_config, InputKind.IMAGE, precision="bf16").process.options.precision == "bf16"


def test_precision_changes_the_settings_hash_only_when_it_changes_pixels(generative_config):
    base = _run(generative_config, InputKind.FOLDER).settings_sha256
    assert _run(generative_config, InputKind.FOLDER, precision="fp32").settings_sha256 == base  # the CPU default
    assert _run(generative_config, InputKind.FOLDER, precision="bf16").settings_sha256 != base


def test_classic_configs_never_compile(fixed_config):
    options = _run(fixed_config, InputKind.FOLDER, compile=True).process.options
    assert options.compile is False  # no generator: nothing to compile


def test_precision_choices_are_checked(fixed_config, tmp_path):
    result = CliRunner().invoke(main, [str(fixed_config), "-i", str(tmp_path), "--precision", "fp64"])
    assert result.exit_code == 2 and "fp64" in result.output and "bf16" in result.output


def test_run_options_check_precision_and_compile_like_the_command():
    from dp2.options import RunUsageError

    assert RunOptions(precision="bf16", compile=False).to_dict()["precision"] == "bf16"
    assert RunOptions().compile is None  # not given: the input kind decides
    with pytest.raises(RunUsageError, match="fp64.*not one of"):
        RunOptions(precision="fp64")
    with pytest.raises(RunUsageError, match="not a boolean"):
        RunOptions(compile="yes")
    with pytest.raises(RunUsageError, match="not a boolean"):
        RunOptions(resume=None)  # None is only "not given" where that is the default
