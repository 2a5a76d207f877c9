"""Pair face boxes with person keypoint skeletons (DeepPrivacy1 detector, DP2 ``match_bbox_keypoint``)."""
from __future__ import annotations

import torch

__all__ = ["match_face_keypoints"]


def match_face_keypoints(face_boxes_xyxy: torch.Tensor, keypoints_xy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedily give each face the first unused person whose nose and eyes lie in its box.

    Faces are visited in order; each takes the lowest-index person not taken yet whose first
    three keypoints (COCO nose, left eye, right eye) all satisfy ``x0 <= x <= x1`` and
    ``y0 <= y <= y1``. DP2 then drops the faces without a match; this function returns the
    matched pairs so callers can decide what to do with the others (see Note).

    Args:
        face_boxes_xyxy: int64 [N, 4] face boxes in image pixels.
        keypoints_xy: float [M, K>=3, 2] person keypoints (x, y) in image pixels.

    Returns:
        ``(face_idx, person_idx)``: two int64 [P] tensors, P <= min(N, M), in face order.
        DP2's kept faces are ``face_boxes_xyxy[face_idx]`` with keypoints
        ``keypoints_xy[person_idx]``.

    Raises:
        ValueError: on wrong shapes.

    Convention:
        Inclusive on all four sides (a keypoint on ``x1`` or ``y1`` counts as inside), unlike the
        half-open box convention elsewhere, because that is what DP2 does.

    Note:
        Faces not in ``face_idx`` have no skeleton. DP2 leaves them un-anonymised; a privacy-safe
        caller should still anonymise them (for example with keypoints marked invisible).

    >>> faces = torch.tensor([[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10]])
    >>> kps = torch.tensor([[[25., 5.], [22., 3.], [28., 3.]], [[5., 5.], [3., 3.], [10., 10.]]])
    >>> match_face_keypoints(faces, kps)
    (tensor([0, 1]), tensor([1, 0]))
    """
    if face_boxes_xyxy.ndim != 2 or face_boxes_xyxy.shape[1] != 4:
        raise ValueError(f"face_boxes_xyxy must have shape [N, 4], got {list(face_boxes_xyxy.shape)}")
    if keypoints_xy.ndim != 3 or keypoints_xy.shape[1] < 3 or keypoints_xy.shape[2] < 2:
        raise ValueError(f"keypoints_xy must have shape [M, K>=3, 2], got {list(keypoints_xy.shape)}")
    pts = keypoints_xy[:, None, :3, :2]  # [M, 1, 3, 2]
    boxes = face_boxes_xyxy[None, :, None, :].to(pts.dtype)  # [1, N, 1, 4]
    inside = ((pts[..., 0] >= boxes[..., 0]) & (pts[..., 0] <= boxes[..., 2])
              & (pts[..., 1] >= boxes[..., 1]) & (pts[..., 1] <= boxes[..., 3])).all(dim=2)  # [M, N]
    inside = inside.T.tolist()  # [N][M]
    used: set[int] = set()
    face_idx, person_idx = [], []
    for i, row in enumerate(inside):
        for j, hit in enumerate(row):
            if hit and j not in used:
                used.add(j)
                face_idx.append(i)
                person_idx.append(j)
                break
    device = face_boxes_xyxy.device
    return (torch.tensor(face_idx, dtype=torch.int64, device=device),
            torch.tensor(person_idx, dtype=torch.int64, device=device))
