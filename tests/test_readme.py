"""The README's options table matches ``--help``: every option of the command is in the table, and
every option the table names exists."""
from __future__ import annotations

import re

import click

from dp2.cli import main

from helpers import REPO

OPTION = re.compile(r"(?<![\w-])(--?[A-Za-z][\w-]*)")


def _table_options() -> set[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("### Options", 1)[1]
    table = section[section.index("| option | meaning |"):].split("\n\n", 1)[0].splitlines()[2:]
    assert table, "no options table under '### Options'"
    names: set[str] = set()
    for row in table:
        first = row.split("|")[1]
        names.update(OPTION.findall(first))
    return names


def _help_options() -> set[str]:
    names = {"-h", "--help"}
    for param in main.params:
        if isinstance(param, click.Option):
            names.update(param.opts)
            names.update(param.secondary_opts)
    return names


def test_every_option_of_help_is_in_the_readme_table():
    missing = sorted(_help_options() - _table_options())
    assert not missing, f"options in --help but not in the README table: {missing}"


def test_every_option_in_the_readme_table_exists():
    unknown = sorted(_table_options() - _help_options())
    assert not unknown, f"options in the README table that --help does not have: {unknown}"


# --- the Python API section's examples run ---------------------------------------------------

PYTHON_BLOCK = re.compile(r"```python\n(.*?)```", re.S)


def _api_blocks() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("### Python API\n", 1)[1].split("\n## ", 1)[0]
    return PYTHON_BLOCK.findall(section)


def test_the_api_section_has_examples():
    blocks = _api_blocks()
    assert len(blocks) >= 4
    for name in ("dp2.load", ".stream(", ".detect(", "anonymize_file", "anonymize_folder"):
        assert any(name in block for block in blocks), f"no README API example uses {name}"


def test_every_readme_api_example_runs(tmp_path, monkeypatch):
    """The blocks run in order in one namespace, in a folder with photo.jpg, clip.mp4 and photos/."""
    import numpy as np
    from PIL import Image

    from helpers import CORPUS, make_image
    from media_factory import make_clip

    photo = CORPUS / "images" / "fr_obama-240p.jpg"
    image = Image.open(photo).convert("RGB") if photo.is_file() else Image.fromarray(make_image(120, 160))
    image.save(tmp_path / "photo.jpg")
    make_clip(tmp_path / "clip.mp4")
    (tmp_path / "photos" / "sub").mkdir(parents=True)
    for rel in ("a.jpg", "sub/b.png"):
        image.save(tmp_path / "photos" / rel)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for i, block in enumerate(_api_blocks()):
        try:
            exec(compile(block, f"README.md Python API block {i + 1}", "exec"), namespace)
        except Exception as e:  # name the block that broke
            raise AssertionError(f"README Python API block {i + 1} fails: {type(e).__name__}: {e}\n{block}") from e
    assert (tmp_path / "clip_anonymized.mp4").is_file() and (tmp_path / "photo.json").is_file()
    assert (tmp_path / "photos_anonymized" / "sub" / "b.png").is_file()
    assert namespace["stream"].stats.frames > 0
    assert isinstance(namespace["frame"], np.ndarray)
