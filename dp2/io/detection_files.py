"""Detection files: the ``--cache`` store, ``--export-detections`` and ``--detections``.

All are JSON (never pickle), written atomically, and read like an untrusted upload: strict JSON
(no NaN/Infinity, no duplicate keys, bounded size), every value checked
(:func:`dp2.structures.serialize.detections_from_dict`), and one message naming the file and
the item when something is wrong.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import stat
from pathlib import Path
from typing import Any

import torch

from ..structures import Detections
from ..structures.serialize import (FORMAT_VERSION, DetectionFormatError, detections_from_dict, detections_to_dict,
                                    show_value as _show)
from .atomic import partial_sibling

__all__ = ["DetectionCache", "DetectionExport", "GivenDetections", "image_digest", "read_json_file",
           "write_json_atomic"]

logger = logging.getLogger(__name__)

#: Largest detections file or cache entry read (a 10-hour video's export is far smaller).
MAX_JSON_BYTES = 256 * 2**20
MAX_JSON_DEPTH = 32


def write_json_atomic(path: Path, payload: Any, *, items_key: str | None = None) -> None:
    """Write strict JSON (no NaN/Infinity) to ``path`` through a temporary and a rename.

    Args:
        items_key: a top-level list written one compact element per line (a frame per line).
    """
    if items_key is None:
        text = json.dumps(payload, allow_nan=False, separators=(",", ":"))
    else:
        head = json.dumps({k: v for k, v in payload.items() if k != items_key}, allow_nan=False)
        opening = "{" if head == "{}" else head[:-1] + ", "
        lines = ",\n".join(json.dumps(item, allow_nan=False) for item in payload[items_key])
        text = f"{opening}{json.dumps(items_key)}: [\n{lines}\n]}}\n"
    # A unique temporary: workers sharing a --cache folder may write the same entry at once.
    fd, tmp = partial_sibling(path, prefix=f".{path.name}.", suffix=".partial")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class _StrictJSONError(ValueError):
    pass


def _refuse_constant(name: str) -> Any:
    raise _StrictJSONError(f"{name} is not a number JSON allows")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _StrictJSONError(f"{text} is too large for a number")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _StrictJSONError(f"key {key!r} appears twice in one object")
        out[key] = value
    return out


def read_json_file(path: Path, what: str = "JSON file", max_bytes: int = MAX_JSON_BYTES) -> Any:
    """Strict JSON from a regular file of at most ``max_bytes``.

    Raises:
        ValueError: one line starting with the path: missing, not a regular file (a FIFO or a
            device would block or never end), too large, not UTF-8, not JSON, NaN/Infinity or
            overflowing numbers, duplicate keys, nesting too deep for the parser.
    """
    path = Path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError as e:
        raise ValueError(f"{path}: no such {what}") from e
    except OSError as e:
        raise ValueError(f"{path}: cannot read {what} ({e.strerror or e})") from e
    if not stat.S_ISREG(st.st_mode):
        raise ValueError(f"{path}: not a regular file (expected a {what})")
    if st.st_size > max_bytes:
        raise ValueError(f"{path}: {st.st_size} bytes, larger than the {max_bytes} a {what} may have")
    try:
        with open(path, "rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as e:
        raise ValueError(f"{path}: cannot read {what} ({e.strerror or e})") from e
    if len(data) > max_bytes:
        raise ValueError(f"{path}: larger than the {max_bytes} bytes a {what} may have")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text (byte {e.start}); expected a {what}") from e
    try:
        payload = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float,
                             object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg}); "
                         f"expected a {what}") from e
    except RecursionError as e:
        raise ValueError(f"{path}: JSON nested too deeply; expected a {what}") from e
    except ValueError as e:  # our hooks, or an integer with more digits than Python converts
        raise ValueError(f"{path}: {e}") from e
    if _depth_exceeds(payload, MAX_JSON_DEPTH):
        # The formats need 6 levels; deeper values could exhaust the stack when shown or hashed.
        raise ValueError(f"{path}: JSON nested deeper than {MAX_JSON_DEPTH} levels; expected a {what}")
    return payload


def _depth_exceeds(value: Any, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, (dict, list)):
            if depth > limit:
                return True
            stack.extend((child, depth + 1) for child in (node.values() if isinstance(node, dict) else node))
    return False


def image_digest(image: torch.Tensor) -> str:
    """sha256 of a uint8 [3, H, W] image's pixels and shape."""
    h = hashlib.sha256(str(tuple(image.shape)).encode())
    h.update(image.contiguous().numpy().tobytes())
    return h.hexdigest()


CACHE_VERSION = 2
_CACHE_KEYS = ("version", "settings_key", "image_sha256", "detections", "entry_sha256")


def _entry_hash(settings_key: str, digest: str, detections: Any) -> str:
    """sha256 binding an entry's detections to its image and detector settings."""
    text = json.dumps({"cache": "dp2-detections", "version": CACHE_VERSION, "settings_key": settings_key,
                       "image_sha256": digest, "detections": detections}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


class DetectionCache:
    """Per-image detection cache keyed by pixel content AND detector settings.

    Changing any detector setting (threshold, scales, ...) changes ``settings_key``, so a
    stale cache is never reused (DeepPrivacy2's cache was keyed by content only).

    Every entry is read like a ``--detections`` file (strict JSON, every value checked, its
    ``size_hw`` equal to the image's) and carries ``entry_sha256``, a hash of its detections
    together with the image digest and the settings key. An entry that fails any check (edited by
    hand, e.g. to ``"faces": []``, copied from another image's entry, truncated, or from another
    dp2 version) is ignored with a warning, and the image is detected again and the entry
    rewritten. The hash detects edits, it does not authenticate: whoever can write the cache
    folder can compute it too, so the folder must be trusted as much as the config.

    Args:
        directory: cache root; entries go to ``<directory>/<settings_key[:16]>/<digest>.json``.
        settings: a text that fully describes the detector (e.g. its resolved config).
    """

    MAX_WARNINGS = 5

    def __init__(self, directory: Path, settings: str) -> None:
        self.settings_key = hashlib.sha256(settings.encode()).hexdigest()
        self.directory = Path(directory) / self.settings_key[:16]
        self.directory.mkdir(parents=True, exist_ok=True)
        self.hits = 0
        self.misses = 0
        self.rejected = 0

    def _path(self, digest: str) -> Path:
        return self.directory / f"{digest}.json"

    def _check(self, record: Any, digest: str, size_hw: tuple[int, int], where: str) -> Detections:
        if not isinstance(record, dict):
            raise DetectionFormatError(f"{where}: expected an object")
        missing = [k for k in _CACHE_KEYS if k not in record]
        unknown = [k for k in record if k not in _CACHE_KEYS]
        if record.get("version") != CACHE_VERSION:
            raise DetectionFormatError(f"{where}: cache entry version {_show(record.get('version'))}, "
                                       f"expected {CACHE_VERSION}")
        if missing or unknown:
            raise DetectionFormatError(f"{where}: {'missing' if missing else 'unknown'} key "
                                       f"{_show((missing or unknown)[0])}")
        if record["settings_key"] != self.settings_key:
            raise DetectionFormatError(f"{where}: made with other detector settings")
        if record["image_sha256"] != digest:
            raise DetectionFormatError(f"{where}: made for another image")
        if record["entry_sha256"] != _entry_hash(self.settings_key, digest, record["detections"]):
            raise DetectionFormatError(f"{where}: content does not match its entry_sha256 (edited or damaged)")
        return detections_from_dict(record["detections"], size_hw, where=f"{where}: detections")

    def get(self, image: torch.Tensor) -> Detections | None:
        """The cached detections of ``image``, or None (not cached, or the entry failed a check)."""
        digest = image_digest(image)
        path = self._path(digest)
        if not path.exists():
            self.misses += 1
            return None
        try:
            record = read_json_file(path, what="cache entry")
            dets = self._check(record, digest, (int(image.shape[1]), int(image.shape[2])), str(path))
        except ValueError as e:  # DetectionFormatError included
            self.rejected += 1
            self.misses += 1
            if self.rejected <= self.MAX_WARNINGS:
                logger.warning("ignoring cache entry, detecting again: %s", e)
                if self.rejected == self.MAX_WARNINGS:
                    logger.warning("further rejected cache entries in %s are not reported", self.directory)
            return None
        self.hits += 1
        return dets

    def put(self, image: torch.Tensor, dets: Detections) -> None:
        if dets.persons is not None or dets.cse_persons is not None:
            return  # person masks are not serialised; never cache a partial result
        digest = image_digest(image)
        detections = detections_to_dict(dets)
        try:
            write_json_atomic(self._path(digest), {"version": CACHE_VERSION, "settings_key": self.settings_key,
                                                   "image_sha256": digest, "detections": detections,
                                                   "entry_sha256": _entry_hash(self.settings_key, digest, detections)})
        except OSError as e:  # the run goes on; the image is detected again next time
            logger.warning("cannot write cache entry %s: %s", self._path(digest), e.strerror or e)


class DetectionExport:
    """Collects every detection per image/frame and writes ``--export-detections`` JSON
    (one frame per line; :class:`GivenDetections` reads it back)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        if not self.path.parent.is_dir():
            raise ValueError(f"{self.path}: folder {self.path.parent} does not exist")
        self.items: list[dict[str, Any]] = []

    def add(self, source: str, frame_index: int, time_s: float | None, dets: Detections) -> None:
        item: dict[str, Any] = {"source": source, "frame": frame_index}
        if time_s is not None and math.isfinite(time_s):
            item["time_s"] = round(time_s, 6)
        item.update(detections_to_dict(dets))
        self.items.append(item)

    def write(self) -> None:
        write_json_atomic(self.path, {"version": FORMAT_VERSION, "items": self.items}, items_key="items")


_ITEM_KEYS = ("source", "frame", "time_s")


class GivenDetections:
    """Detections supplied by the user (``--detections FILE.json``) instead of a detector.

    The format is the one ``--export-detections`` writes: ``{"version": 1, "items": [
    {"source": "img.jpg", "frame": 0, "size_hw": [H, W], "faces": [{"box": [x0, y0, x1, y1],
    "score": 0.9}, ...]}, ...]}``. The whole file is checked when it is opened. Each frame is then
    looked up by its source name (the input's path relative to the input folder, or the file name
    of a single input) and frame index, exactly; its ``size_hw`` must equal the frame's size.
    A frame without an item, or an item made for another image size, is an error, never a frame
    left as it is or boxes rescaled.

    Raises:
        ValueError: (``DetectionFormatError`` for the content) naming the file and the item.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        payload = read_json_file(self.path, what="detections file (the --export-detections format)")
        where = str(self.path)
        if not isinstance(payload, dict) or not isinstance(payload.get("items"), list):
            raise DetectionFormatError(f"{where}: expected an object with 'version' and an 'items' list "
                                       "(the --export-detections format)")
        unknown = [k for k in payload if k not in ("version", "items")]
        if unknown:
            raise DetectionFormatError(f"{where}: unknown key {_show(unknown[0])} (expected version, items)")
        version = payload.get("version")
        if version is None:
            raise DetectionFormatError(f"{where}: missing 'version' (expected {FORMAT_VERSION})")
        if isinstance(version, bool) or version != FORMAT_VERSION:
            raise DetectionFormatError(f"{where}: version {_show(version)} is not supported (expected {FORMAT_VERSION})")
        self.index: dict[tuple[str, int], tuple[int, Detections]] = {}
        for i, item in enumerate(payload["items"]):
            here = f"{where}: items[{i}]"
            if not isinstance(item, dict):
                raise DetectionFormatError(f"{here}: expected an object, got {_show(item)}")
            source = item.get("source")
            if not isinstance(source, str) or not source:
                raise DetectionFormatError(f"{here}.source: expected the input's name, got {_show(source)}")
            frame = item.get("frame", 0)
            if isinstance(frame, bool) or not isinstance(frame, int) or frame < 0:
                raise DetectionFormatError(f"{here}.frame: expected a frame index >= 0, got {_show(frame)}")
            time_s = item.get("time_s")
            if time_s is not None and (isinstance(time_s, bool) or not isinstance(time_s, (int, float))):
                raise DetectionFormatError(f"{here}.time_s: expected a number of seconds, got {_show(time_s)}")
            dets = detections_from_dict(item, None, where=here, extra_keys=_ITEM_KEYS)
            first = self.index.get((source, frame))
            if first is not None:
                raise DetectionFormatError(f"{here}: {source} frame {frame} is listed twice (first in items[{first[0]}])")
            self.index[(source, frame)] = (i, dets)
        self.sources = sorted({source for source, _ in self.index})

    def get(self, source: str, frame_index: int, size_hw: tuple[int, int]) -> Detections:
        """The detections of frame ``frame_index`` of ``source``, whose size is ``size_hw``.

        Raises:
            ValueError: no item for this frame, or the item's ``size_hw`` differs.
        """
        found = self.index.get((source, frame_index))
        if found is None:
            names = ", ".join(repr(s) for s in self.sources[:3]) + (", ..." if len(self.sources) > 3 else "")
            raise DetectionFormatError(f"{self.path}: no item for source {source!r} frame {frame_index} "
                                       f"(sources in the file: {names or 'none'})")
        i, dets = found
        if tuple(dets.image_size_hw) != tuple(size_hw):
            raise DetectionFormatError(f"{self.path}: items[{i}].size_hw: {list(dets.image_size_hw)} does not match "
                                       f"{source} frame {frame_index}'s {[int(v) for v in size_hw]}: made for another "
                                       "image or another --max-res (detections are never rescaled)")
        return dets
