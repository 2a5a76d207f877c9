"""Keypoints in body crops and the limb ("joint") map TriA-GAN takes as input.

DeepPrivacy2 (``PersonDetection`` with keypoints, ``InsertJointMap``) maps each person's 17
COCO keypoints into its expanded crop box and draws the skeleton into a uint8 map at the crop
size: one-pixel lines (PIL ``ImageDraw.line``), value = limb category (1 head, 2 left arm,
3 right arm, 4 body, 5 left leg, 6 right leg), later lines overwriting earlier ones. Found in
the golden data and reproduced here:

* endpoints are ``round(x * W), round(y * H)`` (half to even) of the crop-relative keypoints;
* the neck (between the shoulders) and the mid-hip exist only when both of their keypoints are
  visible; the mid-eye point always exists, even when the eyes are invisible;
* the head is joined to the neck from the nose, or, when the nose is invisible, from the mid-eye
  point; that one line is drawn in both directions (both Bresenham tie-breaks);
* order: arms, body, legs, head.

Lines are rasterised with :func:`line_pixels`, a Bresenham line that equals PIL's width-1
``ImageDraw.line`` pixel for pixel (checked in the tests), so no imaging library is needed.

Convention: crop-relative keypoints are float ``(x, y, visibility)`` with ``x, y`` in [0, 1]
of the crop box; image keypoints are in image pixels.
"""
from __future__ import annotations

import torch

__all__ = ["JOINT_CATEGORIES", "body_keypoint_conditions", "draw_joint_map", "keypoints_to_crops", "line_pixels"]

#: Limb category of each joint-map value (0 = no limb).
JOINT_CATEGORIES = {1: "head", 2: "left arm", 3: "right arm", 4: "body", 5: "left leg", 6: "right leg"}

# (category, from, to) in drawing order; "neck", "hip" and "eye" are synthesised points.
_LIMBS = (
    (2, 5, 7), (2, 7, 9),                                   # left shoulder - elbow - wrist
    (3, 6, 8), (3, 8, 10),                                  # right arm
    (4, 5, 6), (4, 5, 11), (4, 6, 12), (4, 11, 12), (4, "neck", "hip"),
    (5, 11, 13), (5, 13, 15),                               # left hip - knee - ankle
    (6, 12, 14), (6, 14, 16),                               # right leg
    (1, 0, 1), (1, 0, 2), (1, 1, 2), (1, 1, 3), (1, 2, 4),  # nose, eyes, ears
)


def line_pixels(x0: int, y0: int, x1: int, y1: int) -> list[tuple[int, int]]:
    """Pixels ``(x, y)`` of the one-pixel line from ``(x0, y0)`` to ``(x1, y1)``, both ends included.

    Bresenham with the error term stepping on ``>= 0``, which is PIL's width-1 line: on an exact
    tie the step happens early, so the line from A to B and the line from B to A can differ.

    >>> line_pixels(0, 0, 4, 2)
    [(0, 0), (1, 1), (2, 1), (3, 2), (4, 2)]
    >>> line_pixels(4, 2, 0, 0)
    [(4, 2), (3, 1), (2, 1), (1, 0), (0, 0)]
    """
    dx, dy = abs(x1 - x0), abs(y1 - y0)
    xs = 1 if x1 >= x0 else -1
    ys = 1 if y1 >= y0 else -1
    x, y = x0, y0
    pts = []
    if dx >= dy:
        e = 2 * dy - dx
        for _ in range(dx + 1):
            pts.append((x, y))
            if e >= 0:
                y += ys
                e -= 2 * dx
            e += 2 * dy
            x += xs
    else:
        e = 2 * dx - dy
        for _ in range(dy + 1):
            pts.append((x, y))
            if e >= 0:
                x += xs
                e -= 2 * dy
            e += 2 * dx
            y += ys
    return pts


def _draw(canvas: torch.Tensor, a: tuple[int, int], b: tuple[int, int], value: int) -> None:
    h, w = canvas.shape
    pts = [(x, y) for x, y in line_pixels(a[0], a[1], b[0], b[1]) if 0 <= x < w and 0 <= y < h]
    if pts:
        xs, ys = zip(*pts)
        canvas[list(ys), list(xs)] = value


def draw_joint_map(keypoints: torch.Tensor, size_hw: tuple[int, int]) -> torch.Tensor:
    """DP2's TriA-GAN joint map for crop-relative COCO keypoints.

    Args:
        keypoints: float [N, 17, 3]: ``(x, y)`` in [0, 1] of the crop, visibility (> 0 = visible).
        size_hw: (H, W) of the map (the generator's crop size, 288x160).

    Returns:
        uint8 [N, 1, H, W] with values 0..6 (:data:`JOINT_CATEGORIES`). Lines leaving the map
        are clipped; a person without visible keypoints gets an empty map.

    >>> kp = torch.zeros(1, 17, 3)
    >>> kp[0, 5] = torch.tensor([0.25, 0.5, 1.0]); kp[0, 7] = torch.tensor([0.25, 0.75, 1.0])
    >>> jm = draw_joint_map(kp, (8, 8))
    >>> jm[0, 0, :, 2].tolist()  # the left upper arm, x = 2, y = 4..6
    [0, 0, 0, 0, 2, 2, 2, 0]
    """
    if keypoints.ndim != 3 or tuple(keypoints.shape[1:]) != (17, 3):
        raise ValueError(f"keypoints must have shape [N, 17, 3], got {list(keypoints.shape)}")
    h, w = int(size_hw[0]), int(size_hw[1])
    kp = keypoints.detach().to("cpu", torch.float32)
    xy = kp[..., :2] * torch.tensor([w, h], dtype=torch.float32)  # [N, 17, 2] crop pixels
    out = torch.zeros((kp.shape[0], 1, h, w), dtype=torch.uint8)
    for i in range(kp.shape[0]):
        visible = {j: bool(kp[i, j, 2] > 0) for j in range(17)}
        points = {j: xy[i, j] for j in range(17)}
        points["neck"] = (xy[i, 5] + xy[i, 6]) / 2
        points["hip"] = (xy[i, 11] + xy[i, 12]) / 2
        points["eye"] = (xy[i, 1] + xy[i, 2]) / 2
        visible["neck"] = visible[5] and visible[6]
        visible["hip"] = visible[11] and visible[12]
        visible["eye"] = True
        pixel = {k: (int(torch.round(p[0])), int(torch.round(p[1]))) for k, p in points.items()}
        canvas = out[i, 0]
        for value, a, b in _LIMBS:
            if visible[a] and visible[b]:
                _draw(canvas, pixel[a], pixel[b], value)
        if visible["neck"]:
            head = 0 if visible[0] else "eye"
            _draw(canvas, pixel[head], pixel["neck"], 1)
            _draw(canvas, pixel["neck"], pixel[head], 1)
    return out


def keypoints_to_crops(keypoints: torch.Tensor, boxes_xyxy: torch.Tensor, vis_threshold: float = 0.05) -> torch.Tensor:
    """Image keypoints relative to each person's crop box (DP2 ``shift_and_preprocess_keypoints``).

    Args:
        keypoints: float [N, K, 3] ``(x, y, visibility)`` in image pixels.
        boxes_xyxy: int64 [N, 4] crop boxes (may leave the image).
        vis_threshold: a keypoint is visible when its visibility is above it (DP2's
            ``kp_vis_thr`` 0.05; the detector already gives 0 or 1, so this changes nothing).

    Returns:
        float32 [N, K, 3]: ``((x - x0) / (x1 - x0), (y - y0) / (y1 - y0), visible)`` with
        ``visible`` 0 for keypoints outside the box (relative coordinates outside [0, 1]).

    >>> kp = torch.tensor([[[15.0, 30.0, 1.0], [5.0, 30.0, 1.0]]])
    >>> keypoints_to_crops(kp, torch.tensor([[10, 20, 30, 60]])).tolist()
    [[[0.25, 0.25, 1.0], [-0.25, 0.25, 0.0]]]
    """
    if keypoints.ndim != 3 or keypoints.shape[2] != 3:
        raise ValueError(f"keypoints must have shape [N, K, 3], got {list(keypoints.shape)}")
    if tuple(boxes_xyxy.shape) != (keypoints.shape[0], 4):
        raise ValueError(f"boxes_xyxy must have shape [{keypoints.shape[0]}, 4], got {list(boxes_xyxy.shape)}")
    b = boxes_xyxy.to(keypoints.device, torch.float32)[:, None, :]  # [N, 1, 4]
    x = (keypoints[..., 0] - b[..., 0]) / (b[..., 2] - b[..., 0])
    y = (keypoints[..., 1] - b[..., 1]) / (b[..., 3] - b[..., 1])
    inside = (x >= 0) & (x <= 1) & (y >= 0) & (y <= 1)
    visible = (keypoints[..., 2] > vis_threshold) & inside
    return torch.stack([x, y, visible.to(torch.float32)], dim=2).to(torch.float32)


def body_keypoint_conditions(keypoints: torch.Tensor | None, boxes_xyxy: torch.Tensor, maskrcnn_mask: torch.Tensor,
                             size_hw: tuple[int, int], vis_threshold: float = 0.05) -> dict[str, torch.Tensor]:
    """TriA-GAN's extra inputs for a batch of body crops (DP2 ``PersonDetection.get_crop``).

    Args:
        keypoints: float [N, 17, 3] image keypoints ``(x, y, visible)``, or None when the detector
            gives none (every keypoint is then invisible: TriA-GAN still generates the person).
        boxes_xyxy: int64 [N, 4] crop boxes.
        maskrcnn_mask: bool [N, 1, h, w] crop-space undilated mask, True = background.
        size_hw: crop size (h, w).
        vis_threshold: see :func:`keypoints_to_crops`.

    Returns:
        ``{"maskrcnn_mask": float32 [N, 1, h, w], "keypoints": float32 [N, 17, 3] crop-relative,
        "joint_map": uint8 [N, 1, h, w]}``.
    """
    n = boxes_xyxy.shape[0]
    if keypoints is None:
        keypoints = torch.zeros((n, 17, 3), dtype=torch.float32)
    rel = keypoints_to_crops(keypoints.cpu(), boxes_xyxy.cpu(), vis_threshold)
    return {"maskrcnn_mask": maskrcnn_mask.to(torch.float32), "keypoints": rel,
            "joint_map": draw_joint_map(rel, size_hw)}
