"""Drop faces that a body crop already covers (DeepPrivacy2 ``CSeMaskFaceDetector``).

DP2 anonymizes faces first and bodies afterwards; a face that lies strictly inside the dilated
box of any person would be overwritten anyway, so it is removed before face cropping.

Convention: boxes are int64 ``(x0, y0, x1, y1)`` half-open image pixels.
"""
from __future__ import annotations

import torch

__all__ = ["faces_inside_bodies"]


def faces_inside_bodies(face_boxes_xyxy: torch.Tensor, dilated_body_boxes_xyxy: torch.Tensor) -> torch.Tensor:
    """Which faces lie strictly inside at least one body box.

    Args:
        face_boxes_xyxy: int [N, 4] face boxes.
        dilated_body_boxes_xyxy: int [M, 4] dilated person boxes (CSE and non-CSE persons
            together; M may be 0).

    Returns:
        bool [N]; True = the face is inside some body box and DP2 drops it.

    Raises:
        ValueError: if a box tensor is not [K, 4].

    Convention:
        All four inequalities are strict: ``fx0 > bx0``, ``fy0 > by0``, ``fx1 < bx1`` and
        ``fy1 < by1``. A face touching a body box edge is kept.

    >>> faces = torch.tensor([[12, 12, 20, 20], [10, 12, 20, 20], [50, 50, 60, 60]])
    >>> faces_inside_bodies(faces, torch.tensor([[10, 10, 40, 40]]))
    tensor([ True, False, False])
    >>> faces_inside_bodies(faces, torch.zeros((0, 4), dtype=torch.int64))
    tensor([False, False, False])
    """
    for name, boxes in (("face_boxes_xyxy", face_boxes_xyxy), ("dilated_body_boxes_xyxy", dilated_body_boxes_xyxy)):
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise ValueError(f"{name} must have shape [K, 4], got {list(boxes.shape)}")
    f = face_boxes_xyxy[:, None, :]  # [N, 1, 4]
    b = dilated_body_boxes_xyxy[None, :, :].to(f.device)  # [1, M, 4]
    inside = (f[..., 0] > b[..., 0]) & (f[..., 1] > b[..., 1]) & (f[..., 2] < b[..., 2]) & (f[..., 3] < b[..., 3])
    return inside.any(dim=1)
