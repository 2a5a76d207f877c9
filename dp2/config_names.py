"""Configs by name: ``face``, ``traditional/face/gaussian``, ``configs/anonymizers/face.py``, or a file.

The bundled configs are DeepPrivacy2's ``configs/`` tree. In a source checkout they are the
repository's ``configs/`` folder; an installed wheel carries the same files as
``dp2/configs/``. Names are resolved without importing torch, so the CLI can answer
``--list-configs`` and name errors at once.

Resolution order for ``name`` (first match wins):

1. an existing file (a user's own config, or ``configs/...`` from a checkout's root);
2. a bundled config: the part after the last ``configs/`` (DeepPrivacy2's spelling works from
   any folder), ``.py`` optional, looked up under ``anonymizers/`` first, then at the top
   (``fdf/stylegan`` for ``--person-generator``);
3. the file name of exactly one bundled anonymizer config (``pixelation16``).

Example:
    >>> resolve_config("traditional/face/gaussian").name
    'gaussian.py'
    >>> config_name(resolve_config("configs/anonymizers/face.py"))
    'face'
"""
from __future__ import annotations

import ast
import difflib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

__all__ = ["ConfigNameError", "ConfigInfo", "bundled_config_dir", "config_name", "describe_config", "list_configs",
           "resolve_config"]

_ANONYMIZERS = "anonymizers"


class ConfigNameError(ValueError):
    """No config file or bundled config has this name (the message lists close names)."""


def bundled_config_dir() -> Path:
    """The folder holding the bundled configs: ``dp2/configs`` when installed, else the checkout's ``configs``."""
    package = Path(__file__).resolve().parent
    installed = package / "configs"
    return installed if installed.is_dir() else package.parent / "configs"


def _bundled_files() -> list[Path]:
    root = bundled_config_dir()
    return sorted(p for p in root.rglob("*.py") if p.name != "__init__.py" and "__pycache__" not in p.parts)


def config_name(path: Path) -> str:
    """The short name of a bundled config (``face``, ``traditional/face/gaussian``, ``fdf/stylegan``);
    other files keep their path."""
    try:
        rel = Path(path).resolve().relative_to(bundled_config_dir().resolve())
    except ValueError:
        return str(path)
    parts = rel.with_suffix("").parts
    return "/".join(parts[1:] if parts[0] == _ANONYMIZERS else parts)


def resolve_config(name: str | Path) -> Path:
    """The config file ``name`` stands for (see the module docstring).

    Raises:
        ConfigNameError: nothing matches, or a bare file name matches several configs.
    """
    text = str(name)
    path = Path(text).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        raise ConfigNameError(f"{text} is a folder, not a config file")
    key = text.replace("\\", "/")
    if "configs/" in key:
        key = key.rsplit("configs/", 1)[1]
    key = key.removeprefix("./").removesuffix(".py").strip("/")
    root = bundled_config_dir()
    if key and ".." not in key.split("/"):
        for candidate in (root / _ANONYMIZERS / f"{key}.py", root / f"{key}.py"):
            if candidate.is_file():
                return candidate
        if "/" not in key:
            same_stem = [p for p in _bundled_files() if p.stem == key and _ANONYMIZERS in p.relative_to(root).parts]
            if len(same_stem) == 1:
                return same_stem[0]
            if len(same_stem) > 1:
                names = ", ".join(config_name(p) for p in same_stem)
                raise ConfigNameError(f"config {text!r} is ambiguous: it could be {names}")
    names = [config_name(p) for p in _bundled_files()]
    close = difflib.get_close_matches(key, names, n=3, cutoff=0.5)
    close += [n for n in names if key and n.endswith("/" + key) and n not in close][:3]
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise ConfigNameError(f"config {text!r} not found: it is not a file, nor a bundled config{hint} "
                          "(dp2-anonymize --list-configs shows them)")


def describe_config(path: Path) -> str:
    """The first sentence of a config file's docstring (one line), or ``""``."""
    return _describe(str(path))


@lru_cache(maxsize=None)
def _describe(path: str) -> str:
    try:
        doc = ast.get_docstring(ast.parse(Path(path).read_text(encoding="utf-8"))) or ""
    except (OSError, SyntaxError, ValueError, UnicodeDecodeError):
        return ""
    paragraph = " ".join(doc.split("\n\n", 1)[0].split())
    for end in (". ", ": "):
        if end in paragraph and paragraph.index(end) > 20:
            paragraph = paragraph[:paragraph.index(end) + 1].rstrip(":") if end == ". " else paragraph
            break
    return paragraph


@dataclass(frozen=True)
class ConfigInfo:
    """A bundled config for ``--list-configs``.

    Attributes:
        name: short name to pass to the CLI.
        path: the file.
        kind: ``anonymizer`` (runnable), ``generator`` or ``detector`` (for the ``--*-generator``
            options and for imports).
        description: first sentence of the docstring.
        models: what it loads (:class:`dp2.weights_catalog.Need`), or None when it could not be read.
    """

    name: str
    path: Path
    kind: str
    description: str
    models: tuple | None


def list_configs(*, with_models: bool = True) -> list[ConfigInfo]:
    """Every bundled config, anonymizers first; ``with_models`` reads what each one loads
    (configs are loaded with stubbed components: no torch)."""
    root = bundled_config_dir()
    infos = []
    for path in _bundled_files():
        top = path.relative_to(root).parts[0]
        kind = {"anonymizers": "anonymizer", "detectors": "detector"}.get(top, "generator")
        models = _models(path, kind) if with_models else None
        infos.append(ConfigInfo(config_name(path), path, kind, describe_config(path), models))
    order = {"anonymizer": 0, "generator": 1, "detector": 2}
    return sorted(infos, key=lambda i: (order[i.kind], i.name.count("/"), i.name))


def _models(path: Path, kind: str) -> tuple | None:
    from .config import ConfigError, load_config
    from .weights_catalog import required_models

    try:
        cfg = load_config(path, stub_components=True)
    except ConfigError:
        return None
    return tuple(required_models(cfg, root="anonymizer" if kind == "anonymizer" else None))
