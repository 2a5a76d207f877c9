"""``dp2-anonymize weights CONFIG [--download] [--dir DIR]`` and ``dp2-anonymize --list-configs``.

``weights`` lists every file a config loads: the model, file name, size, checksums, URLs
(official first, then mirrors), the folders dp2 looks in, and whether each file is there and
verified. ``--download`` fetches the missing ones (progress bar, verified before they get their
final name). Nothing here imports torch: configs are read with stubbed components
(:func:`dp2.config.load_config` ``stub_components``).

Exit codes: 0 every file a config needs is present and verified; 1 some are missing or broken
(after ``--download``: could not be fetched); 2 usage error.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable

import click

from .config_names import ConfigNameError, config_name, describe_config, list_configs, resolve_config
from .weights import WEIGHTS_ENV_VAR, WeightSpec, WeightsError, _check_file, hub_checkpoint_dir, search_dirs
from .weights_catalog import Model, Need, required_models

__all__ = ["file_status", "format_config_list", "missing_weights_message", "needs_of", "weights_command"]


def needs_of(config_path: Path) -> list[Need]:
    """The models a config file loads (read without building it).

    Raises:
        ConfigError: the file cannot be loaded.
    """
    from .config import ConfigError, load_config

    try:
        cfg = load_config(config_path, stub_components=True)
    except ConfigError:
        cfg = load_config(config_path)  # a file doing more than wiring: load it for real
    return required_models(cfg, root="anonymizer" if "anonymizer" in cfg else None)


def file_status(spec: WeightSpec, weights_dir: Path | None, alternatives: Iterable[WeightSpec] = ()) -> tuple[str, Path | None]:
    """``("verified" | "present" | "wrong hash: ..." | "missing", path)`` for one file.

    ``present``: found, and no checksum is published for it (recognised by name).
    """
    problems = []
    for candidate_spec in (spec, *alternatives):
        for folder in search_dirs(weights_dir):
            path = folder / candidate_spec.filename
            if not path.is_file():
                continue
            if not candidate_spec.expected_digests:
                return "present", path
            problem = _check_file(candidate_spec, path)
            if problem is None:
                return "verified", path
            problems.append((f"wrong hash: {problem}", path))
    return problems[0] if problems else ("missing", None)


def _short(filename: str, width: int = 40) -> str:
    return filename if len(filename) <= width else f"{filename[:16]}...{filename[-12:]}"


def missing_weights_message(error: WeightsError, cfg: Any, config_path: Path, *, weights_dir: Path | None = None,
                            prog: str = "dp2-anonymize") -> str:
    """A short error for a run that stopped on weights: the models, their missing files, the command to run."""
    name = config_name(config_path)
    folder = f" --dir {weights_dir}" if weights_dir is not None else ""
    if error.spec is None:  # a file was found but could not be loaded (corrupt, or not tensors only)
        return f"error: {error}\nCheck the files with: {prog} weights {name}{folder}"
    try:
        needs = required_models(cfg)
    except Exception:  # the message must come out whatever the config holds
        needs = []
    missing: list[tuple[Model, WeightSpec, str]] = []
    for need in needs:
        for spec in need.model.files:
            status, _ = file_status(spec, weights_dir, need.model.alternatives)
            if status not in ("verified", "present"):
                missing.append((need.model, spec, status))
    failed = error.spec
    if failed is not None and not any(spec.filename == failed.filename for _, spec, _ in missing):
        model = next((n.model for n in needs if failed in n.model.files), None)
        missing.insert(0, (model, failed, error.reason or "missing"))  # type: ignore[arg-type]
    if not missing:
        return f"error: {error}"
    lines = [f"error: {name} needs model weights that are missing:"]
    for model, spec, status in missing:
        why = error.reason if failed is not None and spec.filename == failed.filename and error.reason else status
        title = model.name if model is not None else "weights"
        size = f", {model.size_text()}" if model is not None else ""
        lines.append(f"  {title}: {_short(spec.filename)}{size} ({why})")
    lines.append(f"Run: {prog} weights {name}{folder} --download   (without --download: URLs, checksums "
                 "and where to put the files by hand)")
    return "\n".join(lines)


def _folders(weights_dir: Path | None) -> list[str]:
    lines = []
    env = os.environ.get(WEIGHTS_ENV_VAR)
    for i, folder in enumerate(search_dirs(weights_dir), 1):
        why = ("--dir" if weights_dir is not None and folder == Path(weights_dir).expanduser()
               else f"${WEIGHTS_ENV_VAR}" if env and folder == Path(env).expanduser()
               else "torch hub cache, DeepPrivacy2's too")
        lines.append(f"  {i}. {folder}  ({why})")
    return lines


def _model_block(model: Model, used_by: list[str], optional: bool, weights_dir: Path | None) -> tuple[list[str], bool]:
    """Lines describing one model, and whether every file of it is usable."""
    head = f"{model.name}  [{model.size_text()}; licence: {model.licence}]"
    lines = [head, f"  used by   {', '.join(used_by)}" + ("  (optional: a fallback is used without it)" if optional else "")]
    if model.note:
        lines.append(f"  note      {model.note}")
    ok = True
    for spec in model.files:
        lines.append(f"  file      {spec.filename}")
        digests = spec.expected_digests
        for algo in ("md5", "sha256"):
            if algo in digests:
                lines.append(f"  {algo:<9} {digests[algo]}")
        if not digests:
            lines.append("  checksum  none published: recognised by name")
        for j, url in enumerate(spec.urls):
            lines.append(f"  {'url' if j == 0 else '':<9} {url}  ({'official' if j == 0 else 'mirror'})")
        if not spec.urls:
            lines.append("  url       none known: place the file by hand")
        status, path = file_status(spec, weights_dir, model.alternatives)
        shown = {"verified": f"present, verified: {path}", "present": f"present (no checksum to verify): {path}",
                 "missing": "MISSING"}.get(status, f"BROKEN {path}: {status}")
        lines.append(f"  status    {shown}")
        ok = ok and status in ("verified", "present")
    return lines, ok


def _download(model: Model, spec: WeightSpec, directory: Path | None, weights_dir: Path | None) -> str | None:
    """Fetch one missing file; returns a problem, or None when it is in place."""
    from .weights import download_weights

    status, _ = file_status(spec, weights_dir, model.alternatives)
    if status in ("verified", "present"):
        return None
    if not spec.urls:
        return f"{spec.filename}: no download URL is known; place it by hand"
    dest = directory if directory is not None else hub_checkpoint_dir()
    click.echo(f"downloading {model.name} -> {dest / spec.filename}", err=True)
    try:
        download_weights(spec, dest, progress=True)
    except WeightsError as e:
        return str(e)
    return None


@click.command(name="weights", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("configs", nargs=-1, metavar="[CONFIG]...")
@click.option("--download", is_flag=True, help="Download every missing file (verified before it is kept).")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder searched first and where --download saves (default: the torch hub cache). "
                   "Pass the same folder to runs with --weights-dir.")
def weights_command(configs: tuple[str, ...], download: bool, directory: Path | None) -> None:
    """List (and with --download fetch) the model files CONFIG needs: model, file, size, checksums,
    URLs (official first, then mirrors), where dp2 looks, and whether each is present and verified.

    Without CONFIG: every bundled config. Exit code 0 when every needed file is there and
    verified, 1 otherwise.

    \b
    Examples:
      dp2-anonymize weights face
      dp2-anonymize weights face FB_cse --download
      dp2-anonymize weights --download --dir /data/dp2_weights   (then: --weights-dir /data/dp2_weights)
    """
    from .cli_output import setup_logging

    setup_logging()
    if directory is not None and download:
        directory.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for name in configs:
        try:
            paths.append(resolve_config(name))
        except ConfigNameError as e:
            raise click.BadParameter(str(e), param_hint="CONFIG") from e
    if not paths:
        paths = [info.path for info in list_configs(with_models=False) if info.kind == "anonymizer"]
    from .config import ConfigError

    order: list[str] = []
    models: dict[str, Model] = {}
    used_by: dict[str, list[str]] = {}
    optional: dict[str, bool] = {}
    for path in paths:
        try:
            needs = needs_of(path)
        except ConfigError as e:
            raise click.BadParameter(str(e), param_hint="CONFIG") from e
        name = config_name(path)
        wanted = [n.model.name + (" (optional)" if n.optional else "") for n in needs if not n.model.bundled]
        click.echo(f"{name}: {', '.join(wanted) if wanted else 'no weights to download (runs offline)'}")
        for need in needs:
            key = need.model.key
            if key not in models:
                order.append(key)
                models[key] = need.model
            used_by.setdefault(key, []).append(name)
            optional[key] = optional.get(key, True) and need.optional
    click.echo("\ndp2 looks for weights in, in order:")
    for line in _folders(directory):
        click.echo(line)

    problems: list[str] = []
    if download:
        for key in order:
            model = models[key]
            for spec in model.files:
                problem = _download(model, spec, directory, directory)
                if problem is not None and not optional[key]:
                    problems.append(problem)
                elif problem is not None:
                    click.echo(f"warning: optional {model.name}: {problem}", err=True)
    missing = 0
    for key in order:
        lines, ok = _model_block(models[key], used_by[key], optional[key], directory)
        click.echo("")
        for line in lines:
            click.echo(line)
        if not ok and not optional[key]:
            missing += 1
    click.echo("")
    for problem in problems:
        click.echo(f"error: {problem}", err=True)
    if missing:
        hint = "" if download else f"; fetch them with: {' '.join(_command_line(configs, directory))} --download"
        click.echo(f"{missing} of the needed models {'are' if missing > 1 else 'is'} not ready{hint}")
        raise SystemExit(1)
    click.echo("every needed weight file is present" + (" and verified" if order else ""))


def _command_line(configs: tuple[str, ...], directory: Path | None) -> list[str]:
    ctx = click.get_current_context()
    words = [ctx.command_path, *configs]
    if directory is not None:
        words += ["--dir", str(directory)]
    return words


def format_config_list() -> str:
    """``--list-configs``: every bundled config, what it does (its docstring) and what it loads."""
    lines = ["Anonymizer configs (dp2-anonymize NAME -i INPUT; DeepPrivacy2's configs/anonymizers/NAME.py works too):"]
    kind_titles = {"generator": "Generator configs (for --person-generator / --cse-person-generator, and imports):",
                   "detector": "Detector configs (for imports in your own configs):"}
    shown = "anonymizer"
    for info in list_configs():
        if info.kind != shown:
            shown = info.kind
            lines += ["", kind_titles[shown]]
        lines.append(f"  {info.name:<34} {info.description or describe_config(info.path)}")
        if info.models is None:
            weights = "weights: (could not be read)"
        else:
            downloads = [n for n in info.models if not n.model.bundled]
            if downloads:
                total = sum(n.model.size_bytes or 0 for n in downloads if not n.optional)
                weights = "weights: " + ", ".join(
                    (n.model.short or n.model.name) + (" (optional)" if n.optional else "") for n in downloads)
                weights += f"  (~{total / 1e6:.0f} MB)" if total >= 1e6 else ""
            else:
                weights = "weights: none to download (offline)"
        lines.append(f"  {'':<34} {weights}")
    lines += ["", "Weights of a config: dp2-anonymize weights NAME [--download]"]
    return "\n".join(lines)
