"""Drawing detections for ``--vd`` (boxes, scores, landmarks, body keypoints)."""
from __future__ import annotations

import cv2
import numpy as np
import torch

from .structures import Detections

__all__ = ["draw_detections"]

_FACE_COLOR = (0, 255, 0)
_PERSON_COLOR = (255, 128, 0)
_CSE_COLOR = (0, 128, 255)
_LANDMARK_COLORS = [(255, 0, 0), (0, 0, 255), (255, 255, 0), (255, 0, 255), (0, 255, 255)]


def draw_detections(image: torch.Tensor, dets: Detections) -> torch.Tensor:
    """A copy of uint8 [3, H, W] ``image`` with boxes, scores and landmarks drawn on it."""
    canvas = np.ascontiguousarray(image.permute(1, 2, 0).cpu().numpy()).copy()
    h, w = canvas.shape[:2]
    thickness = max(1, round(max(h, w) / 600))
    font_scale = max(0.35, max(h, w) / 1600)
    for kind, color in (("persons", _PERSON_COLOR), ("cse_persons", _CSE_COLOR)):
        bodies = getattr(dets, kind)
        if bodies is None or len(bodies) == 0:
            continue
        for mask in bodies.segmentation.cpu().numpy():
            canvas[mask] = (0.5 * canvas[mask] + 0.5 * np.array(color)).astype(np.uint8)
        for box, score in zip(bodies.dilated_boxes.tolist(), bodies.scores.tolist()):
            _box(canvas, box, score, color, thickness, font_scale)
        if bodies.keypoints is not None:  # FB_triagan's ViTPose keypoints (visible ones)
            for x, y, visible in bodies.keypoints.reshape(-1, 3).tolist():
                if visible > 0:
                    cv2.circle(canvas, (round(x), round(y)), thickness + 1, _FACE_COLOR, -1)
    if dets.faces is not None:
        f = dets.faces
        for i, (box, score) in enumerate(zip(f.boxes_xyxy.tolist(), f.scores.tolist())):
            _box(canvas, box, score, _FACE_COLOR, thickness, font_scale)
            if f.landmarks is not None:
                for j, (x, y) in enumerate(f.landmarks[i].tolist()):
                    cv2.circle(canvas, (round(x), round(y)), thickness + 1, _LANDMARK_COLORS[j % 5], -1)
    return torch.from_numpy(canvas).permute(2, 0, 1).contiguous()


def _box(canvas, box, score, color, thickness, font_scale) -> None:
    x0, y0, x1, y1 = (int(v) for v in box)
    cv2.rectangle(canvas, (x0, y0), (x1 - 1, y1 - 1), color, thickness)
    cv2.putText(canvas, f"{score:.2f}", (x0, max(0, y0 - 3)), cv2.FONT_HERSHEY_SIMPLEX, font_scale, color,
                max(1, thickness // 2), cv2.LINE_AA)
