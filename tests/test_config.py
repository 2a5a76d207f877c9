from pathlib import Path

import pytest

from dp2.config import ConfigError, LazyCall as L, apply_overrides, config_to_yaml, instantiate, load_config

CONFIGS = Path(__file__).parent / "data" / "configs"


def test_lazycall_records_target_and_instantiate_builds_nested():
    node = L(dict)(a=1, inner=L(list)())
    assert node._target_ == "builtins.dict"
    assert instantiate(node) == {"a": 1, "inner": []}


def test_relative_import_edit_and_interpolation():
    cfg = load_config(CONFIGS / "sub" / "variant.py")
    assert set(cfg.keys()) == {"anonymizer", "detector"}  # _private is left out
    built = instantiate(cfg.anonymizer)
    assert built == {"detector": {"score_threshold": 0.7, "scales": [1, 2]}, "name": "variant"}


def test_package_relative_import():
    cfg = load_config(CONFIGS / "sub" / "pkg_import.py")
    assert instantiate(cfg.anonymizer)["name"] == "base"


def test_each_import_is_fresh():
    # The variant edited the detector, the base file loaded afterwards is untouched.
    load_config(CONFIGS / "sub" / "variant.py")
    assert load_config(CONFIGS / "base.py").detector.score_threshold == 0.3


def test_overrides_parse_literals_and_follow_interpolation():
    cfg = load_config(CONFIGS / "base.py")
    apply_overrides(cfg, ["detector.score_threshold=0.5", "detector.scales=[1, 3]", "anonymizer.name=hello world"])
    built = instantiate(cfg.anonymizer)
    assert built["detector"] == {"score_threshold": 0.5, "scales": [1, 3]}
    assert built["name"] == "hello world"


@pytest.mark.parametrize("override, message", [
    ("detector.score_treshold=0.5", "Did you mean: detector.score_threshold"),
    ("nothing=1", "unknown config key 'nothing'"),
    ("detector.score_threshold", "key=value"),
])
def test_bad_overrides_are_explained(override, message):
    cfg = load_config(CONFIGS / "base.py")
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        apply_overrides(cfg, [override])


def test_override_value_is_never_evaluated():
    cfg = load_config(CONFIGS / "base.py")
    apply_overrides(cfg, ["anonymizer.name=__import__('os').system('false')"])
    assert cfg.anonymizer.name == "__import__('os').system('false')"


def test_errors_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.py")
    bad = tmp_path / "bad.py"
    bad.write_text("x = (\n")
    with pytest.raises(ConfigError, match="bad.py: syntax error"):
        load_config(bad)
    broken = tmp_path / "broken.py"
    broken.write_text("from .nope import x\n")
    with pytest.raises(ConfigError, match="does not name a config file"):
        load_config(broken)
    raises = tmp_path / "raises.py"
    raises.write_text("x = 1\ny = {}['missing']\n")
    with pytest.raises(ConfigError, match=r"raises.py line 2: KeyError: 'missing'"):
        load_config(raises)
    not_text = tmp_path / "binary.py"
    not_text.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigError, match="binary.py: cannot read"):
        load_config(not_text)


def test_instantiate_reports_bad_arguments():
    node = L("dp2.generation.classic.MaskOut")(colour="black")
    with pytest.raises(ConfigError, match="MaskOut"):
        instantiate(node)
    with pytest.raises(ConfigError, match="cannot import"):
        instantiate(L("dp2.nope.Thing")())
    # A constructor that refuses a value (ValueError) is named by its key path, however deep.
    node = L(dict)(face=L("dp2.generation.classic.GaussianBlur")(sigma_fraction=0))
    with pytest.raises(ConfigError, match=r"cannot build anonymizer.face \(dp2.generation.classic.GaussianBlur\): "
                                          "sigma_fraction"):
        instantiate(node, key_path="anonymizer")


def test_yaml_printing_resolves_interpolations():
    text = config_to_yaml(load_config(CONFIGS / "base.py"))
    assert "${detector}" not in text and "score_threshold: 0.3" in text


def test_shipped_configs_load():
    root = Path(__file__).resolve().parents[1] / "configs" / "anonymizers"
    files = sorted(root.rglob("*.py"))
    assert files
    for path in files:
        cfg = load_config(path)
        assert "anonymizer" in cfg, path


def test_override_may_name_a_constructor_default():
    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / "anonymizers" / "traditional" / "face" / "pixelation8.py")
    apply_overrides(cfg, ["anonymizer.face.context=0.5"])
    assert cfg.anonymizer.face.context == 0.5
    with pytest.raises(ConfigError, match="Did you mean: anonymizer.face.context"):
        apply_overrides(cfg, ["anonymizer.face.contex=0.5"])
