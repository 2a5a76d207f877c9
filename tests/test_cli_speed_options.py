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


@pytest.mark.parametrize("compiled", [False, True])
def test_the_cpu_generates_one_instance_per_call(monkeypatch, compiled):
    """On the CPU the face and body stages hand the generator one instance per call, compiled or
    not (dp2.stages.CPU_BATCH: batching was no faster there); the generator itself is not run."""
    import torch

    import dp2.stages as stages
    from dp2.detection.full_body import prepare_bodies
    from dp2.generation.base import SynthesisOptions
    from dp2.generation.build import build_generator
    from dp2.structures import FaceDetections

    rows = []

    def fake_generate(generator, img, mask, latent, conditions, options, device):
        rows.append(img.shape[0])
        return torch.zeros_like(img)

    monkeypatch.setattr(stages, "_generate", fake_generate)
    options = SynthesisOptions(compile=compiled)
    seeds = iter(range(100)).__next__
    image = torch.zeros(3, 200, 700, dtype=torch.uint8)
    boxes = torch.tensor([[20 + 130 * i, 40, 80 + 130 * i, 100] for i in range(5)])  # far apart
    faces = FaceDetections(boxes_xyxy=boxes, scores=torch.ones(5), image_size_hw=(200, 700))
    stages.FaceCropStage(generator=build_generator("fdf128", mini=True)).anonymize(
        image, faces, next_seed=seeds, options=options)
    assert rows == [1] * 5
    rows.clear()
    masks = torch.zeros(3, 200, 700, dtype=torch.bool)
    for i in range(3):
        masks[i, 20:180, 40 + 220 * i:120 + 220 * i] = True
    bodies = prepare_bodies(masks, torch.ones(3), (200, 700))
    stages.BodyCropStage(generator=build_generator("fdh_nocse", mini=True)).anonymize(
        image, bodies, next_seed=seeds, options=options)
    assert rows == [1] * 3
