"""Find, download, verify and load the generator checkpoints.

Weights are named by their official URL basename (what DeepPrivacy2 itself uses in
the torch-hub cache) and verified by md5 and/or sha256 (a spec with neither, e.g. a
file whose publisher gives no checksum, is recognised by name only). Lookup order:

1. an explicit ``weights_dir`` argument;
2. the directory in the ``DP2_WEIGHTS_DIR`` environment variable;
3. the torch-hub cache, ``torch.hub.get_dir()/checkpoints`` (``$TORCH_HOME/hub/checkpoints``),
   which DeepPrivacy2 shares, so an existing DP2 cache is reused as is.

When no verified copy exists and downloading is allowed, each URL is tried in turn
(official first, then mirrors); the file is streamed to a temporary file next to its
final place, verified, then atomically renamed, so a broken download never leaves a
file under the final name.
"""
from __future__ import annotations

import hashlib
import logging
import os
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from .io.atomic import partial_sibling

if TYPE_CHECKING:  # torch is imported where it is used: listing weights must not pay for it
    import torch
    from torch import nn

__all__ = [
    "DP1_WEIGHTS",
    "FDF128_WEIGHTS",
    "FDF256_WEIGHTS",
    "FDH_CSE_WEIGHTS",
    "FDH_NOCSE_WEIGHTS",
    "TRIAGAN_WEIGHTS",
    "VITPOSE_WEIGHTS",
    "WEIGHTS_ENV_VAR",
    "VERIFY_ENV_VAR",
    "WeightSpec",
    "WeightsError",
    "download_weights",
    "find_weights",
    "hub_checkpoint_dir",
    "search_dirs",
    "load_checkpoint",
    "load_generator_state",
    "resolve_weights",
]

logger = logging.getLogger(__name__)

WEIGHTS_ENV_VAR = "DP2_WEIGHTS_DIR"
#: Set to ``0`` to accept local files without checking their hashes (own fine-tuned or test
#: checkpoints saved under the official names). Downloads are always verified.
VERIFY_ENV_VAR = "DP2_VERIFY_WEIGHTS"
_CHUNK = 1 << 20


#: Set by the CLI to the flag that turned the hash check off, so warnings name what the user typed.
VERIFY_SOURCE_ENV_VAR = "DP2_VERIFY_WEIGHTS_SOURCE"


class WeightsError(RuntimeError):
    """A checkpoint could not be found, downloaded, verified or loaded.

    Attributes:
        spec: the file that is missing or broken (None when the error is about loading a file).
        reason: why, in a few words (``"not found"``, ``"download failed: HTTP Error 404"``,
            ``"md5 ... != expected ..."``), for short messages such as the CLI's.
    """

    def __init__(self, message: str, *, spec: "WeightSpec | None" = None, reason: str | None = None) -> None:
        super().__init__(message)
        self.spec = spec
        self.reason = reason


@dataclass(frozen=True)
class WeightSpec:
    """Where a checkpoint comes from and how to recognise it.

    Attributes:
        filename: file name on disk (DP2 convention: the basename of the official URL).
        md5: expected md5 hex digest of the whole file, or None when none is published.
        urls: download URLs, official first, then mirrors.
        sha256: optional expected sha256 hex digest, checked in addition to md5.
    """

    filename: str
    md5: str | None
    urls: tuple[str, ...] = field(default=())
    sha256: str | None = None

    def __post_init__(self) -> None:
        if not self.filename or Path(self.filename).name != self.filename:
            raise ValueError(f"filename must be a bare file name, got {self.filename!r}")
        for name, length in (("md5", 32), ("sha256", 64)):
            value = getattr(self, name)
            if value is None:
                continue
            if (not isinstance(value, str) or len(value) != length
                    or any(c not in "0123456789abcdef" for c in value.lower())):
                raise ValueError(f"{name} must be None or {length} hex digits, got {value!r}")
            object.__setattr__(self, name, value.lower())
        object.__setattr__(self, "urls", tuple(self.urls))

    @property
    def expected_digests(self) -> dict[str, str]:
        """``{"md5": ..., "sha256": ...}`` for the digests this spec checks (may be empty)."""
        return {k: v for k, v in (("md5", self.md5), ("sha256", self.sha256)) if v is not None}

    def describe_hashes(self) -> str:
        """Human-readable expected digests, for messages."""
        digests = self.expected_digests
        if not digests:
            return "no published checksum"
        return ", ".join(f"{k} {v}" for k, v in digests.items())


_LOKE = "https://api.loke.aws.unit.no/dlr-gui-backend-resources-content/v2/contents/links/"
# Hugging Face Space caches, as reported by users in DeepPrivacy2 issue #39 (unverified
# here): the Spaces store DP2's torch-hub cache under torch_home/hub/checkpoints/.
_HF_FACE = "https://huggingface.co/spaces/haakohu/deep_privacy2_face/resolve/main/torch_home/hub/checkpoints/"
_HF_BODY = "https://huggingface.co/spaces/haakohu/deep_privacy2/resolve/main/torch_home/hub/checkpoints/"


def _loke_spec(link_id: str, md5: str, mirrors: tuple[str, ...] = ()) -> WeightSpec:
    return WeightSpec(filename=link_id, md5=md5,
                      urls=(_LOKE + link_id,) + tuple(m + link_id for m in mirrors))


#: FDF256 face generator (``configs/fdf/stylegan.py``; anonymizer ``face.py``).
FDF256_WEIGHTS = _loke_spec(
    "89660f04-5c11-4dbf-adac-cbe2f11b0aeea25cbf78-7558-475a-b3c7-03f5c10b7934646b0720-ca0a-4d53-aded-daddbfa45c9e",
    "e8e32190528af2ed75f0cb792b7f2b07", mirrors=(_HF_FACE,))
#: FDF128 face generator (``configs/fdf/stylegan_fdf128.py``).
FDF128_WEIGHTS = _loke_spec(
    "66d803c0-55ce-44c0-9d53-815c2c0e6ba4eb458409-9e91-45d1-bce0-95c8a47a57218b102fdf-bea3-44dc-aac4-0fb1d370ef1c",
    "bccd4403e7c9bca682566ff3319e8176")
#: DeepPrivacy1 MSG generator (``configs/fdf/deep_privacy1.py``).
DP1_WEIGHTS = _loke_spec(
    "0940803d-1a2c-4b54-9c1d-0d3aeb80c5a8970f7dd4-bde6-4120-9d3e-5fad937eef2b7b0544e2-8c00-43c2-9193-f56679740872",
    "6cc8b285bdc1fcdfc64f5db7c521d0a6")
#: FDH CSE-guided body generator (``configs/fdh/styleganL.py``).
FDH_CSE_WEIGHTS = _loke_spec(
    "21841da7-2546-4ce3-8460-909b3a63c58b13aac1a1-c778-4c8d-9b69-3e5ed2cde9de1524e76e-7aa6-4dd8-b643-52abc9f0792c",
    "3411478b5ec600a4219cccf4499732bd", mirrors=(_HF_BODY,))
#: FDH body generator without CSE (``configs/fdh/styleganL_nocse.py``). The official
#: host is gone (HTTP 404/410) and no mirror is known: place the file manually.
FDH_NOCSE_WEIGHTS = WeightSpec(
    filename="fdh_styleganL_nocse.ckpt", md5="fda0d809741bc67487abada793975c37",
    urls=("https://folk.ntnu.no/haakohu/checkpoints/deep_privacy2/fdh_styleganL_nocse.ckpt",))

#: TriA-GAN body generator, 288x160 (``configs/fdh/triagan/L_im288.py``; anonymizer ``FB_triagan.py``).
TRIAGAN_WEIGHTS = _loke_spec(
    "e62a306a-5295-47dd-8a0e-4f7c05b9ecd44c9fbc76-5ce2-4dd0-9454-04776bef2745659fbec7-fa0a-485b-8501-c94a2439b601",
    "b649410e831b45f7800a89c738b411ce")


#: ViTPose keypoint detectors of ``MaskRCNNVitPose`` (``FB_triagan.py`` uses ViT-H).
_VITPOSE_LOKE = "https://api.loke.aws.unit.no/dlr-gui-backend-resources-content/v2/contents/links/"
# DP2 downloads these with tops.download_file(..., check_hash=False) and publishes no checksum;
# the hex in the file name is not verified by DP2 either, so the files are recognised by name.
VITPOSE_WEIGHTS = {
    "vit_base": WeightSpec(filename="vit-b-multi-coco-595b5e128b.pth", md5=None, urls=(
        _VITPOSE_LOKE + "90235a26-3b8c-427d-a264-c68155abecdcfcfcd8a9-0388-4575-b85b-607d3c0a9b149bef8f0f-a0f9-4662-a561-1b47ba5f1636",)),
    "vit_large": WeightSpec(filename="vit-l-multi-coco-9475d27cec.pth", md5=None, urls=(
        _VITPOSE_LOKE + "a580a44c-0afd-43ac-a2cb-9956c32b1d1a78c51ecb-81bb-4345-8710-13904cb9dbbe0703db2d-8534-42e0-ac4d-518ab51fe7db",)),
    "vit_huge": WeightSpec(filename="vit-h-multi-coco-dbc06d4337.pth", md5=None, urls=(
        _VITPOSE_LOKE + "a33b6ada-4d2f-4ef7-8f83-b33f58b69f5b2a62e181-2131-467d-a900-027157a08571d761fad4-785b-4b84-8596-8932c7857e44",)),
}


# -- hashing -------------------------------------------------------------------------------

_verified: dict[tuple[str, int, int], dict[str, str]] = {}
_verified_lock = threading.Lock()


def _digests(path: Path, algorithms: tuple[str, ...]) -> dict[str, str]:
    """Hex digests of a file for ``algorithms``, memoised per (path, size, mtime)."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    with _verified_lock:
        known = dict(_verified.get(key, {}))
    todo = [a for a in algorithms if a not in known]
    if todo:
        hashers = {a: hashlib.new(a) for a in todo}
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(_CHUNK), b""):
                for h in hashers.values():
                    h.update(chunk)
        known.update({a: h.hexdigest() for a, h in hashers.items()})
        with _verified_lock:
            _verified.setdefault(key, {}).update(known)
    return {a: known[a] for a in algorithms}


def _hash_problem(spec: WeightSpec, digests: Mapping[str, str]) -> str | None:
    for name, expected in spec.expected_digests.items():
        if digests[name] != expected:
            return f"{name} {digests[name]} != expected {expected}"
    return None


def _check_file(spec: WeightSpec, path: Path) -> str | None:
    """None if ``path`` has the expected digests, else a description of the mismatch."""
    return _hash_problem(spec, _digests(path, tuple(spec.expected_digests)))


# -- lookup and download ----------------------------------------------------------------------

def hub_checkpoint_dir() -> Path:
    """``torch.hub.get_dir()/checkpoints``, DeepPrivacy2's download cache.

    Computed as torch does (``$TORCH_HOME/hub``, else ``$XDG_CACHE_HOME/torch/hub``, else
    ``~/.cache/torch/hub``) without importing torch; once torch is imported its own answer is
    used, so ``torch.hub.set_dir`` is honoured.
    """
    import sys

    if "torch" in sys.modules:
        return Path(sys.modules["torch"].hub.get_dir()) / "checkpoints"
    torch_home = os.environ.get("TORCH_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "torch")
    return Path(os.path.expanduser(torch_home)) / "hub" / "checkpoints"


def search_dirs(weights_dir: str | os.PathLike | None = None) -> list[Path]:
    """Where weights are looked for, in order: ``weights_dir``, ``$DP2_WEIGHTS_DIR``, the torch hub cache."""
    return _search_dirs(weights_dir)


def _search_dirs(weights_dir: str | os.PathLike | None) -> list[Path]:
    dirs: list[Path] = []
    if weights_dir is not None:
        dirs.append(Path(weights_dir).expanduser())
    env = os.environ.get(WEIGHTS_ENV_VAR)
    if env:
        dirs.append(Path(env).expanduser())
    dirs.append(hub_checkpoint_dir())
    unique: list[Path] = []
    for d in dirs:
        if d not in unique:
            unique.append(d)
    return unique


def _download(url: str, dest_dir: Path, spec: WeightSpec, progress: bool, timeout: float) -> Path:
    """Stream ``url`` into a temporary file in ``dest_dir``, verify it, rename it into place."""
    import urllib.request

    from .progress import progress_bar

    dest_dir.mkdir(parents=True, exist_ok=True)
    final = dest_dir / spec.filename
    fd, tmp = partial_sibling(final, prefix=f".{spec.filename[:40]}.", suffix=".part")
    try:
        request = urllib.request.Request(url, headers={"User-Agent": "dp2-weights"})
        hashers = {name: hashlib.new(name) for name in spec.expected_digests}
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(request, timeout=timeout) as response:
            total = response.headers.get("Content-Length")
            with progress_bar(total=int(total) if total and total.isdigit() else None, unit="B",
                              desc=spec.filename[:24], enabled=progress, unit_scale=True,
                              unit_divisor=1024) as bar:
                for chunk in iter(lambda: response.read(_CHUNK), b""):
                    out.write(chunk)
                    for h in hashers.values():
                        h.update(chunk)
                    bar.update(len(chunk))
        digests = {name: h.hexdigest() for name, h in hashers.items()}
        problem = _hash_problem(spec, digests)
        if problem is not None:
            raise WeightsError(f"downloaded file does not match: {problem}")
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    st = final.stat()
    with _verified_lock:
        _verified[(str(final.resolve()), st.st_size, st.st_mtime_ns)] = digests
    return final


def find_weights(spec: WeightSpec, weights_dir: str | os.PathLike | None = None, *,
                 verify: bool | None = None) -> tuple[Path | None, list[str]]:
    """The first local copy of ``spec`` that passes the hash check, and the problems of the others.

    Args:
        verify: check hashes (None: unless ``DP2_VERIFY_WEIGHTS=0``).

    Returns:
        ``(path or None, ["<path>: md5 ... != expected ...", ...])``.
    """
    if verify is None:
        verify = os.environ.get(VERIFY_ENV_VAR, "1") != "0"
    notes: list[str] = []
    for d in _search_dirs(weights_dir):
        candidate = d / spec.filename
        if not candidate.is_file():
            continue
        if not verify:
            return candidate, notes
        problem = _check_file(spec, candidate)
        if problem is None:
            return candidate, notes
        notes.append(f"{candidate}: {problem}")
    return None, notes


def _download_first(spec: WeightSpec, dest: Path, progress: bool, timeout: float, tried: list[str]) -> Path | None:
    """The first of ``spec.urls`` that downloads and verifies into ``dest``; failures go to ``tried``."""
    import http.client

    for url in spec.urls:
        logger.info("downloading %s from %s", spec.filename, url)
        try:
            path = _download(url, dest, spec, progress, timeout)
        except (OSError, http.client.HTTPException, WeightsError, ValueError) as err:
            # URLError/HTTPError/timeouts are OSErrors; ValueError: malformed URL
            logger.warning("download of %s from %s failed: %s", _short_name(spec.filename), _host(url), err)
            tried.append(f"{url} ({err})")
            continue
        logger.info("saved verified weights to %s", path)
        return path
    return None


def download_weights(spec: WeightSpec, dest_dir: str | os.PathLike | None = None, *, progress: bool = True,
                     timeout: float = 60.0) -> Path:
    """Download ``spec`` into ``dest_dir`` (default: the torch hub cache), trying each URL in turn.

    Every download is verified before it gets its final name.

    Raises:
        WeightsError: every URL failed (the message lists them with their errors).
    """
    dest = Path(dest_dir).expanduser() if dest_dir is not None else hub_checkpoint_dir()
    tried: list[str] = []
    path = _download_first(spec, dest, progress, timeout, tried)
    if path is not None:
        return path
    reason = "no download URL is known" if not spec.urls else "download failed: " + tried[-1].split(" (", 1)[-1][:-1]
    raise WeightsError(f"could not download {spec.filename!r}: " + ("; ".join(tried) or "no URL is known"),
                       spec=spec, reason=reason)


def resolve_weights(spec: WeightSpec, weights_dir: str | os.PathLike | None = None,
                    download: bool = True, progress: bool = True, timeout: float = 60.0) -> Path:
    """Return the path of a verified local copy of ``spec``, downloading it if needed.

    Args:
        spec: what to find.
        weights_dir: directory searched first (optional).
        download: allow downloading into the torch-hub cache when no verified copy exists.
        progress: show a tqdm progress bar while downloading (also off when the
            environment variable ``DP2_NO_PROGRESS=1``, as for the CLI).
        timeout: socket timeout per URL, in seconds.

    Returns:
        Path of a file whose md5 and/or sha256 (those given) match ``spec``.

    Raises:
        WeightsError: no verified copy exists and it could not be downloaded (download
            disabled, every URL failed, or the downloaded data had the wrong hash). The
            message names the file, the expected digests, where it looked, the URLs tried
            and how to place the file by hand.
    """
    dirs = _search_dirs(weights_dir)
    notes: list[str] = []
    trust_local = os.environ.get(VERIFY_ENV_VAR, "1") == "0"
    for d in dirs:
        candidate = d / spec.filename
        if not candidate.is_file():
            continue
        if trust_local:
            source = os.environ.get(VERIFY_SOURCE_ENV_VAR) or f"{VERIFY_ENV_VAR}=0"
            _warn_once(f"{source}: using {candidate} WITHOUT checking its hash")
            return candidate
        problem = _check_file(spec, candidate)
        if problem is None:
            logger.debug("using verified weights %s", candidate)
            return candidate
        logger.warning("ignoring %s: %s", candidate, problem)
        notes.append(f"{candidate}: {problem}")

    tried: list[str] = []
    if download:
        path = _download_first(spec, hub_checkpoint_dir(), progress, timeout, tried)
        if path is not None:
            return path
    if notes:
        reason = "wrong hash: " + notes[-1].rsplit(": ", 1)[-1]
    elif not download:
        reason = "not found (downloading is disabled)"
    elif tried:
        reason = "not found; download failed: " + tried[-1].split(" (", 1)[-1][:-1]
    else:
        reason = "not found, and no download URL is known"
    raise WeightsError(_missing_message(spec, dirs, notes, tried, download), spec=spec, reason=reason)


def _short_name(filename: str) -> str:
    """A file name fit for a log line (DeepPrivacy2's link ids are 100 characters long)."""
    return filename if len(filename) <= 40 else f"{filename[:16]}...{filename[-12:]}"


def _host(url: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(url).netloc or url[:60]


_warned: set[str] = set()


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        logger.warning("%s", message)


def _missing_message(spec: WeightSpec, dirs: list[Path], notes: list[str], tried: list[str],
                     download: bool) -> str:
    lines = [f"could not find verified weights {spec.filename!r} (expected {spec.describe_hashes()})."]
    lines.append("Looked in: " + ", ".join(str(d) for d in dirs) + ".")
    if notes:
        lines.append("Files with the wrong hash: " + "; ".join(notes) + ".")
    if not download:
        lines.append("Downloading is disabled.")
    elif tried:
        lines.append("Tried URLs: " + "; ".join(tried) + ".")
    else:
        lines.append("No download URL is known for this file.")
    urls = ", ".join(spec.urls) if spec.urls else "(none known)"
    lines.append(f"To install it manually, download it (URLs: {urls}) and save it as "
                 f"{hub_checkpoint_dir() / spec.filename} or in the directory named by "
                 f"${WEIGHTS_ENV_VAR}, keeping the file name {spec.filename!r}.")
    return " ".join(lines)


# -- loading ------------------------------------------------------------------------------

def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a checkpoint onto the CPU without running pickled code (``weights_only=True``).

    Raises:
        WeightsError: the file cannot be read as a tensors-only checkpoint.
    """
    import torch

    try:
        with warnings.catch_warnings():  # its pickle-protocol notes speak of weights_only too
            warnings.simplefilter("ignore", UserWarning)
            ckpt = torch.load(Path(path), map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling errors come in many types
        raise WeightsError(f"could not load checkpoint {path}: {_load_problem(err)} (it is corrupt, or "
                           "not a tensors-only checkpoint; dp2 never runs code from a weights file)",
                           reason="cannot be loaded") from err
    if not isinstance(ckpt, dict):
        raise WeightsError(f"checkpoint {path} holds a {type(ckpt).__name__}, expected a dict")
    return ckpt


def _load_problem(err: BaseException) -> str:
    """torch's loading error without its advice to pass ``weights_only=False`` (which would run
    whatever code the file holds): the line that says what is wrong."""
    text = str(err).strip()
    marker = "WeightsUnpickler error:"
    if marker in text:
        detail = text.split(marker, 1)[1].split("Check the documentation", 1)[0]
        detail = " ".join(detail.split())
        if detail:
            return detail[:300]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    keep = [line for line in lines if "weights_only" not in line and "torch.load" not in line
            and not line.startswith(("(1)", "(2)", "Please file", "Check the documentation"))]
    return (keep[0] if keep else type(err).__name__)[:300]


_W_CENTERS_KEY = "style_net.w_centers"


def load_generator_state(G: nn.Module, ckpt: Mapping[str, Any]) -> nn.Module:
    """Load an official DeepPrivacy2 / DeepPrivacy1 checkpoint into ``G`` in place.

    Accepted layouts:

    * ``{"EMA_generator": state_dict[, "w_centers": T]}`` (DP2 StyleGAN): loaded
      leniently like DP2 — keys whose shape differs are dropped with a warning, missing
      and unexpected keys are warned about (except ``style_net.w_centers``).
      A generator with a ``map_checkpoint_state`` method (TriA-GAN) first renames legacy keys
      with it, as DP2's config ``ckpt_mapper`` does.
      Multi-modal-truncation centres ``[n, w_dim]`` in ``state_dict["style_net.w_centers"]``
      or ``ckpt["w_centers"]`` are registered as buffer ``G.style_net.w_centers``.
    * ``{"running_average_generator": {"parameters": state_dict, ...}}`` (DeepPrivacy1):
      very old key names are remapped, then loaded strictly.
    * a bare state dict (all values tensors): lenient, as the first layout.

    Args:
        G: the freshly built generator.
        ckpt: the dict returned by :func:`load_checkpoint`.

    Returns:
        ``G``.

    Raises:
        WeightsError: the layout is unknown, or a strict (DP1) load fails.
    """
    import torch

    from .generation.deep_privacy1 import MSGGenerator, remap_legacy_dp1_keys

    if "EMA_generator" in ckpt:
        state = ckpt["EMA_generator"]
    elif "running_average_generator" in ckpt:
        state = ckpt["running_average_generator"]
    elif ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        state = ckpt
    else:
        raise WeightsError("unknown checkpoint layout: expected 'EMA_generator' or "
                           f"'running_average_generator', got keys {sorted(ckpt)[:10]}")

    if isinstance(G, MSGGenerator):
        if "parameters" in state:
            state = state["parameters"]
        state = remap_legacy_dp1_keys(state)
        try:
            G.load_state_dict(state, strict=True)
        except RuntimeError as err:
            raise WeightsError(f"DeepPrivacy1 checkpoint does not fit the generator: {err}") from err
        return G

    state = dict(state)
    mapper = getattr(G, "map_checkpoint_state", None)
    if mapper is not None:  # the generator config's ckpt_mapper (TriA-GAN: legacy to_rgb keys)
        state = mapper(state)
    w_centers = state.pop(_W_CENTERS_KEY, None)
    if w_centers is None:
        w_centers = ckpt.get("w_centers")
    if w_centers is not None:
        style_net = getattr(G, "style_net", None)
        if style_net is None or not hasattr(style_net, "set_w_centers"):
            logger.warning("checkpoint has w_centers but %s has no style_net; ignored", type(G).__name__)
        else:
            style_net.set_w_centers(w_centers)
    _load_lenient(G, state)
    return G


def _load_lenient(module: nn.Module, state: dict[str, torch.Tensor]) -> None:
    own = module.state_dict()
    for key in list(state):
        if key in own and own[key].shape != state[key].shape:
            logger.warning("dropping %s from the checkpoint: shape %s, the model expects %s",
                           key, list(state[key].shape), list(own[key].shape))
            del state[key]
    result = module.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if k != _W_CENTERS_KEY]
    unexpected = [k for k in result.unexpected_keys if k != _W_CENTERS_KEY]
    if missing:
        logger.warning("keys missing from the checkpoint (left at their initial values): %s", missing)
    if unexpected:
        logger.warning("unexpected keys in the checkpoint (ignored): %s", unexpected)
