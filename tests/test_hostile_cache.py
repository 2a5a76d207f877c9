"""``--cache`` entries are checked like detections files: an entry edited by hand, damaged or
copied from another image is ignored with a warning and the image is detected again."""
import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from dp2.cli import main
from dp2.io.detection_files import _entry_hash

from helpers import make_image

BOX = (20, 16, 44, 40)  # the fixed detector's face


def write_image(path, value=None):
    arr = np.clip(make_image(64, 80), 20, 235) if value is None else np.full((64, 80, 3), value, np.uint8)
    Image.fromarray(arr).save(path)
    return arr


def run(config, tmp_path, image="in.png"):
    args = [config, "-i", tmp_path / image, "-o", tmp_path / "out.png", "--cache", "--cache-dir", tmp_path / "cache"]
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def face_is_black(tmp_path):
    x0, y0, x1, y1 = BOX
    return bool((np.array(Image.open(tmp_path / "out.png"))[y0:y1, x0:x1] == 0).all())


@pytest.fixture
def cached(tmp_path, fixed_config):
    """One run that fills the cache; returns the entry's path and its JSON."""
    write_image(tmp_path / "in.png")
    assert run(fixed_config, tmp_path).exit_code == 0
    (entry,) = (tmp_path / "cache").rglob("*.json")
    (tmp_path / "out.png").unlink()
    return entry, json.loads(entry.read_text())


def _no_faces(record):
    record["detections"]["faces"] = []
    return json.dumps(record)


def _no_faces_rehashed_but_resized(record):
    # Whoever recomputes the hash passes that check; the content checks still apply.
    record["detections"] = {"size_hw": [32, 40], "faces": []}
    record["entry_sha256"] = _entry_hash(record["settings_key"], record["image_sha256"], record["detections"])
    return json.dumps(record)


def _box_elsewhere_rehashed(record):
    record["detections"]["faces"][0]["box"] = [1e29, 0, 2e29, 10]
    record["entry_sha256"] = _entry_hash(record["settings_key"], record["image_sha256"], record["detections"])
    return json.dumps(record)


EDITS = [
    ("faces emptied", _no_faces, "does not match its entry_sha256"),
    ("hash removed", lambda r: json.dumps({k: v for k, v in r.items() if k != "entry_sha256"}), "missing key 'entry_sha256'"),
    ("old format", lambda r: json.dumps({"version": 1, "settings_key": r["settings_key"],
                                         "detections": {"size_hw": [64, 80], "faces": []}}), "version 1, expected 2"),
    ("other settings", lambda r: json.dumps({**r, "settings_key": "0" * 64}), "made with other detector settings"),
    ("other image", lambda r: json.dumps({**r, "image_sha256": "0" * 64}), "made for another image"),
    ("rehashed, wrong size", _no_faces_rehashed_but_resized, "size_hw: [32, 40] does not match"),
    ("rehashed, box far away", _box_elsewhere_rehashed, "x0 = 1e+29 is outside"),
    ("NaN", lambda r: json.dumps(r).replace('"score": 1.0', '"score": NaN'), "NaN is not a number JSON allows"),
    ("truncated", lambda r: json.dumps(r)[:40], "not valid JSON"),
    ("deep nesting", lambda r: "[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ("a list", lambda r: "[]", "expected an object"),
    ("empty", lambda r: "", "not valid JSON"),
]


@pytest.mark.parametrize("case, edit, warning", EDITS, ids=[row[0] for row in EDITS])
def test_edited_entry_is_detected_again(tmp_path, fixed_config, cached, case, edit, warning):
    entry, record = cached
    entry.write_text(edit(record))
    result = run(fixed_config, tmp_path)
    assert result.exit_code == 0, result.output
    assert "ignoring cache entry, detecting again" in result.output and warning in result.output
    assert str(entry) in result.output
    assert face_is_black(tmp_path), "an edited entry must not decide what is anonymized"
    # The entry is rewritten from the fresh detections and used as is next time.
    assert json.loads(entry.read_text())["detections"]["faces"][0]["box"] == list(BOX)
    (tmp_path / "out.png").unlink()
    result = run(fixed_config, tmp_path)
    assert result.exit_code == 0 and "ignoring cache entry" not in result.output and face_is_black(tmp_path)


def test_entry_copied_from_an_image_without_faces(tmp_path, fixed_config, cached):
    # The entry of another image (say one where the detector found nothing) put in place of this
    # image's entry: its hash binds it to the other image's digest.
    entry, record = cached
    other = dict(record, image_sha256="f" * 64)
    other["detections"] = {"size_hw": [64, 80], "faces": []}
    other["entry_sha256"] = _entry_hash(record["settings_key"], other["image_sha256"], other["detections"])
    entry.write_text(json.dumps(other))
    result = run(fixed_config, tmp_path)
    assert result.exit_code == 0 and "made for another image" in result.output and face_is_black(tmp_path)


def test_unreadable_entries_do_not_stop_the_run(tmp_path, fixed_config, cached):
    entry, _ = cached
    entry.unlink()
    entry.mkdir()  # neither readable nor replaceable
    result = run(fixed_config, tmp_path)
    assert result.exit_code == 0, result.output
    assert "not a regular file" in result.output and "cannot write cache entry" in result.output
    assert face_is_black(tmp_path)


def test_valid_entries_are_used_without_detecting(tmp_path, fixed_config, cached, monkeypatch):
    from dp2.detection.fixed import FixedFaceDetector

    entry, record = cached
    assert set(record) == {"version", "settings_key", "image_sha256", "detections", "entry_sha256"}
    monkeypatch.setattr(FixedFaceDetector, "__call__", lambda self, image: pytest.fail("detector ran on a cache hit"))
    result = run(fixed_config, tmp_path)
    assert result.exit_code == 0 and "ignoring" not in result.output and face_is_black(tmp_path)
