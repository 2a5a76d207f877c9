"""Face crops as DeepPrivacy2 feeds them to its face generators (``FaceDetection.get_crop``).

Per face: expand the detector box (:mod:`dp2.ops.face_boxes`), crop the expanded box with
zero padding and resize it with the face rule (:func:`dp2.ops.resize.cut_pad_resize` with
``fdf_resize=True``), and build a keep mask that is False on the detector box only, so the
generator re-synthesises the face and sees the margin as context.

Convention: boxes are int64 ``[N, 4]`` ``(x0, y0, x1, y1)`` half-open image pixels; crops are
square ``(S, S)``; ``keep_mask`` True = keep, False = synthesise.
"""
from __future__ import annotations

import torch

from dp2.ops.face_boxes import expand_face_boxes
from dp2.ops.resize import cut_pad_resize
from dp2.structures.crops import CropBatch

__all__ = ["crop_faces", "dp1_crop_keypoints", "face_crop_mask", "sort_by_area"]


def _target_side(target_hw) -> int:
    if isinstance(target_hw, int):
        return target_hw
    th, tw = (int(v) for v in target_hw)
    if th != tw:
        raise ValueError(f"face crops are square, got target_hw {tuple(target_hw)}")
    return th


def sort_by_area(boxes_xyxy: torch.Tensor) -> torch.Tensor:
    """Order that sorts boxes by area, smallest first (DP2 pastes the largest face last).

    Args:
        boxes_xyxy: int64 [N, 4].

    Returns:
        int64 [N] permutation from ``torch.argsort`` (not guaranteed stable for equal areas,
        exactly like DP2).

    >>> sort_by_area(torch.tensor([[0, 0, 10, 10], [0, 0, 2, 3], [5, 5, 9, 9]]))
    tensor([1, 2, 0])
    """
    if boxes_xyxy.ndim != 2 or boxes_xyxy.shape[1] != 4:
        raise ValueError(f"boxes_xyxy must have shape [N, 4], got {list(boxes_xyxy.shape)}")
    area = (boxes_xyxy[:, 2] - boxes_xyxy[:, 0]) * (boxes_xyxy[:, 3] - boxes_xyxy[:, 1])
    return torch.argsort(area)


def face_crop_mask(box_xyxy: torch.Tensor, expanded_box_xyxy: torch.Tensor, target_hw) -> torch.Tensor:
    """Keep mask of one face crop: False on the detector box, True on the margin.

    The detector box is moved into the expanded box's frame, scaled by
    ``S / (ex1 - ex0)`` (one factor for both axes), truncated towards zero like numpy's
    ``astype(int)``, and clamped to ``[0, S]``.

    Args:
        box_xyxy: int [4] detector box in image pixels.
        expanded_box_xyxy: int [4] expanded (square) box in image pixels.
        target_hw: S or (S, S), the crop size.

    Returns:
        bool [1, S, S]; True = keep, False = synthesise.

    Convention:
        The box's scaled corners are truncated, so the hole covers columns
        ``int(sx0) .. int(sx1) - 1`` (half-open, like every box here).

    >>> m = face_crop_mask(torch.tensor([16, 90, 19, 95]), torch.tensor([14, 89, 20, 95]), 12)
    >>> (~m[0]).nonzero()[[0, -1]].tolist()  # first and last synthesised (row, col)
    [[2, 4], [11, 9]]
    """
    side = _target_side(target_hw)
    box = torch.as_tensor(box_xyxy).reshape(4).to(torch.float64)
    exp = torch.as_tensor(expanded_box_xyxy).reshape(4).to(torch.float64)
    scale = side / float(exp[2] - exp[0])
    shifted = box - exp[[0, 1, 0, 1]]
    # .to(int64) truncates towards zero, as numpy's astype(int) does.
    x0, y0, x1, y1 = (shifted * scale).to(torch.int64).clamp(0, side).tolist()
    mask = torch.ones((1, side, side), dtype=torch.bool)
    mask[:, y0:y1, x0:x1] = False
    return mask


def dp1_crop_keypoints(keypoints_xy: torch.Tensor, expanded_boxes_xyxy: torch.Tensor) -> torch.Tensor:
    """DeepPrivacy1 keypoints relative to the face crop.

    Args:
        keypoints_xy: float32 [N, K, 2] (K >= 7) image-pixel (x, y); the first 7 are COCO nose,
            eyes, ears and shoulders.
        expanded_boxes_xyxy: int64 [N, 4] expanded face boxes.

    Returns:
        float32 [N, 7, 3]: ``(x - x0) / w`` and ``(y - y0) / w`` with ``w = x1 - x0`` (both axes
        use the width), clamped to [0, 1], and visibility 1.

    >>> dp1_crop_keypoints(torch.full((1, 7, 2), 15.0), torch.tensor([[10, 5, 30, 25]]))[0, 0]
    tensor([0.2500, 0.5000, 1.0000])
    """
    if keypoints_xy.ndim != 3 or keypoints_xy.shape[1] < 7 or keypoints_xy.shape[2] < 2:
        raise ValueError(f"keypoints_xy must have shape [N, K>=7, 2], got {list(keypoints_xy.shape)}")
    if expanded_boxes_xyxy.shape != (keypoints_xy.shape[0], 4):
        raise ValueError(f"expanded_boxes_xyxy must have shape [{keypoints_xy.shape[0]}, 4], "
                         f"got {list(expanded_boxes_xyxy.shape)}")
    kp = keypoints_xy[:, :7, :2].to(torch.float32)  # [N, 7, 2]
    origin = expanded_boxes_xyxy[:, None, :2].to(torch.float32)  # [N, 1, 2]
    width = (expanded_boxes_xyxy[:, 2] - expanded_boxes_xyxy[:, 0]).to(torch.float32)[:, None, None]
    rel = ((kp - origin) / width).clamp(0, 1)
    return torch.cat([rel, torch.ones_like(rel[..., :1])], dim=2)


def crop_faces(image: torch.Tensor, boxes_xyxy: torch.Tensor, target_hw=(256, 256), method: str = "simple",
               keypoints_xy: torch.Tensor | None = None) -> CropBatch:
    """Crop every face the way DP2's face anonymizers do (``FaceDetection.get_crop``).

    Faces keep the input order; call :func:`sort_by_area` first to reproduce DP2's order.

    Args:
        image: uint8 [3, H, W] RGB.
        boxes_xyxy: int64 [N, 4] detector boxes.
        target_hw: (S, S) crop size: (256, 256) for FDF256, (128, 128) for FDF128 / DP1.
        method: box expansion, ``"simple"`` (FDF256) or ``"fdf128"`` (FDF128, DP1).
        keypoints_xy: optional float32 [N, K>=7, 2] image keypoints (DeepPrivacy1).

    Returns:
        CropBatch with ``images`` uint8 [N, 3, S, S], ``keep_mask`` bool [N, 1, S, S],
        ``boxes_xyxy`` the expanded boxes (may leave the image) and ``keypoints``
        [N, 7, 3] when ``keypoints_xy`` is given.

    Raises:
        ValueError: on a wrong image or box shape.

    Note:
        Crops are made with ``dp2_quirk=False``: where the expanded box is partly outside the
        image and its clipped size equals the target, DP2 would return a larger padded crop that
        its generator cannot take; here it is resized to the target (``cv2.INTER_AREA``).

    >>> img = torch.zeros((3, 40, 60), dtype=torch.uint8)
    >>> crops = crop_faces(img, torch.tensor([[10, 10, 20, 22], [-3, 0, 5, 6]]), (16, 16))
    >>> crops.images.shape, crops.boxes_xyxy.tolist()
    (torch.Size([2, 3, 16, 16]), [[7, 8, 23, 24], [-4, -2, 6, 8]])
    """
    if image.dtype != torch.uint8 or image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"image must be uint8 [3, H, W], got {image.dtype} {list(image.shape)}")
    if boxes_xyxy.ndim != 2 or boxes_xyxy.shape[1] != 4:
        raise ValueError(f"boxes_xyxy must have shape [N, 4], got {list(boxes_xyxy.shape)}")
    side = _target_side(target_hw)
    n = boxes_xyxy.shape[0]
    boxes = boxes_xyxy.to(torch.int64).cpu()
    expanded = expand_face_boxes(boxes, tuple(image.shape[1:]), method)
    images = torch.zeros((n, 3, side, side), dtype=torch.uint8, device=image.device)
    keep = torch.ones((n, 1, side, side), dtype=torch.bool, device=image.device)
    for i in range(n):
        images[i] = cut_pad_resize(image, expanded[i], (side, side), fdf_resize=True, dp2_quirk=False)
        keep[i] = face_crop_mask(boxes[i], expanded[i], side)
    kp = None
    if keypoints_xy is not None:
        kp = dp1_crop_keypoints(keypoints_xy.cpu(), expanded).to(image.device)
    return CropBatch(images=images, keep_mask=keep, boxes_xyxy=expanded.to(image.device), keypoints=kp)
