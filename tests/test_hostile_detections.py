"""``--detections`` files are untrusted uploads: refused with one line naming the file and the
item, or every face in them is anonymized. Never exit 0 with a face left as it was."""
import json
import math
import os

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings, strategies as st
from PIL import Image

from dp2.cli import main
from dp2.io.detection_files import GivenDetections

from helpers import REPO, make_image

FACE_CONFIGS = REPO / "configs" / "anonymizers" / "traditional" / "face"
GAUSSIAN = FACE_CONFIGS / "gaussian.py"
BLACK = FACE_CONFIGS / "maskout_black.py"
H, W = 64, 80


def write_image(folder, name="in.png"):
    arr = np.clip(make_image(H, W), 20, 235)  # no black pixel before anonymization
    Image.fromarray(arr).save(folder / name)
    return arr


def item(**changes):
    base = {"source": "in.png", "frame": 0, "size_hw": [H, W], "faces": [{"box": [20, 16, 44, 40], "score": 0.9}]}
    base.update(changes)
    return base


def doc(*items, version=1):
    return {"version": version, "items": list(items) or [item()]}


def run(config, folder, dets, *extra):
    args = [str(config), "-i", str(folder / "in.png"), "-o", str(folder / "out.png"), "--detections", str(dets), *extra]
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def face(box, **more):
    return {"box": box, "score": 0.9, **more}


DEEP = "[" * 100_000 + "]" * 100_000

# (case, file text, exit code, message). Every message must also name the file.
HOSTILE = [
    ("infinite box", '{"version": 1, "items": [{"source": "in.png", "frame": 0, "size_hw": [64, 80], "faces": '
                     '[{"box": [-Infinity, -Infinity, Infinity, Infinity], "score": 1}]}]}',
     2, "-Infinity is not a number JSON allows"),
    ("NaN box", json.dumps(doc(item(faces=[face([math.nan, 0, 10, 10])]))), 2, "NaN is not a number JSON allows"),
    ("overflowing float", json.dumps(doc(item(faces=[face([0, 0, 10, 10])]))).replace("10, 10", "1e999, 10"),
     2, "1e999 is too large for a number"),
    ("huge integer", json.dumps(doc(item(faces=[face([0, 0, 10, 10])]))).replace("10, 10", "1" * 5000 + ", 10"),
     2, "dets.json: "),
    ("x1 = 1e29", json.dumps(doc(item(faces=[face([0, 0, 1e29, 10])]))), 2, "items[0].faces[0].box: x1 = 1e+29 is outside"),
    ("negative size_hw", json.dumps(doc(item(size_hw=[-64, 80]))), 2, "items[0].size_hw: expected [H, W], two positive"),
    ("zero size_hw", json.dumps(doc(item(size_hw=[0, 80]))), 2, "items[0].size_hw: expected [H, W], two positive"),
    ("1e300 size_hw", json.dumps(doc(item(size_hw=[1e300, 80]))), 2, "items[0].size_hw: expected [H, W]"),
    ("missing size_hw", json.dumps(doc({"source": "in.png", "faces": []})), 2, "items[0]: missing 'size_hw'"),
    ("string score", json.dumps(doc(item(faces=[face([0, 0, 10, 10], score="0.9")]))),
     2, "items[0].faces[0].score: expected a number, got '0.9'"),
    ("score above 1", json.dumps(doc(item(faces=[face([0, 0, 10, 10], score=2)]))), 2, "expected a number in [0, 1]"),
    ("bool coordinate", json.dumps(doc(item(faces=[face([True, 0, 10, 10])]))), 2, "box[0]: expected a number, got True"),
    ("three numbers", json.dumps(doc(item(faces=[face([0, 0, 10])]))), 2, "box: expected a list of 4 numbers"),
    ("inverted box", json.dumps(doc(item(faces=[face([30, 0, 10, 10])]))), 2, "expected x1 > x0 and y1 > y0"),
    ("box outside the image", json.dumps(doc(item(faces=[face([100, 70, 120, 90])]))), 2, "has no area inside the image (size_hw [64, 80])"),
    ("box touching the border from outside", json.dumps(doc(item(faces=[face([-20, 0, 0, 10])]))), 2, "no area inside"),
    ("NaN landmark", json.dumps(doc(item(faces=[face([0, 0, 10, 10], landmarks=[[1, math.nan]])]))), 2, "NaN"),
    ("far landmark", json.dumps(doc(item(faces=[face([0, 0, 10, 10], landmarks=[[1, 1e9]])]))),
     2, "landmarks[0]: y = 1000000000.0 is outside"),
    ("persons entries", json.dumps(doc(item(persons=[{"box": [0, 0, 10, 10], "score": 1}]))),
     2, "items[0].persons: 1 person detection(s) cannot be used"),
    ("unknown kind", json.dumps(doc(item(hands=[]))), 2, "items[0]: unknown key 'hands'"),
    ("unknown face key", json.dumps(doc(item(faces=[{"bbox": [0, 0, 10, 10], "box": [0, 0, 10, 10]}]))),
     2, "faces[0]: unknown key 'bbox'"),
    ("version 99", json.dumps(doc(version=99)), 2, "version 99 is not supported (expected 1)"),
    ("no version", json.dumps({"items": [item()]}), 2, "missing 'version' (expected 1)"),
    ("unknown top-level key", json.dumps({**doc(), "extra": 1}), 2, "unknown key 'extra'"),
    ("a list", json.dumps([item()]), 2, "expected an object with 'version' and an 'items' list"),
    ("100k-deep nesting", '{"version": 1, "items": ' + DEEP + "}", 2, "JSON nested too deeply"),
    ("duplicate key", '{"version": 1, "items": [], "items": []}', 2, "key 'items' appears twice"),
    ("duplicate item", json.dumps(doc(item(), item(faces=[]))), 2, "items[1]: in.png frame 0 is listed twice"),
    ("negative frame", json.dumps(doc(item(frame=-1))), 2, "items[0].frame: expected a frame index >= 0"),
    ("empty source", json.dumps(doc(item(source=""))), 2, "items[0].source: expected the input's name"),
    ("not JSON", "{not json", 2, "not valid JSON (line 1, column 2"),
    ("empty file", "", 2, "not valid JSON"),
    # Lookup: by source name and size, exactly.
    ("made for another image", json.dumps(doc(item(source="other.png"))),
     1, "no item for source 'in.png' frame 0 (sources in the file: 'other.png')"),
    ("same name, another path", json.dumps(doc(item(source="sub/in.png"))), 1, "no item for source 'in.png'"),
    ("made for another size", json.dumps(doc(item(size_hw=[128, 160], faces=[face([40, 32, 88, 80])]))),
     1, "items[0].size_hw: [128, 160] does not match in.png frame 0's [64, 80]"),
    ("another frame only", json.dumps(doc(item(frame=3))), 1, "no item for source 'in.png' frame 0"),
]


@pytest.mark.parametrize("case, text, code, message", HOSTILE, ids=[row[0] for row in HOSTILE])
def test_hostile_detections_file(tmp_path, case, text, code, message):
    write_image(tmp_path)
    dets = tmp_path / "dets.json"
    dets.write_text(text)
    result = run(GAUSSIAN, tmp_path, dets)
    assert result.exit_code == code, result.output
    assert message in result.output
    assert "dets.json" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out.png").exists()


def test_not_utf8_and_not_a_regular_file(tmp_path):
    write_image(tmp_path)
    dets = tmp_path / "dets.json"
    dets.write_bytes(b'{"version": 1, "items": [{"source": "\xff"}]}')
    result = run(GAUSSIAN, tmp_path, dets)
    assert result.exit_code == 2 and "dets.json: not UTF-8 text" in result.output
    if hasattr(os, "mkfifo"):  # would block forever if it were opened
        fifo = tmp_path / "fifo.json"
        os.mkfifo(fifo)
        result = run(GAUSSIAN, tmp_path, fifo)
        assert result.exit_code == 2 and "fifo.json: not a regular file" in result.output


def test_a_config_with_person_stages_is_refused(tmp_path):
    write_image(tmp_path)
    config = tmp_path / "bodies.py"
    config.write_text(
        "from dp2.anonymizer import Anonymizer\nfrom dp2.config import LazyCall as L\n"
        "from dp2.detection.fixed import FixedFaceDetector\nfrom dp2.generation.classic import GaussianBlur\n"
        "from dp2.stages import MaskFilterStage, RegionFilterStage\n"
        "anonymizer = L(Anonymizer)(detector=L(FixedFaceDetector)(), face=L(RegionFilterStage)(generator=L(GaussianBlur)()),"
        " person=L(MaskFilterStage)(generator=L(GaussianBlur)()))\n")
    dets = tmp_path / "dets.json"
    dets.write_text(json.dumps(doc()))
    result = run(config, tmp_path, dets)
    assert result.exit_code == 2 and "--detections holds face boxes only" in result.output and "persons" in result.output


@pytest.mark.parametrize("box", [[-10, -8, 30, 30], [60.2, 40.7, 95, 70], [0, 0, 80, 64]])
def test_boxes_past_the_border_are_anonymized_inside_it(tmp_path, box):
    arr = write_image(tmp_path)
    dets = tmp_path / "dets.json"
    dets.write_text(json.dumps(doc(item(faces=[face(box)], persons=[]))))
    result = run(BLACK, tmp_path, dets)
    assert result.exit_code == 0, result.output
    out = np.array(Image.open(tmp_path / "out.png"))
    x0, y0 = max(0, math.floor(box[0])), max(0, math.floor(box[1]))
    x1, y1 = min(W, math.ceil(box[2])), min(H, math.ceil(box[3]))
    assert (out[y0:y1, x0:x1] == 0).all()
    assert (out != arr).any(axis=2).sum() < H * W or box == [0, 0, 80, 64]


def test_gaussian_config_blurs_the_given_face(tmp_path):
    arr = write_image(tmp_path)
    dets = tmp_path / "dets.json"
    dets.write_text(json.dumps(doc()))
    result = run(GAUSSIAN, tmp_path, dets)
    assert result.exit_code == 0 and "1 face " in result.output
    out = np.array(Image.open(tmp_path / "out.png"))
    assert (out[16:40, 20:44] != arr[16:40, 20:44]).any(axis=2).mean() > 0.5
    assert (out[:, 50:] == arr[:, 50:]).all()


def test_export_is_one_frame_per_line_and_reads_back(tmp_path):
    arr = write_image(tmp_path)
    first = tmp_path / "first.json"
    first.write_text(json.dumps(doc(item(faces=[face([20, 16, 44, 40], landmarks=[[25.5, 20.25], [30, 30]])]))))
    export = tmp_path / "export.json"
    assert run(BLACK, tmp_path, first, "--export-detections", export).exit_code == 0
    lines = export.read_text().splitlines()
    assert lines[0] == '{"version": 1, "items": [' and lines[-1] == "]}" and len(lines) == 3
    assert json.loads(lines[1]) == item(faces=[face([20, 16, 44, 40], landmarks=[[25.5, 20.25], [30.0, 30.0]])])
    (tmp_path / "out.png").unlink()
    result = run(BLACK, tmp_path, export)
    assert result.exit_code == 0, result.output
    assert (np.array(Image.open(tmp_path / "out.png"))[16:40, 20:44] == 0).all() and arr.min() > 0


# --- fuzzing ---------------------------------------------------------------------------------

def mostly(valid, hostile, n):
    """``valid`` about n times in n + 1, else ``hostile``."""
    # (st.one_of with repeated branches does not weight them; a sampled flag does.)
    return st.sampled_from([True] * n + [False]).flatmap(lambda ok: valid if ok else hostile)


def chance(one_in):
    """True about once in ``one_in`` draws (st.integers would favour 0)."""
    return st.sampled_from([False] * (one_in - 1) + [True])


_wild = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**30, 10**30),
                  st.sampled_from([-81, -80, -65, -64, 0, 63, 64, 65, 79, 80, 81, 128, 129, 160, 161, 1e29]))
_junk = st.recursive(st.none() | st.booleans() | _wild | st.text(max_size=3),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=2),
                     max_leaves=5)


def documents(n):
    """Detections files in the export format, each part hostile about once in ``n + 1``: mostly
    valid, so that every check is reached, and hostile in every place a file can be."""
    coordinate = mostly(st.integers(-90, 170) | st.floats(-90, 170), _wild | _junk, n)
    start = st.integers(-25, 75) | st.floats(-25, 75)
    size = st.integers(1, 40) | st.floats(0.5, 40)
    good_box = st.tuples(start, start, size, size).map(lambda t: [t[0], min(t[1], 60), t[0] + t[2], min(t[1], 60) + t[3]])
    box = mostly(good_box, st.lists(coordinate, min_size=4, max_size=4) | st.lists(coordinate, max_size=5) | _junk,
                 max(1, n // 3))
    size_hw = mostly(st.just([H, W]), st.sampled_from([[W, H], [0, W], [-H, W], [H, 0], [H], [H, W, 3], [H * 1.0, W]])
                     | _junk, n)

    @st.composite
    def face(draw):
        entry = {"box": draw(box)}
        if draw(chance(2)):
            entry["score"] = draw(mostly(st.floats(0, 1), st.floats(-1, 2) | _junk, n))
        if draw(chance(5)):
            entry["landmarks"] = draw(mostly(st.lists(st.lists(coordinate, min_size=2, max_size=2), max_size=5), _junk, n))
        if draw(chance(3 * n)):
            entry[draw(st.sampled_from(["bbox", "Box", "id"]))] = draw(_junk)
        return entry

    @st.composite
    def item(draw):
        entry = {"source": draw(mostly(st.sampled_from(["in.png", "in.png", "b.png", "c/in.png"]),
                                       st.sampled_from(["", "IN.PNG", "in.png "]) | _junk, n)),
                 "size_hw": draw(size_hw),
                 "faces": draw(mostly(st.lists(face(), min_size=1, max_size=3), st.just([]) | _junk, n))}
        if draw(chance(2)):
            entry["frame"] = draw(mostly(st.just(0), st.sampled_from([1, -1, 0.0, True, None, "0"]), n))
        if draw(chance(n)):
            kind = draw(st.sampled_from(["persons", "cse_persons", "time_s", "hands", "faces "]))
            entry[kind] = draw(st.just([]) | st.lists(face(), max_size=1) | _wild | _junk)
        return entry

    return st.fixed_dictionaries({
        "version": mostly(st.just(1), st.sampled_from([0, 2, 99, "1", True, 1.0]) | _junk, 2 * n),
        "items": mostly(st.lists(item(), min_size=1, max_size=3), _junk, 2 * n)})


def _boxes_for_the_image(payload):
    """The face boxes a file says the image has (only meaningful for a file dp2 accepted)."""
    boxes = []
    for entry in payload["items"]:
        if entry["source"] == "in.png" and entry.get("frame", 0) == 0:
            boxes += [f["box"] for f in entry.get("faces", [])]
    return boxes


def _check_outcome(payload, code, output, out_path):
    if code != 0:
        assert code in (1, 2) and "dets.json" in output and "Traceback" not in output, output
        assert not out_path.exists()
        return
    out = np.array(Image.open(out_path))
    for box in _boxes_for_the_image(payload):
        x0, y0 = max(0, math.floor(box[0])), max(0, math.floor(box[1]))
        x1, y1 = min(W, math.ceil(box[2])), min(H, math.ceil(box[3]))
        assert x1 > x0 and y1 > y0, f"accepted a box without area inside the image: {box}"
        assert (out[y0:y1, x0:x1] == 0).all(), f"exit 0 but face {box} was left visible"


@settings(max_examples=150, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(payload=documents(30))
def test_fuzzed_files_never_leave_a_face_untouched(tmp_path, payload):
    write_image(tmp_path)
    (tmp_path / "out.png").unlink(missing_ok=True)
    dets = tmp_path / "dets.json"
    dets.write_text(json.dumps(payload))  # NaN/Infinity written as JSON tokens, as a hostile file would
    result = run(BLACK, tmp_path, dets)
    _check_outcome(payload, result.exit_code, result.output, tmp_path / "out.png")


@settings(max_examples=400, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(payload=documents(10))
def test_fuzzed_files_parse_or_fail_with_the_file_named(tmp_path, payload):
    # The parser alone, many more examples: a ValueError naming the file, or detections whose
    # boxes are the file's (rounded outward) with area inside the image.
    dets = tmp_path / "dets.json"
    dets.write_text(json.dumps(payload))
    try:
        given_dets = GivenDetections(dets)
        found = given_dets.get("in.png", 0, (H, W))
    except ValueError as e:
        assert str(e).startswith(str(dets)), e
        return
    expected = [[math.floor(b[0]), math.floor(b[1]), math.ceil(b[2]), math.ceil(b[3])] for b in _boxes_for_the_image(payload)]
    got = [] if found.faces is None else found.faces.boxes_xyxy.tolist()
    assert got == expected
    for x0, y0, x1, y1 in got:
        assert min(x1, W) > max(x0, 0) and min(y1, H) > max(y0, 0)


def test_video_export_reads_back_and_a_missing_frame_fails(tmp_path, fixed_config):
    from media_factory import N, make_clip

    from dp2.io.video import VideoReader

    clip = make_clip(tmp_path / "clip.mp4", audio_codec=None)
    export = tmp_path / "dets.json"
    args = ["-i", clip, "--temporal-fill", "0"]
    assert CliRunner().invoke(main, [str(a) for a in [fixed_config, *args, "-o", tmp_path / "a.mp4",
                                                      "--export-detections", export]]).exit_code == 0
    assert len(export.read_text().splitlines()) == N + 2  # header, one line per frame, footer
    empty = tmp_path / "empty.py"
    empty.write_text(fixed_config.read_text().replace("boxes=[[20, 16, 44, 40]]", "boxes=[]"))
    result = CliRunner().invoke(main, [str(a) for a in [empty, *args, "-o", tmp_path / "b.mp4", "--detections", export]])
    assert result.exit_code == 0, result.output
    with VideoReader(tmp_path / "b.mp4") as reader:
        assert all(frame[18:38, 22:42].max() < 40 for frame, _ in reader)
    # Drop the last frame's item: that frame has no detections, so the video fails, not leaks.
    payload = json.loads(export.read_text())
    payload["items"] = payload["items"][:-1]
    export.write_text(json.dumps(payload))
    result = CliRunner().invoke(main, [str(a) for a in [empty, *args, "-o", tmp_path / "c.mp4", "--detections", export]])
    assert result.exit_code == 1 and f"no item for source 'clip.mp4' frame {N - 1}" in result.output
    assert not (tmp_path / "c.mp4").exists() and not list(tmp_path.glob(".c*"))


@pytest.mark.parametrize("depth", [40, 900])
def test_deep_but_parseable_values_are_refused_by_depth(tmp_path, depth):
    write_image(tmp_path)
    dets = tmp_path / "dets.json"
    dets.write_text(json.dumps(doc(item(faces=[face([0, 0, 10, 10])]))).replace("[0, 0, 10, 10]", "[" * depth + "]" * depth))
    result = run(GAUSSIAN, tmp_path, dets)
    assert result.exit_code == 2 and "dets.json: JSON nested" in result.output, result.output
