"""Person box expansion, as DeepPrivacy2 prepares body crops (``PersonDetection.pre_process``).

Per instance the chain is:

1. :func:`masks_to_boxes` of the person mask (for CSE persons: union with the CSE box),
2. :func:`expand_axises_by_percentage` grows both sides by ``int(sqrt(h * w) * 0.1)``,
3. :func:`expand_bbox_to_ratio` grows the shorter axis to the generator's aspect (288 / 160),
4. :func:`expand_box` grows both sides when the mask fills more than 70 % of the box,
5. :func:`include_box` drops boxes whose area is below 32 * 32 px.

:func:`expand_person_boxes` runs the whole chain on a batch.

Convention: boxes are ``(x0, y0, x1, y1)`` integer pixels, half-open (``x1``, ``y1``
exclusive); ``imshape_hw`` is ``(H, W)`` of the image. Expanded boxes may leave the image (the
crop is zero-padded there).

Arithmetic follows DP2 exactly, including its dtypes: the axis expansion and the background
test run in float32 (DP2 computes them on 0-dim int64 tensors, whose square root and true
division give float32), the aspect-ratio step in Python floats.
"""
from __future__ import annotations

import torch

__all__ = ["masks_to_boxes", "expand_axis", "expand_axises_by_percentage", "expand_bbox_to_ratio", "expand_box",
           "include_box", "expand_person_box", "expand_person_boxes"]

Box = tuple[int, int, int, int]


def _box4(box_xyxy) -> Box:
    values = box_xyxy.tolist() if isinstance(box_xyxy, torch.Tensor) else list(box_xyxy)
    if len(values) != 4:
        raise ValueError(f"box must be (x0, y0, x1, y1), got {values}")
    return tuple(int(v) for v in values)  # type: ignore[return-value]


def masks_to_boxes(masks: torch.Tensor) -> torch.Tensor:
    """Tight box of every mask, as DP2 computes it (``x1``/``y1`` exclusive).

    Args:
        masks: bool [N, H, W].

    Returns:
        int64 [N, 4] ``(x0, y0, x1, y1)``.

    Convention:
        Half-open: ``x1`` is one past the last column that holds a mask pixel. Like DP2 (which
        uses ``argmax`` on the projections), an empty mask gives the whole image ``(0, 0, W, H)``.

    >>> m = torch.zeros((2, 4, 6), dtype=torch.bool)
    >>> m[0, 1:3, 2:5] = True
    >>> masks_to_boxes(m)
    tensor([[2, 1, 5, 3],
            [0, 0, 6, 4]])
    """
    if masks.ndim != 3:
        raise ValueError(f"masks must have shape [N, H, W], got {list(masks.shape)}")
    _, H, W = masks.shape
    cols = masks.any(dim=1).to(torch.uint8)  # [N, W]
    rows = masks.any(dim=2).to(torch.uint8)  # [N, H]
    if masks.shape[0] == 0 or H == 0 or W == 0:
        return torch.zeros((masks.shape[0], 4), dtype=torch.int64, device=masks.device)
    x0 = cols.argmax(dim=1)
    x1 = W - cols.flip(dims=(1,)).argmax(dim=1)
    y0 = rows.argmax(dim=1)
    y1 = H - rows.flip(dims=(1,)).argmax(dim=1)
    return torch.stack([x0, y0, x1, y1], dim=1).to(torch.int64)


def expand_axis(start: int, end: int, target_length: int, limit: int) -> tuple[int, int]:
    """Grow the interval ``[start, end)`` to ``target_length`` around its centre.

    Each side grows by ``(target_length - length) // 2``; an odd remainder goes to ``end``.
    If the result sticks out on both sides of ``[0, limit)`` it is kept as is. Otherwise a
    result starting below 0 is shifted to start at 0, and then one ending past ``limit`` is
    shifted to end at ``limit``; so an interval longer than ``limit`` that stuck out on one side
    ends flush with ``limit`` and starts below 0 (DP2's order of the two shifts).

    Args:
        start, end: the interval (``end`` exclusive).
        target_length: new length, ``>= end - start``.
        limit: image size along this axis.

    Returns:
        ``(start, end)`` with ``end - start == target_length``.

    >>> expand_axis(10, 20, 15, 100)
    (8, 23)
    >>> expand_axis(2, 12, 20, 100)  # would start at -3: shifted right
    (0, 20)
    >>> expand_axis(10, 90, 110, 100)  # (-5, 105): out on both sides, kept
    (-5, 105)
    >>> expand_axis(2, 12, 120, 100)  # (-53, 67) -> (0, 120) -> flush with the far side
    (-20, 100)
    """
    start, end, target_length, limit = int(start), int(end), int(target_length), int(limit)
    grow = (target_length - (end - start)) // 2
    start, end = start - grow, end + grow
    if end - start != target_length:
        end += 1
    if start < 0 and end > limit:
        return start, end
    if start < 0:
        start, end = 0, end - start
    # Also after the shift above: a box longer than the image ends up flush with its far side.
    if end > limit:
        start, end = start - (end - limit), limit
    return start, end


def expand_axises_by_percentage(box_xyxy, imshape_hw: tuple[int, int], percentage: float = 0.1) -> Box:
    """Grow width and height by ``int(sqrt(h * w) * percentage)``, at most to the image size.

    Args:
        box_xyxy: integer ``(x0, y0, x1, y1)``.
        imshape_hw: (H, W) of the image.
        percentage: relative expansion (DP2 ``axis_minimum_expansion``, 0.1).

    Returns:
        The grown box as a tuple of ints (see :func:`expand_axis` for the placement).

    >>> expand_axises_by_percentage((40, 30, 60, 80), (200, 100))  # e = int(sqrt(1000) * 0.1) = 3
    (39, 29, 62, 82)
    """
    x0, y0, x1, y1 = _box4(box_xyxy)
    h, w = y1 - y0, x1 - x0
    # DP2 does this on int64 0-dim tensors: sqrt and the product run in float32.
    expansion = int(torch.tensor(h * w, dtype=torch.int64) ** 0.5 * percentage)
    H, W = int(imshape_hw[0]), int(imshape_hw[1])
    x0, x1 = expand_axis(x0, x1, min(w + expansion, W), W)
    y0, y1 = expand_axis(y0, y1, min(h + expansion, H), H)
    return x0, y0, x1, y1


def expand_bbox_to_ratio(box_xyxy, imshape_hw: tuple[int, int], target_aspect_ratio: float = 288 / 160) -> Box:
    """Grow the box to the height / width ratio ``target_aspect_ratio`` (may leave the image).

    If ``h / w`` is below the ratio the height becomes ``int(w * ratio)``, otherwise the width
    becomes ``int(h / ratio)``.

    Args:
        box_xyxy: integer ``(x0, y0, x1, y1)``.
        imshape_hw: (H, W) of the image.
        target_aspect_ratio: height / width of the generator input (288 / 160 = 1.8).

    Returns:
        The grown box as a tuple of ints.

    >>> expand_bbox_to_ratio((10, 10, 30, 20), (100, 100), 1.8)  # height 10 -> int(20 * 1.8) = 36
    (10, 0, 30, 36)
    """
    x0, y0, x1, y1 = _box4(box_xyxy)
    h, w = y1 - y0, x1 - x0
    ratio = h / w
    if ratio == target_aspect_ratio:
        return x0, y0, x1, y1
    if ratio < target_aspect_ratio:
        y0, y1 = expand_axis(y0, y1, int(w * target_aspect_ratio), imshape_hw[0])
    else:
        x0, x1 = expand_axis(x0, x1, int(h / target_aspect_ratio), imshape_hw[1])
    return x0, y0, x1, y1


def expand_box(box_xyxy, imshape_hw: tuple[int, int], mask: torch.Tensor | int,
               percentage_background: float = 0.3) -> Box:
    """Grow the box until the person mask covers at most ``1 - percentage_background`` of it.

    With ``pm = mask_pixels / box_area``: if ``1 - pm > percentage_background`` the box is
    returned unchanged, else both sides are scaled by
    ``p = sqrt(mask_pixels / (1 - percentage_background) / box_area)`` (rounded up) via
    :func:`expand_axis`.

    Args:
        box_xyxy: integer ``(x0, y0, x1, y1)``.
        imshape_hw: (H, W) of the image.
        mask: bool [H, W] person mask, or its pixel count. DP2 counts *all* mask pixels, also
            those outside the box.
        percentage_background: wanted share of background in the box (0.3).

    Returns:
        The (possibly) grown box as a tuple of ints.

    >>> expand_box((0, 0, 10, 18), (100, 100), 150)  # 150 / 180 > 0.7: p = 1.091, sides ceil'ed
    (0, 0, 11, 20)
    >>> expand_box((0, 0, 10, 18), (100, 100), 100)  # enough background: unchanged
    (0, 0, 10, 18)
    """
    x0, y0, x1, y1 = _box4(box_xyxy)
    h, w = y1 - y0, x1 - x0
    n_mask = int(mask.sum()) if isinstance(mask, torch.Tensor) else int(mask)
    # DP2 runs this on int64 0-dim tensors: true division and the square root are float32.
    area = torch.tensor(h * w, dtype=torch.int64)
    n = torch.tensor(n_mask, dtype=torch.int64)
    pm = n / area
    if bool(1 - pm > percentage_background):
        return x0, y0, x1, y1
    p = ((n / (1 - percentage_background)) / area) ** 0.5
    new_w = int(torch.ceil(w * p))
    new_h = int(torch.ceil(h * p))
    x0, x1 = expand_axis(x0, x1, new_w, imshape_hw[1])
    y0, y1 = expand_axis(y0, y1, new_h, imshape_hw[0])
    return x0, y0, x1, y1


def include_box(box_xyxy, imshape_hw: tuple[int, int], minimum_area: int = 1024,
                aspect_ratio_range: tuple[float, float] = (0, 99999), min_bbox_ratio_inside: float = 0.0) -> bool:
    """DP2's filter on expanded person boxes (with DP2's settings only the area test matters).

    A box is dropped when its area is below ``minimum_area``, its aspect ``h / w`` is
    ``<= aspect_ratio_range[0]`` or ``>= aspect_ratio_range[1]``, or the share of its area inside
    the image is below ``min_bbox_ratio_inside``.

    Args:
        box_xyxy: integer ``(x0, y0, x1, y1)``; may leave the image.
        imshape_hw: (H, W) of the image.
        minimum_area: smallest kept area in pixels (32 * 32).
        aspect_ratio_range: open interval of allowed ``h / w``.
        min_bbox_ratio_inside: smallest kept share of the box inside the image.

    Returns:
        True to keep the box.

    >>> include_box((0, 0, 32, 32), (100, 100)), include_box((0, 0, 31, 33), (100, 100))
    (True, False)
    """
    x0, y0, x1, y1 = _box4(box_xyxy)
    h, w = y1 - y0, x1 - x0
    area = h * w
    if area < minimum_area:
        return False
    ratio = h / w
    if ratio <= aspect_ratio_range[0] or ratio >= aspect_ratio_range[1]:
        return False
    H, W = int(imshape_hw[0]), int(imshape_hw[1])
    inside = max(min(x1, W) - max(x0, 0), 0) * max(min(y1, H) - max(y0, 0), 0)
    return inside / area >= min_bbox_ratio_inside


def expand_person_box(box_xyxy, imshape_hw: tuple[int, int], mask: torch.Tensor | int,
                      target_hw: tuple[int, int] = (288, 160), axis_minimum_expansion: float = 0.1,
                      percentage_background: float = 0.3) -> Box:
    """DP2 ``get_expanded_bbox``: axis expansion, aspect ratio, background share (one box).

    Args:
        box_xyxy: initial integer box (tight mask box, or its union with the CSE box).
        imshape_hw: (H, W) of the image.
        mask: bool [H, W] person mask (or its pixel count).
        target_hw: generator input size; its ``H / W`` is the target aspect ratio.
        axis_minimum_expansion: see :func:`expand_axises_by_percentage`.
        percentage_background: see :func:`expand_box`.

    Returns:
        The expanded box as a tuple of ints.

    >>> expand_person_box((40, 30, 60, 80), (200, 100), 900)
    (36, 29, 65, 82)
    """
    box = expand_axises_by_percentage(box_xyxy, imshape_hw, axis_minimum_expansion)
    box = expand_bbox_to_ratio(box, imshape_hw, target_hw[0] / target_hw[1])
    return expand_box(box, imshape_hw, mask, percentage_background)


def expand_person_boxes(segmentation: torch.Tensor, extra_boxes: torch.Tensor | None = None,
                        target_hw: tuple[int, int] = (288, 160), axis_minimum_expansion: float = 0.1,
                        percentage_background: float = 0.3, minimum_area: int = 1024,
                        aspect_ratio_range: tuple[float, float] = (0, 99999),
                        min_bbox_ratio_inside: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Expanded crop box of every person and whether DP2 keeps it (steps 1-5 of its body chain).

    Args:
        segmentation: bool [N, H, W] person masks in image pixels.
        extra_boxes: optional int64 [N, 4] boxes merged into the tight mask boxes (min of the
            starts, max of the ends) before expansion: the CSE boxes for CSE persons.
        target_hw: generator input size (its aspect ratio is used).
        axis_minimum_expansion, percentage_background: see :func:`expand_person_box`.
        minimum_area, aspect_ratio_range, min_bbox_ratio_inside: see :func:`include_box`.

    Returns:
        ``(boxes, keep)``: int64 [N, 4] expanded boxes (may leave the image) for every input
        instance, and bool [N], True where :func:`include_box` keeps it.

    Raises:
        ValueError: on a wrong ``segmentation`` or ``extra_boxes`` shape.

    >>> seg = torch.zeros((2, 120, 100), dtype=torch.bool)
    >>> seg[0, 20:90, 30:60] = True
    >>> seg[1, 5:10, 5:8] = True
    >>> boxes, keep = expand_person_boxes(seg)
    >>> boxes.tolist(), keep.tolist()
    ([[25, 18, 66, 92], [5, 5, 9, 11]], [True, False])
    """
    if segmentation.ndim != 3:
        raise ValueError(f"segmentation must have shape [N, H, W], got {list(segmentation.shape)}")
    n, H, W = segmentation.shape
    boxes = masks_to_boxes(segmentation).cpu()
    if extra_boxes is not None:
        if tuple(extra_boxes.shape) != (n, 4):
            raise ValueError(f"extra_boxes must have shape [{n}, 4], got {list(extra_boxes.shape)}")
        extra = extra_boxes.to(torch.int64).cpu()
        boxes = torch.cat([torch.minimum(boxes[:, :2], extra[:, :2]), torch.maximum(boxes[:, 2:], extra[:, 2:])], dim=1)
    counts = segmentation.sum(dim=(1, 2)).cpu().tolist()
    out = torch.zeros((n, 4), dtype=torch.int64)
    keep = torch.zeros(n, dtype=torch.bool)
    for i in range(n):
        box = expand_person_box(boxes[i], (H, W), counts[i], target_hw, axis_minimum_expansion, percentage_background)
        out[i] = torch.tensor(box)
        keep[i] = include_box(box, (H, W), minimum_area, aspect_ratio_range, min_bbox_ratio_inside)
    return out.to(segmentation.device), keep.to(segmentation.device)
