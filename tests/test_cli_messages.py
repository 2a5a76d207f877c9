"""Small messages a user meets: did-you-mean once per key, --st/--et counted from the first video
frame (and a warning when --et is past the video's end), configs by name in the Python API."""
from __future__ import annotations

from click.testing import CliRunner
from PIL import Image

from dp2.api import load_anonymizer_config
from dp2.cli import main
from dp2.config import ConfigError

from helpers import make_image
from media_factory import make_clip


def test_did_you_mean_lists_each_key_once():
    cfg = load_anonymizer_config("traditional/face/gaussian")
    try:
        from dp2.config import apply_overrides

        apply_overrides(cfg, ["detector.score_treshold=0.5"])
    except ConfigError as e:
        message = str(e)
    else:
        raise AssertionError("a misspelt key must fail")
    hint = message.split("Did you mean:", 1)[1]
    keys = [k.strip(" ?") for k in hint.split(",")]
    assert "detector.score_threshold" in keys and len(keys) == len(set(keys)), message


def test_times_count_from_the_first_video_frame_and_a_late_end_warns(tmp_path, fixed_config):
    clip = make_clip(tmp_path / "late.mp4", video_delay_s=0.6)  # 2 s of video, starting 0.6 s into the file
    out = tmp_path / "out.mp4"
    result = CliRunner().invoke(main, [str(fixed_config), "-i", str(clip), "-o", str(out), "--st", "1", "--et", "5"])
    assert result.exit_code == 0, result.output
    assert "--end-time 5 is past the end of the video (2.00 s after its first frame, which is 0.60 s into the file)" \
        in result.output
    assert "(25 frames)" in result.output  # 1 s to 2 s of 25 fps video


def test_help_states_the_time_origin():
    result = CliRunner().invoke(main, ["--help"], terminal_width=200)
    assert "seconds from the video's first frame" in " ".join(result.output.split())


def test_a_single_image_summary_counts_in_words(tmp_path, fixed_config):
    image = tmp_path / "one.png"
    Image.fromarray(make_image(64, 80)).save(image)
    result = CliRunner().invoke(main, [str(fixed_config), "-i", str(image), "-o", str(tmp_path / "o.png")])
    assert result.exit_code == 0 and "anonymized one.png: 1 face -> " in result.output, result.output
