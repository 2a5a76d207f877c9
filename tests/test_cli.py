"""The command line through Click's runner, on media the tests write."""
import json
import os

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from dp2.cli import main

from helpers import FIXED_CONFIG, make_image

BOX = (20, 16, 44, 40)  # the fixed detector's face


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return result


def write_png(path, h=64, w=80, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = make_image(h, w, seed)
    Image.fromarray(arr).save(path)
    return arr


def assert_anonymized(out_arr, in_arr):
    x0, y0, x1, y1 = BOX
    assert (out_arr[y0:y1, x0:x1] == 0).all(), "face box must be blacked out"
    changed = np.any(out_arr != in_arr, axis=2)
    ys, xs = np.nonzero(changed)
    # 1.3 x the box: at most ceil(0.15 * 24) = 4 px around it.
    assert xs.min() >= x0 - 4 and xs.max() < x1 + 4 and ys.min() >= y0 - 4 and ys.max() < y1 + 4


def test_image(tmp_path, fixed_config):
    arr = write_png(tmp_path / "in.png")
    result = run(fixed_config, "-i", tmp_path / "in.png", "-o", tmp_path / "out.png")
    assert result.exit_code == 0, result.output
    assert_anonymized(np.array(Image.open(tmp_path / "out.png")), arr)
    assert "1 face " in result.output or result.output.rstrip().endswith("1 face")


def test_default_output_name_and_input_untouched(tmp_path, fixed_config):
    arr = write_png(tmp_path / "photo.png")
    before = (tmp_path / "photo.png").read_bytes()
    result = run(fixed_config, "-i", tmp_path / "photo.png")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "photo_anonymized.png").exists()
    assert (tmp_path / "photo.png").read_bytes() == before
    assert_anonymized(np.array(Image.open(tmp_path / "photo_anonymized.png")), arr)


def test_output_into_existing_folder(tmp_path, fixed_config):
    write_png(tmp_path / "a.png")
    (tmp_path / "outdir").mkdir()
    assert run(fixed_config, "-i", tmp_path / "a.png", "-o", tmp_path / "outdir").exit_code == 0
    assert (tmp_path / "outdir" / "a.png").exists()


def test_never_overwrites_input(tmp_path, fixed_config):
    write_png(tmp_path / "a.png")
    before = (tmp_path / "a.png").read_bytes()
    result = run(fixed_config, "-i", tmp_path / "a.png", "-o", tmp_path / "a.png")
    assert result.exit_code == 2 and "never overwrites an input" in result.output
    assert (tmp_path / "a.png").read_bytes() == before


def test_folder_mirrors_tree_skips_non_media_and_reports_broken(tmp_path, fixed_config):
    src = tmp_path / "photos"
    arrs = {rel: write_png(src / rel, seed=i) for i, rel in enumerate(["a.png", "sub/b.png", "sub/deeper/c.png"])}
    (src / "notes.txt").write_text("not an image")
    (src / "sub" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (src / "empty.png").write_bytes(b"")
    result = run(fixed_config, "-i", src)
    assert result.exit_code == 1, result.output
    out = tmp_path / "photos_anonymized"
    for rel, arr in arrs.items():
        assert_anonymized(np.array(Image.open(out / rel)), arr)
    assert not (out / "notes.txt").exists() and not (out / "sub" / "broken.jpg").exists()
    assert "skipped (not an image or video)" in result.output and "notes.txt" in result.output
    assert "2 files failed" in result.output
    assert "broken.jpg" in result.output and "empty.png" in result.output
    assert not [p for p in out.rglob("*") if ".partial" in p.name]


def test_folder_output_inside_input_is_not_reprocessed(tmp_path, fixed_config):
    src = tmp_path / "in"
    write_png(src / "a.png")
    assert run(fixed_config, "-i", src, "-o", src / "anon").exit_code == 0
    assert run(fixed_config, "-i", src, "-o", src / "anon").exit_code == 0
    assert sorted(p.relative_to(src).as_posix() for p in src.rglob("*.png")) == ["a.png", "anon/a.png"]


@pytest.mark.parametrize("args, message", [
    (["-i", "{tmp}/missing.png"], "does not exist"),
    (["-i", "{tmp}/in.png", "-o", "{tmp}/nodir/out.png"], "does not exist"),
    (["-i", "{tmp}/in.png", "-o", "{tmp}/out.gif"], "output suffix"),
    (["-i", "{tmp}/notes.txt"], "not an image"),
    (["-i", "{tmp}/in.png", "-t", "0.5"], "only affects generative models"),
    (["-i", "{tmp}/in.png", "--mt"], "only affects generative models"),
    (["-i", "{tmp}/in.png", "--no-amp"], "only affects generative models"),
    (["-i", "{tmp}/in.png", "--st", "3"], "apply to videos"),
    (["-i", "{tmp}/in.png", "--opt", "detector.boxs=[]"], "Did you mean: detector.boxes"),
    (["-i", "{tmp}/in.png", "--person-generator", "x.py"], "no person stage"),
    (["-i", "{tmp}", "--track"], "--track"),
    ([], "missing -i"),
])
def test_usage_errors(tmp_path, fixed_config, args, message):
    write_png(tmp_path / "in.png")
    (tmp_path / "notes.txt").write_text("x")
    result = run(fixed_config, *[a.format(tmp=tmp_path) for a in args])
    assert result.exit_code == 2, result.output
    assert message in result.output


@pytest.mark.parametrize("content, message", [
    (b"", "empty file"),
    (b"this is text", "not a readable image"),
])
def test_bad_image_input_exit_1_and_no_output(tmp_path, fixed_config, content, message):
    (tmp_path / "bad.jpg").write_bytes(content)
    result = run(fixed_config, "-i", tmp_path / "bad.jpg", "-o", tmp_path / "out.jpg")
    assert result.exit_code == 1
    assert message in result.output and "bad.jpg" in result.output
    assert not (tmp_path / "out.jpg").exists() and len(list(tmp_path.iterdir())) == 2


def test_unwritable_output_leaves_nothing(tmp_path, fixed_config, monkeypatch):
    import dp2.io.images as images

    write_png(tmp_path / "in.png")

    def refuse(path):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(images, "atomic_write_path", refuse)
    result = run(fixed_config, "-i", tmp_path / "in.png", "-o", tmp_path / "out.png")
    assert result.exit_code == 1 and "Permission denied" in result.output and "out.png" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fixed_config.py", "in.png"]


def test_print_config_and_dst_override(tmp_path, fixed_config):
    result = run(fixed_config, "--print-config", "--dst", "0.42")
    assert result.exit_code == 0
    assert "score_threshold: 0.42" in result.output and "FixedFaceDetector" in result.output


def test_export_then_reuse_detections(tmp_path, fixed_config):
    arr = write_png(tmp_path / "in.png")
    export = tmp_path / "dets.json"
    assert run(fixed_config, "-i", tmp_path / "in.png", "-o", tmp_path / "a.png", "--export-detections", export).exit_code == 0
    payload = json.loads(export.read_text())
    assert payload["items"][0]["faces"][0]["box"] == list(BOX)
    # A config whose detector finds nothing, given the exported boxes, anonymizes the same face.
    empty_cfg = tmp_path / "empty.py"
    empty_cfg.write_text(FIXED_CONFIG.format(generator="MaskOut", args="fill='black'", boxes=[]))
    result = run(empty_cfg, "-i", tmp_path / "in.png", "-o", tmp_path / "b.png", "--detections", export)
    assert result.exit_code == 0, result.output
    assert_anonymized(np.array(Image.open(tmp_path / "b.png")), arr)


def test_detections_file_errors(tmp_path, fixed_config):
    write_png(tmp_path / "in.png")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    result = run(fixed_config, "-i", tmp_path / "in.png", "--detections", bad)
    assert result.exit_code == 2 and "bad.json" in result.output
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"version": 1, "items": [{"source": "in.png", "size_hw": [64, 80],
                                                         "faces": [{"box": [1, 2, 3]}]}]}))
    result = run(fixed_config, "-i", tmp_path / "in.png", "-o", tmp_path / "o.png", "--detections", wrong)
    # The whole file is checked before anything runs: a usage error naming the file and the item.
    assert result.exit_code == 2 and "wrong.json: items[0].faces[0].box: expected a list of 4 numbers" in result.output
    assert not (tmp_path / "o.png").exists()


def test_cache_is_keyed_by_detector_settings(tmp_path, fixed_config):
    write_png(tmp_path / "in.png")
    cache = tmp_path / "cache"
    args = [fixed_config, "-i", tmp_path / "in.png", "-o", tmp_path / "o.png", "--cache", "--cache-dir", cache]
    assert run(*args).exit_code == 0
    assert run(*args).exit_code == 0
    entries = list(cache.rglob("*.json"))
    assert len(entries) == 1
    assert run(*args, "--dst", "0.9").exit_code == 0
    assert len(list(cache.rglob("*.json"))) == 2, "another threshold must not reuse the entry"
    json.loads(entries[0].read_text())  # JSON, not pickle


def test_visualize_detection_draws_instead_of_anonymizing(tmp_path, fixed_config):
    arr = write_png(tmp_path / "in.png")
    assert run(fixed_config, "-i", tmp_path / "in.png", "-o", tmp_path / "o.png", "--vd").exit_code == 0
    out = np.array(Image.open(tmp_path / "o.png"))
    assert not (out[20:36, 24:40] == 0).all() and (out != arr).any()


def test_keep_metadata(tmp_path, fixed_config):
    exif = Image.Exif()
    exif[0x010F] = "TestCam"
    Image.fromarray(make_image()).save(tmp_path / "in.jpg", exif=exif.tobytes())
    assert run(fixed_config, "-i", tmp_path / "in.jpg", "-o", tmp_path / "strip.jpg").exit_code == 0
    assert run(fixed_config, "-i", tmp_path / "in.jpg", "-o", tmp_path / "keep.jpg", "--keep-metadata").exit_code == 0
    assert not Image.open(tmp_path / "strip.jpg").getexif()
    assert Image.open(tmp_path / "keep.jpg").getexif()[0x010F] == "TestCam"


def test_max_res_output_keeps_reduced_size(tmp_path, fixed_config):
    write_png(tmp_path / "in.png", h=64, w=160)
    assert run(fixed_config, "-i", tmp_path / "in.png", "-o", tmp_path / "o.png", "--max-res", "80").exit_code == 0
    assert Image.open(tmp_path / "o.png").size == (80, 32)


def test_help_lists_dp2_options():
    text = run("--help").output
    for flag in ["-i, --input_path", "-o, --output_path", "-v, --visualize", "--max-res", "--start-time, --st",
                 "--end-time, --et", "--fps", "--detection-score-threshold, --dst", "--visualize-detection, --vd",
                 "--multi-modal-truncation, --mt", "--cache", "--amp / --no-amp", "-t, --truncation_value", "--track",
                 "--seed", "--person-generator", "--cse-person-generator", "--webcam"]:
        assert flag in text, flag


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without CUDA")
def test_unavailable_device_is_a_usage_error(tmp_path, fixed_config):
    write_png(tmp_path / "in.png")
    result = run(fixed_config, "-i", tmp_path / "in.png", "--device", "cuda")
    assert result.exit_code == 2 and "CUDA is not available" in result.output


def test_device_cpu(tmp_path, fixed_config):
    arr = write_png(tmp_path / "in.png")
    assert run(fixed_config, "-i", tmp_path / "in.png", "-o", tmp_path / "o.png", "--device", "cpu").exit_code == 0
    assert_anonymized(np.array(Image.open(tmp_path / "o.png")), arr)
