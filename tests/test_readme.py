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
