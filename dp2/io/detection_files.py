"""Detection files: the ``--cache`` store, ``--export-detections`` and ``--detections``.

All are JSON (never pickle), written atomically.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import torch

from ..detection.serialize import FORMAT_VERSION, DetectionFormatError, detections_from_dict, detections_to_dict
from ..structures import Detections
from .atomic import partial_sibling

__all__ = ["DetectionCache", "DetectionExport", "GivenDetections", "image_digest", "write_json_atomic"]

logger = logging.getLogger(__name__)


def write_json_atomic(path: Path, payload: Any) -> None:
    # A unique temporary: workers sharing a --cache folder may write the same entry at once.
    fd, tmp = partial_sibling(path, prefix=f".{path.name}.", suffix=".partial")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(json.dumps(payload, indent=1))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def image_digest(image: torch.Tensor) -> str:
    """sha256 of a uint8 [3, H, W] image's pixels and shape."""
    h = hashlib.sha256(str(tuple(image.shape)).encode())
    h.update(image.contiguous().numpy().tobytes())
    return h.hexdigest()


class DetectionCache:
    """Per-image detection cache keyed by pixel content AND detector settings.

    Changing any detector setting (threshold, scales, ...) changes ``settings_key``, so a
    stale cache is never reused (DeepPrivacy2's cache was keyed by content only).

    Args:
        directory: cache root; entries go to ``<directory>/<settings_key[:16]>/<digest>.json``.
        settings: a text that fully describes the detector (e.g. its resolved config).
    """

    def __init__(self, directory: Path, settings: str) -> None:
        self.settings_key = hashlib.sha256(settings.encode()).hexdigest()
        self.directory = Path(directory) / self.settings_key[:16]
        self.directory.mkdir(parents=True, exist_ok=True)
        self.hits = 0
        self.misses = 0

    def _path(self, image: torch.Tensor) -> Path:
        return self.directory / f"{image_digest(image)}.json"

    def get(self, image: torch.Tensor) -> Detections | None:
        path = self._path(image)
        if not path.exists():
            self.misses += 1
            return None
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            if record.get("settings_key") != self.settings_key:
                raise DetectionFormatError("settings key mismatch")
            dets = detections_from_dict(record["detections"], tuple(image.shape[1:]), where=str(path))
        except (OSError, ValueError, KeyError, DetectionFormatError) as e:
            logger.warning("ignoring unreadable cache entry %s (%s)", path, e)
            self.misses += 1
            return None
        self.hits += 1
        return dets

    def put(self, image: torch.Tensor, dets: Detections) -> None:
        if dets.persons is not None or dets.cse_persons is not None:
            return  # person masks are not serialised; never cache a partial result
        write_json_atomic(self._path(image), {"version": FORMAT_VERSION, "settings_key": self.settings_key,
                                              "detections": detections_to_dict(dets)})


class DetectionExport:
    """Collects every detection per image/frame and writes ``--export-detections`` JSON."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        if not self.path.parent.is_dir():
            raise ValueError(f"{self.path}: folder {self.path.parent} does not exist")
        self.items: list[dict[str, Any]] = []

    def add(self, source: str, frame_index: int, time_s: float | None, dets: Detections) -> None:
        item = {"source": source, "frame": frame_index}
        if time_s is not None:
            item["time_s"] = round(time_s, 6)
        item.update(detections_to_dict(dets))
        self.items.append(item)

    def write(self) -> None:
        write_json_atomic(self.path, {"version": FORMAT_VERSION, "items": self.items})


class GivenDetections:
    """Detections supplied by the user (``--detections FILE.json``) instead of a detector.

    The format is the one ``--export-detections`` writes: ``{"version": 1, "items": [
    {"source": "img.jpg", "frame": 0, "size_hw": [H, W], "faces": [{"box": [x0, y0, x1, y1],
    "score": 0.9}, ...]}, ...]}``. ``source`` is matched against the input's path relative to the
    input folder, then its file name; a file with a single item applies to a single image.
    Boxes are rescaled if ``size_hw`` differs from the processed frame (e.g. ``--max-res``).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            payload = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError as e:
            raise ValueError(f"{self.path}: no such detections file") from e
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"{self.path}: not a JSON detections file ({e})") from e
        if not isinstance(payload, dict) or not isinstance(payload.get("items"), list):
            raise ValueError(f"{self.path}: expected an object with an 'items' list (the --export-detections format)")
        self.index: dict[tuple[str, int], dict] = {}
        for i, item in enumerate(payload["items"]):
            if not isinstance(item, dict) or "source" not in item:
                raise ValueError(f"{self.path}: items[{i}] needs a 'source'")
            frame = int(item.get("frame", 0))
            self.index[(str(item["source"]), frame)] = item
            self.index.setdefault((Path(str(item["source"])).name, frame), item)
        self.single = payload["items"][0] if len(payload["items"]) == 1 else None

    def get(self, source: str, frame_index: int, size_hw: tuple[int, int]) -> Detections:
        item = self.index.get((source, frame_index)) or self.index.get((Path(source).name, frame_index))
        if item is None and frame_index == 0 and self.single is not None:
            item = self.single
        if item is None:
            raise ValueError(f"{self.path}: no detections for {source} frame {frame_index}")
        return detections_from_dict(item, size_hw, where=f"{self.path}:{source}#{frame_index}")
