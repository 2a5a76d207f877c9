"""DeepPrivacy2's market1501/* configs: FB_cse_mask_face with other thresholds and body filters."""
from __future__ import annotations

import pytest

from dp2.config import instantiate, load_config
from dp2.generation.classic import MaskOut, Pixelate
from dp2.stages import BodyCropStage, MaskFilterStage

from helpers import REPO

CONFIGS = REPO / "configs" / "anonymizers" / "market1501"


def test_person_config_keeps_the_realistic_body_generators():
    cfg = load_config(CONFIGS / "person.py")
    assert cfg.anonymizer.face is None
    assert cfg.detector.person_detector.score_threshold == 0.1
    assert cfg.detector.face_detector.score_threshold == 0.5
    assert cfg.detector.cse_detector.score_threshold == 0.3
    assert cfg.anonymizer.cse_person.generator.kind == "fdh_cse"
    assert cfg.anonymizer.person.generator.kind == "fdh_nocse"


@pytest.mark.parametrize("name, generator, value", [("blackout", MaskOut, "black"), ("pixelation8", Pixelate, 8),
                                                    ("pixelation16", Pixelate, 16)])
def test_filter_configs_build_without_weights(name, generator, value):
    anonymizer = instantiate(load_config(CONFIGS / f"{name}.py").anonymizer)
    det = anonymizer.detector
    assert (det.person_detector.score_threshold, det.face_detector.score_threshold,
            det.cse_detector.score_threshold) == (0.1, 0.5, 0.3)
    assert set(anonymizer.stages) == {"persons", "cse_persons"}  # faces: the fallback blur
    for stage in anonymizer.stages.values():
        assert isinstance(stage, MaskFilterStage) and not isinstance(stage, BodyCropStage)
        assert isinstance(stage.generator, generator)
        assert (stage.generator.fill if generator is MaskOut else stage.generator.blocks) == value
