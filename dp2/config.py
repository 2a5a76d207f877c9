"""Python config files, in the spirit of DeepPrivacy2's LazyConfig.

A config file is plain Python. ``LazyCall(SomeClass)(arg=...)`` records a call
without making it: the result is an omegaconf ``DictConfig`` with a
``_target_`` entry (the dotted import path of the callable) and the keyword
arguments. Config files may import and edit other config files with relative
imports (``from .face import detector``); ``${detector}`` interpolations refer
to other top-level nodes. :func:`instantiate` builds the objects; the CLI calls
it once. Components never read config files.

Example:
    >>> from dp2.config import LazyCall as L, instantiate
    >>> node = L(dict)(a=1, b=L(list)())
    >>> instantiate(node)
    {'a': 1, 'b': []}
"""
from __future__ import annotations

import ast
import builtins
import contextlib
import difflib
import importlib
import re
import threading
import types
from pathlib import Path
from typing import Any, Callable, Iterable

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

__all__ = ["ConfigError", "LazyCall", "load_config", "instantiate", "apply_overrides", "check_literal",
           "config_to_yaml", "flat_keys"]

TARGET_KEY = "_target_"


class ConfigError(ValueError):
    """A config file or an override is wrong; the message says what and where."""


def _target_name(target: Callable | str) -> str:
    if isinstance(target, str):
        return target
    module = getattr(target, "__module__", None)
    qualname = getattr(target, "__qualname__", None)
    if not module or not qualname or "<locals>" in qualname:
        raise ConfigError(f"LazyCall target {target!r} must be an importable top-level callable")
    return f"{module}.{qualname}"


class LazyCall:
    """Record a call: ``LazyCall(cls)(**kwargs)`` -> ``DictConfig`` with ``_target_``.

    Only keyword arguments are recorded (constructors in dp2 are keyword-only).
    """

    def __init__(self, target: Callable | str) -> None:
        self._target = _target_name(target)

    def __call__(self, **kwargs: Any) -> DictConfig:
        if getattr(_stub_components, "on", False):  # a listing: plain data is enough, and 10x faster
            return _AttrDict({TARGET_KEY: self._target, **kwargs})  # type: ignore[return-value]
        return OmegaConf.create({TARGET_KEY: self._target, **kwargs}, flags={"allow_objects": True})


class _AttrDict(dict):
    """A dict whose keys are also attributes, as config files use DictConfig nodes (stubbed loads)."""

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None

    def __setattr__(self, key: str, value: Any) -> None:
        self[key] = value


# --- loading ----------------------------------------------------------------------------------

_IMPORT_LOCK = threading.RLock()
_CONFIG_FILE = "__dp2_config_file__"


def _resolve_relative(importer: Path, name: str, level: int) -> Path:
    base = importer.parent
    for _ in range(level - 1):
        base = base.parent
    parts = name.split(".") if name else []
    return base.joinpath(*parts)


def _exec_config(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        source = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read the config file ({e})") from e
    try:
        code = compile(source, str(path), "exec")
    except (SyntaxError, ValueError) as e:  # ValueError: NUL bytes in the source
        where = f" on line {e.lineno}" if getattr(e, "lineno", None) else ""
        raise ConfigError(f"{path}: syntax error{where}: {getattr(e, 'msg', e)}") from e
    namespace: dict[str, Any] = {"__file__": str(path), "__name__": f"dp2_config.{path.stem}", _CONFIG_FILE: path}
    try:
        exec(code, namespace)  # noqa: S102 - config files are code by design, like DP2's
    except ConfigError:
        raise  # from a config file it imports; names that file already
    except (Exception, SystemExit) as e:  # the file's own code failed: one line naming it and where
        raise ConfigError(f"{path}{_line_in(e, path)}: {type(e).__name__}: {e}") from e
    return namespace


def _line_in(error: BaseException, path: Path) -> str:
    """`` line N`` of the innermost traceback entry in ``path`` (empty when none is)."""
    line = None
    tb = error.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == str(path):
            line = tb.tb_lineno
        tb = tb.tb_next
    return f" line {line}" if line is not None else ""


def _module_from_file(path: Path) -> types.ModuleType:
    namespace = _exec_config(path)
    module = types.ModuleType(f"dp2_config.{path.stem}")
    module.__dict__.update(namespace)
    return module


#: Config files may import the bundled configs by this absolute name, from any folder
#: (``from dp2.configs.anonymizers.face import anonymizer``); see :mod:`dp2.config_names`.
BUNDLED_PACKAGE = "dp2.configs"


class _StubModule(types.ModuleType):
    """A dp2 component module seen by a config file loaded without its components (see
    :func:`load_config` ``stub_components``): every attribute is a :class:`_Stub` with the dotted
    name LazyCall records, so the config loads without importing torch."""

    def __getattr__(self, attr: str) -> "_Stub":
        if attr.startswith("__"):
            raise AttributeError(attr)
        return _Stub(self.__name__, attr)


class _Stub:
    def __init__(self, module: str, qualname: str) -> None:
        self.__module__ = module
        self.__qualname__ = qualname

    def __getattr__(self, attr: str) -> "_Stub":
        if attr.startswith("__"):
            raise AttributeError(attr)
        return _Stub(self.__module__, f"{self.__qualname__}.{attr}")

    def __call__(self, *args: Any, **kwargs: Any) -> "_Stub":
        return _Stub(self.__module__, f"{self.__qualname__}()")


def _stubbed(name: str) -> bool:
    """Whether ``import name`` in a config file gets a stub when components are not imported."""
    return name.startswith("dp2.") and name != "dp2.config" and not name.startswith(BUNDLED_PACKAGE)


def _stub_import(name: str, fromlist) -> types.ModuleType:
    module = _StubModule(name)
    if fromlist:
        return module
    top = _StubModule(name.split(".")[0])  # ``import dp2.x`` binds ``dp2``
    node = top
    for part in name.split(".")[1:]:
        child = _StubModule(f"{node.__name__}.{part}")
        setattr(node, part, child)
        node = child
    return top


def _config_module(importer: Path, target: Path, fromlist, spelled: str) -> types.ModuleType:
    """The config file or folder ``target`` as a module (``fromlist`` names files of a folder)."""
    if target.with_suffix(".py").is_file():
        return _module_from_file(target.with_suffix(".py"))
    if target.is_dir():
        # ``from . import face``: give each requested name as a submodule.
        package = types.ModuleType(f"dp2_config.{target.name}")
        for item in fromlist or ():
            file = target / f"{item}.py"
            if not file.is_file():
                raise ConfigError(f"{importer}: cannot import {item!r}: {file} does not exist")
            setattr(package, item, _module_from_file(file))
        return package
    raise ConfigError(f"{importer}: import {spelled} does not name a config file ({target}.py)")


_stub_components = threading.local()


@contextlib.contextmanager
def _relative_imports():
    """Let config files import sibling config files by relative path (re-executed on every import),
    and the bundled configs as ``dp2.configs.<path>``."""
    original = builtins.__import__

    def patched(name, globals=None, locals=None, fromlist=(), level=0):
        importer = (globals or {}).get(_CONFIG_FILE)
        if importer is None:
            return original(name, globals, locals, fromlist, level)
        if level == 0 and (name == BUNDLED_PACKAGE or name.startswith(BUNDLED_PACKAGE + ".")):
            from .config_names import bundled_config_dir

            parts = name.split(".")[2:]
            if not fromlist and parts:
                raise ConfigError(f"{importer}: write 'from {name} import ...' to use a bundled config")
            return _config_module(Path(importer), bundled_config_dir().joinpath(*parts), fromlist, name)
        if level == 0 and getattr(_stub_components, "on", False) and _stubbed(name):
            return _stub_import(name, fromlist)
        if level == 0:
            return original(name, globals, locals, fromlist, level)
        target = _resolve_relative(Path(importer), name, level)
        return _config_module(Path(importer), target, fromlist, f"{'.' * level}{name} (relative)")

    with _IMPORT_LOCK:
        builtins.__import__ = patched
        try:
            yield
        finally:
            builtins.__import__ = original


def load_config(path: str | Path, *, stub_components: bool = False) -> DictConfig:
    """Execute a config file and collect its top-level config nodes.

    Top-level names not starting with ``_`` whose values are dicts, lists,
    ``DictConfig`` or ``ListConfig`` form the returned root config.

    Args:
        path: the config file. A bare name (``face``, ``traditional/face/gaussian``) is not
            looked up here: see :func:`dp2.config_names.resolve_config`.
            stub_components: do not import the dp2 modules the file imports (``dp2.anonymizer``,
            ``dp2.stages`` ...): their names are recorded as usual, and the result is a plain
            dict (``${...}`` interpolations left as strings) to read, not to instantiate. Fast:
            no torch. For listing configs.

    Raises:
        ConfigError: missing or unreadable file, syntax error, an exception raised by the file's
            code (the message names the file and line), or a broken relative import.
    """
    path = Path(path).resolve()
    with _relative_imports():
        previous = getattr(_stub_components, "on", False)
        _stub_components.on = stub_components
        try:
            namespace = _exec_config(path)
        finally:
            _stub_components.on = previous
    content = {
        key: value
        for key, value in namespace.items()
        if not key.startswith("_") and isinstance(value, (dict, list, DictConfig, ListConfig))
    }
    if stub_components:
        return content  # type: ignore[return-value]
    return OmegaConf.create(content, flags={"allow_objects": True})


# --- instantiation ----------------------------------------------------------------------------

def _locate(dotted: str) -> Callable:
    module_name, _, attr = dotted.rpartition(".")
    parts = dotted.split(".")
    # Find the longest importable module prefix, then walk attributes (nested classes).
    for i in range(len(parts) - 1, 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:i]))
        except ModuleNotFoundError:
            continue
        for part in parts[i:]:
            obj = getattr(obj, part, None)
            if obj is None:
                break
        if obj is not None:
            return obj
    raise ConfigError(f"cannot import {dotted!r} (module {module_name!r}, attribute {attr!r})")


def _build(node: Any, key_path: str) -> Any:
    if isinstance(node, dict):
        if TARGET_KEY in node:
            target = _locate(node[TARGET_KEY])
            kwargs = {k: _build(v, f"{key_path}.{k}" if key_path else k) for k, v in node.items() if k != TARGET_KEY}
            try:
                return target(**kwargs)
            except ConfigError:
                raise
            except (TypeError, ValueError, ArithmeticError) as e:  # a constructor refused a value
                raise ConfigError(f"cannot build {key_path or 'config'} ({node[TARGET_KEY]}): {e}") from e
        return {k: _build(v, f"{key_path}.{k}" if key_path else k) for k, v in node.items()}
    if isinstance(node, list):
        return [_build(v, f"{key_path}[{i}]") for i, v in enumerate(node)]
    return node


def instantiate(cfg: Any, key_path: str = "") -> Any:
    """Recursively build every node with a ``_target_``; interpolations are resolved first.

    Raises:
        ConfigError: an interpolation does not resolve, a ``_target_`` does not import, or a
            constructor refuses its arguments (TypeError, ValueError, ArithmeticError); the
            message names the node (``anonymizer.detector``), its target and the reason.
    """
    if isinstance(cfg, (DictConfig, ListConfig)):
        try:
            container = OmegaConf.to_container(cfg, resolve=True)
        except Exception as e:  # omegaconf raises several interpolation error types
            raise ConfigError(f"cannot resolve config {key_path or ''}: {e}") from e
    else:
        container = cfg
    return _build(container, key_path)


# --- overrides --------------------------------------------------------------------------------

def flat_keys(cfg: DictConfig | ListConfig, prefix: str = "") -> list[str]:
    """Every dotted key of a config (without following interpolations)."""
    keys: list[str] = []
    items: Iterable = cfg.items_ex(resolve=False) if isinstance(cfg, DictConfig) else enumerate(cfg)
    for key, value in items:
        full = f"{prefix}.{key}" if prefix else str(key)
        keys.append(full)
        node = cfg._get_node(key)  # type: ignore[union-attr]
        if isinstance(node, (DictConfig, ListConfig)) and not node._is_interpolation():
            keys.extend(flat_keys(node, full))
    return keys


def parse_value(text: str) -> Any:
    """Parse an override value with ``ast.literal_eval``; anything else stays a string.

    Parsing never runs code; :func:`apply_overrides` then refuses values that would make the
    config build something (:func:`check_literal`).
    """
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text


# Keys of the form ``_name_`` steer instantiation (``_target_``; hydra adds ``_args_``,
# ``_partial_``, ``_recursive_``, ``_convert_``), dunder names reach Python internals. Neither is
# a value, so an override may not set or contain one.
_RESERVED_KEY = re.compile(r"_.*_")
_KEY_PART = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|[0-9]+")


def _check_key_name(name: Any, where: str) -> None:
    if not isinstance(name, str):
        raise ConfigError(f"{where}: keys must be strings, got {name!r}")
    if _RESERVED_KEY.fullmatch(name):
        raise ConfigError(f"{where}: key {name!r} is reserved: {TARGET_KEY} and other _name_ keys choose what a "
                          "config builds, and override values are literals (write a config file to build something)")
    if "${" in name:
        raise ConfigError(f"{where}: key {name!r} holds an interpolation; override values are literals")


def check_literal(value: Any, where: str) -> Any:
    """``value`` as plain config data, or ConfigError saying why it is not.

    Allowed: None, bool, int, float, str (without ``${`` interpolations or resolvers), and lists,
    tuples (become lists) and str-keyed dicts of those, where no key is reserved (``_target_``,
    ``_args_``, ``__class__``, ...). Nothing allowed here can name or reach a callable.
    """
    stack = [(value, where)]
    while stack:
        item, here = stack.pop()
        if item is None or isinstance(item, (bool, int, float)):
            continue
        if isinstance(item, str):
            if "${" in item:
                raise ConfigError(f"{here}: {item!r} is an interpolation; override values are literals "
                                  "(${...} could point at another node or call a resolver)")
            continue
        if isinstance(item, (list, tuple)):
            stack.extend((v, f"{here}[{i}]") for i, v in enumerate(item))
            continue
        if isinstance(item, dict):
            for k, v in item.items():
                _check_key_name(k, here)
                stack.append((v, f"{here}.{k}"))
            continue
        raise ConfigError(f"{here}: {type(item).__name__} values are not config data "
                          "(use None, bools, numbers, strings, lists or dicts)")
    return _as_lists(value)


def _as_lists(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_as_lists(v) for v in value]
    if isinstance(value, dict):
        return {k: _as_lists(v) for k, v in value.items()}
    return value


def _check_override_key(key: str, item: str) -> None:
    if not key:
        raise ConfigError(f"override {item!r} must look like key=value")
    for part in key.split("."):
        if not _KEY_PART.fullmatch(part):
            raise ConfigError(f"override {key}: not a dotted config key "
                              "(names of letters, digits and _, or list indices, joined by '.')")
        _check_key_name(part, f"override {key}")


def _builds_something(node: Any) -> str | None:
    """The first ``_target_`` in a config subtree (following interpolations), else None."""
    stack, seen = [node], set()
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if current._is_interpolation():
            try:
                stack.append(current._dereference_node())
            except OmegaConfBaseException:  # a broken interpolation is reported when the config is built
                pass
            continue
        if current._is_none() or current._is_missing():
            continue
        if isinstance(current, DictConfig):
            if TARGET_KEY in current:
                return str(current._get_node(TARGET_KEY)._value())
            stack.extend(current._get_node(k) for k in current.keys())
        elif isinstance(current, ListConfig):
            stack.extend(current._get_node(i) for i in range(len(current)))
    return None


def _reachable(cfg: DictConfig) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    """(path, _target_) and (path, interpolation) pairs of a config tree, unresolved."""
    targets, interpolations = set(), set()
    stack = [(OmegaConf.to_container(cfg, resolve=False), "")]
    while stack:
        node, path = stack.pop()
        if isinstance(node, dict):
            for k, v in node.items():
                if k == TARGET_KEY:
                    targets.add((path, str(v)))
                stack.append((v, f"{path}.{k}" if path else str(k)))
        elif isinstance(node, list):
            stack.extend((v, f"{path}[{i}]") for i, v in enumerate(node))
        elif isinstance(node, str) and "${" in node:
            interpolations.add((path, node))
    return targets, interpolations


def _has_key(cfg: DictConfig, key: str) -> bool:
    node: Any = cfg
    for part in key.split("."):
        if isinstance(node, DictConfig):
            if part not in node:
                return False
            node = node._get_node(part)
            if node is not None and node._is_interpolation():
                node = node._dereference_node()
        elif isinstance(node, ListConfig):
            if not part.isdigit() or int(part) >= len(node):
                return False
            node = node._get_node(int(part))
        else:
            return False
    return True


def _node_at(cfg: DictConfig, key: str) -> Any:
    """The (unresolved) node at an existing dotted ``key``, following interpolations on the way."""
    node: Any = cfg
    for part in key.split("."):
        if node is not None and node._is_interpolation():
            node = node._dereference_node()
        node = node._get_node(int(part) if isinstance(node, ListConfig) else part)
    return node


def _target_parameters(cfg: DictConfig, parent: str) -> list[str]:
    """Keyword parameters of the callable a ``_target_`` node at ``parent`` would build."""
    import inspect

    node = OmegaConf.select(cfg, parent) if parent else cfg
    if not isinstance(node, DictConfig) or TARGET_KEY not in node:
        return []
    try:
        signature = inspect.signature(_locate(node[TARGET_KEY]))
    except (ConfigError, TypeError, ValueError):
        return []
    return [name for name, p in signature.parameters.items()
            if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and name != "self"]


def apply_overrides(cfg: DictConfig, overrides: Iterable[str]) -> DictConfig:
    """Apply ``key=value`` overrides in place (and return ``cfg``).

    Values are data, never code or objects to build: they are parsed with ``ast.literal_eval``
    (a value that does not parse stays a string) and must pass :func:`check_literal`. A key may
    not contain a reserved ``_name_`` part (``detector._target_=...``), and a node that builds
    an object (its subtree has a ``_target_``) may not be replaced, only its fields set, so
    ``--opt`` cannot reach any callable the config file did not already name at that place.

    A key may also name a constructor argument the config leaves at its default
    (``detector.upscale=None`` when ``detector`` is a ``LazyCall`` of a class taking ``upscale``).

    Raises:
        ConfigError: malformed override, unknown key (with did-you-mean suggestions), a value
            that is not a literal, or an override that would change what the config builds.
    """
    targets_before, interpolations_before = _reachable(cfg)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key=value")
        key, _, text = item.partition("=")
        key = key.strip()
        _check_override_key(key, item)
        value = check_literal(parse_value(text), f"override {key}")
        parent, _, leaf = key.rpartition(".")
        if not _has_key(cfg, key) and leaf in _target_parameters(cfg, parent):
            OmegaConf.update(cfg, key, value, merge=False, force_add=True)
            continue
        if not _has_key(cfg, key):
            candidates = flat_keys(cfg) + [f"{parent}.{p}" if parent else p for p in _target_parameters(cfg, parent)]
            candidates = list(dict.fromkeys(candidates))  # a set field is also a parameter: list it once
            close = difflib.get_close_matches(key, candidates, n=3, cutoff=0.5)
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            raise ConfigError(f"unknown config key {key!r}.{hint}")
        built = _builds_something(_node_at(cfg, key))
        if built is not None:
            raise ConfigError(f"override {key}: this node builds {built}; overrides set its fields "
                              f"({key}.<argument>=...), it cannot replace it (write a config file for that)")
        OmegaConf.update(cfg, key, value, merge=False)
    targets_after, interpolations_after = _reachable(cfg)
    # Belt and braces: whatever the checks above missed, overrides may remove but never add these.
    added = sorted(targets_after - targets_before) + sorted(interpolations_after - interpolations_before)
    if added:
        raise ConfigError(f"overrides may not add {TARGET_KEY} or interpolations to the config, got {added[0]}")
    return cfg


def config_to_yaml(cfg: DictConfig, resolve: bool = True) -> str:
    return OmegaConf.to_yaml(cfg, resolve=resolve)
