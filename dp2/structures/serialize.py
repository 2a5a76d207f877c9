"""Detections <-> plain JSON-able dicts (no pickle), read back as untrusted input.

A record is ``{"size_hw": [H, W], "faces": [{"box": [x0, y0, x1, y1], "score": s,
"landmarks": [[x, y], ...]}, ...]}``; exports add ``persons`` / ``cse_persons`` (boxes and
scores only). :func:`detections_from_dict` checks every value: a record that is wrong in any
way is refused with a message naming the item, never used in part or rescaled.
"""
from __future__ import annotations

import math
from typing import Any, Iterable

import torch

from .detections import FaceDetections
from .detections_set import Detections

__all__ = ["detections_to_dict", "detections_from_dict", "DetectionFormatError", "FORMAT_VERSION", "BODY_KINDS",
           "read_size_hw", "show_value"]

FORMAT_VERSION = 1
#: Kinds an export lists but an import cannot use: person masks are not stored.
BODY_KINDS = ("persons", "cse_persons")
_FACE_KEYS = ("box", "score", "landmarks")
_MAX_LANDMARKS = 1000


class DetectionFormatError(ValueError):
    """A detections record does not have the expected structure or values."""


def detections_to_dict(dets: Detections) -> dict[str, Any]:
    """Plain-dict form: ``{"size_hw": [H, W], "faces": [{"box", "score", "landmarks"?}, ...]}``.

    Person masks are not exported (they would be huge); their boxes and scores are, under
    ``persons`` / ``cse_persons``. Only faces can be read back (``--detections``).
    """
    out: dict[str, Any] = {"size_hw": [int(v) for v in dets.image_size_hw]}
    if dets.faces is not None:
        faces = []
        f = dets.faces
        for i in range(len(f)):
            item: dict[str, Any] = {"box": [int(v) for v in f.boxes_xyxy[i].tolist()],
                                    "score": round(min(max(float(f.scores[i]), 0.0), 1.0), 5)}
            if f.landmarks is not None and bool(torch.isfinite(f.landmarks[i]).all()):
                item["landmarks"] = [[round(float(x), 2), round(float(y), 2)] for x, y in f.landmarks[i].tolist()]
            faces.append(item)
        out["faces"] = faces
    for kind in BODY_KINDS:
        bodies = getattr(dets, kind)
        if bodies is not None:
            # The box of the (dilated) person mask in the image; masks themselves are not exported.
            out[kind] = [{"box": [int(v) for v in bodies.dilated_boxes[i].tolist()],
                          "score": round(float(bodies.scores[i]), 5)} for i in range(len(bodies))]
    return out


def show_value(value: Any) -> str:
    """``repr(value)``, cut to 60 characters (for error messages about untrusted values)."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _number(value: Any, where: str) -> float | int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DetectionFormatError(f"{where}: expected a number, got {show_value(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise DetectionFormatError(f"{where}: expected a finite number, got {value}")
    return value


def _numbers(value: Any, length: int, where: str) -> list[float | int]:
    if not isinstance(value, list) or len(value) != length:
        raise DetectionFormatError(f"{where}: expected a list of {length} numbers, got {show_value(value)}")
    return [_number(v, f"{where}[{i}]") for i, v in enumerate(value)]


def _check_keys(record: dict, allowed: Iterable[str], where: str) -> None:
    allowed = tuple(allowed)
    unknown = [k for k in record if k not in allowed]
    if unknown:
        raise DetectionFormatError(f"{where}: unknown key {show_value(unknown[0])} (expected {', '.join(allowed)})")


def read_size_hw(value: Any, where: str) -> tuple[int, int]:
    """``[H, W]`` as positive ints, or DetectionFormatError."""
    if not isinstance(value, list) or len(value) != 2 or not all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value):
        raise DetectionFormatError(f"{where}: expected [H, W], two positive integers, got {show_value(value)}")
    return int(value[0]), int(value[1])


def _in_bounds(v: float | int, extent: int, where: str, name: str) -> None:
    # A detector's box may stick out of the image, but not by more than the image's own size.
    if not -extent <= v <= 2 * extent:
        raise DetectionFormatError(f"{where}: {name} = {show_value(v)} is outside [{-extent}, {2 * extent}] "
                                   f"(at most one image size beyond the border)")


def _read_face(item: Any, size_hw: tuple[int, int], where: str) -> tuple[list[float], float, list | None]:
    h, w = size_hw
    if not isinstance(item, dict) or "box" not in item:
        raise DetectionFormatError(f"{where}: expected an object with a 'box' [x0, y0, x1, y1], got {show_value(item)}")
    _check_keys(item, _FACE_KEYS, where)
    x0, y0, x1, y1 = box = _numbers(item["box"], 4, f"{where}.box")
    for name, v, extent in (("x0", x0, w), ("y0", y0, h), ("x1", x1, w), ("y1", y1, h)):
        _in_bounds(v, extent, f"{where}.box", name)
    if not (x1 > x0 and y1 > y0):
        raise DetectionFormatError(f"{where}.box: expected x1 > x0 and y1 > y0, got {box}")
    if min(x1, w) <= max(x0, 0) or min(y1, h) <= max(y0, 0):
        raise DetectionFormatError(f"{where}.box: {box} has no area inside the image (size_hw [{h}, {w}])")
    score = _number(item.get("score", 1.0), f"{where}.score")
    if not 0 <= score <= 1:
        raise DetectionFormatError(f"{where}.score: expected a number in [0, 1], got {score}")
    landmarks = item.get("landmarks")
    if landmarks is not None:
        if not isinstance(landmarks, list) or len(landmarks) > _MAX_LANDMARKS:
            raise DetectionFormatError(f"{where}.landmarks: expected a list of [x, y] points, got {show_value(landmarks)}")
        points = []
        for k, point in enumerate(landmarks):
            x, y = _numbers(point, 2, f"{where}.landmarks[{k}]")
            _in_bounds(x, w, f"{where}.landmarks[{k}]", "x")
            _in_bounds(y, h, f"{where}.landmarks[{k}]", "y")
            points.append([float(x), float(y)])
        landmarks = points
    return [float(v) for v in box], float(score), landmarks


def detections_from_dict(record: Any, size_hw: tuple[int, int] | None = None, where: str = "record",
                         extra_keys: Iterable[str] = ()) -> Detections:
    """Parse and check a :func:`detections_to_dict` record.

    Every value is checked: ``size_hw`` two positive ints (equal to ``size_hw`` when given:
    detections are never rescaled); boxes finite, ``x1 > x0``, ``y1 > y0``, at most one image size
    beyond the border and with some area inside the image; scores in [0, 1]. Boxes are kept as
    given (rounded outward to whole pixels), not clipped: the anonymized region grows around the
    whole box, as it did in the run that found it. Non-empty ``persons`` / ``cse_persons`` are
    refused (their masks are not stored, so they cannot be anonymized from a record).

    Args:
        record: the dict (from untrusted JSON).
        size_hw: size of the image the detections will be applied to, or None to take the record's.
        where: a name for error messages (file and item).
        extra_keys: further keys the record may hold (e.g. ``source`` in a detections file).

    Raises:
        DetectionFormatError: naming ``where``, the item and what was expected.
    """
    if not isinstance(record, dict):
        raise DetectionFormatError(f"{where}: expected an object, got {show_value(record)}")
    _check_keys(record, ("size_hw", "faces", *BODY_KINDS, *extra_keys), where)
    if "size_hw" not in record:
        raise DetectionFormatError(f"{where}: missing 'size_hw' [H, W]")
    rec_hw = read_size_hw(record["size_hw"], f"{where}.size_hw")
    if size_hw is not None and tuple(size_hw) != rec_hw:
        raise DetectionFormatError(f"{where}.size_hw: {list(rec_hw)} does not match the image's "
                                   f"{[int(v) for v in size_hw]}: made for another image or another --max-res "
                                   "(detections are never rescaled)")
    for kind in BODY_KINDS:
        if kind in record:
            value = record[kind]
            if not isinstance(value, list):
                raise DetectionFormatError(f"{where}.{kind}: expected a list, got {show_value(value)}")
            if value:
                raise DetectionFormatError(f"{where}.{kind}: {len(value)} person detection(s) cannot be used: person "
                                           "masks are not stored in detection files (run the detector instead, or "
                                           f"remove '{kind}')")
    faces = None
    if "faces" in record:
        items = record["faces"]
        if not isinstance(items, list):
            raise DetectionFormatError(f"{where}.faces: expected a list, got {show_value(items)}")
        parsed = [_read_face(item, rec_hw, f"{where}.faces[{j}]") for j, item in enumerate(items)]
        box_t = torch.tensor([p[0] for p in parsed], dtype=torch.float64).reshape(-1, 4)
        box_t = torch.cat([box_t[:, :2].floor(), box_t[:, 2:].ceil()], dim=1).long()
        lm_t = None
        landmarks = [p[2] for p in parsed]
        if landmarks and all(lm is not None and len(lm) == len(landmarks[0]) for lm in landmarks):
            lm_t = torch.tensor(landmarks, dtype=torch.float32).reshape(len(landmarks), -1, 2)
        faces = FaceDetections(boxes_xyxy=box_t, scores=torch.tensor([p[1] for p in parsed], dtype=torch.float32),
                               image_size_hw=rec_hw, landmarks=lm_t)
    return Detections(image_size_hw=rec_hw, faces=faces)
