"""Detections <-> plain JSON-able dicts (no pickle: safe to read from anywhere)."""
from __future__ import annotations

from typing import Any

import torch

from ..structures import Detections, FaceDetections

__all__ = ["detections_to_dict", "detections_from_dict", "DetectionFormatError"]

FORMAT_VERSION = 1


class DetectionFormatError(ValueError):
    """A detections record does not have the expected structure."""


def detections_to_dict(dets: Detections) -> dict[str, Any]:
    """Plain-dict form: ``{"size_hw": [H, W], "faces": [{"box", "score", "landmarks"?}, ...]}``.

    Person masks are not exported (they would be huge); their boxes and scores are, under
    ``persons`` / ``cse_persons``. Only faces can be read back (``--detections``).
    """
    out: dict[str, Any] = {"size_hw": list(dets.image_size_hw)}
    if dets.faces is not None:
        faces = []
        f = dets.faces
        for i in range(len(f)):
            item: dict[str, Any] = {"box": [int(v) for v in f.boxes_xyxy[i].tolist()],
                                    "score": round(float(f.scores[i]), 5)}
            if f.landmarks is not None:
                item["landmarks"] = [[round(float(x), 2), round(float(y), 2)] for x, y in f.landmarks[i].tolist()]
            faces.append(item)
        out["faces"] = faces
    for kind in ("persons", "cse_persons"):
        bodies = getattr(dets, kind)
        if bodies is not None:
            # The box of the (dilated) person mask in the image; masks themselves are not exported.
            out[kind] = [{"box": [int(v) for v in bodies.dilated_boxes[i].tolist()],
                          "score": round(float(bodies.scores[i]), 5)} for i in range(len(bodies))]
    return out


def _number_list(value: Any, length: int, where: str) -> list[float]:
    if not isinstance(value, (list, tuple)) or len(value) != length or not all(isinstance(v, (int, float)) for v in value):
        raise DetectionFormatError(f"{where}: expected a list of {length} numbers, got {value!r}")
    return [float(v) for v in value]


def detections_from_dict(record: dict[str, Any], size_hw: tuple[int, int] | None = None, where: str = "record") -> Detections:
    """Parse :func:`detections_to_dict` output, rescaling boxes if ``size_hw`` differs from the record's.

    Args:
        record: the dict. ``size_hw`` may be omitted when ``size_hw`` is given.
        size_hw: size of the image the detections will be applied to.
        where: a name for error messages (file and item).

    Raises:
        DetectionFormatError: with ``where`` and what was expected.
    """
    if not isinstance(record, dict):
        raise DetectionFormatError(f"{where}: expected an object, got {type(record).__name__}")
    rec_size = record.get("size_hw")
    if rec_size is None and size_hw is None:
        raise DetectionFormatError(f"{where}: missing 'size_hw'")
    rec_hw = tuple(int(v) for v in _number_list(rec_size, 2, f"{where}.size_hw")) if rec_size is not None else size_hw
    target_hw = tuple(size_hw) if size_hw is not None else rec_hw
    sy, sx = target_hw[0] / rec_hw[0], target_hw[1] / rec_hw[1]
    faces = None
    if "faces" in record:
        items = record["faces"]
        if not isinstance(items, list):
            raise DetectionFormatError(f"{where}.faces: expected a list")
        boxes, scores, landmarks = [], [], []
        for j, item in enumerate(items):
            here = f"{where}.faces[{j}]"
            if not isinstance(item, dict) or "box" not in item:
                raise DetectionFormatError(f"{here}: expected an object with a 'box' [x0, y0, x1, y1]")
            x0, y0, x1, y1 = _number_list(item["box"], 4, f"{here}.box")
            if x1 <= x0 or y1 <= y0:
                raise DetectionFormatError(f"{here}.box: x1 > x0 and y1 > y0 expected, got {item['box']}")
            boxes.append([x0 * sx, y0 * sy, x1 * sx, y1 * sy])
            scores.append(float(item.get("score", 1.0)))
            lm = item.get("landmarks")
            landmarks.append(None if lm is None else [[x * sx, y * sy] for x, y in (_number_list(p, 2, f"{here}.landmarks") for p in lm)])
        box_t = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
        box_t = torch.cat([box_t[:, :2].floor(), box_t[:, 2:].ceil()], dim=1).long()
        lm_t = None
        if landmarks and all(lm is not None and len(lm) == len(landmarks[0]) for lm in landmarks):
            lm_t = torch.tensor(landmarks, dtype=torch.float32)
        faces = FaceDetections(boxes_xyxy=box_t, scores=torch.tensor(scores, dtype=torch.float32),
                               image_size_hw=target_hw, landmarks=lm_t)
    return Detections(image_size_hw=target_hw, faces=faces)
