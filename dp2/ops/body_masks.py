"""Person masks at the generator's resolution, as DeepPrivacy2 builds them for body crops.

Per kept person (``PersonDetection.pre_process`` steps 6-7):

1. crop the image-space segmentation with the expanded box and resize it (nearest) to the
   target (:func:`dp2.ops.resize.cut_pad_resize`); ``maskrcnn_mask`` is its inverse
   (True = background);
2. dilate it with a disk of radius ``int(sqrt(288 * 160) * 0.02) = 4``
   (:func:`binary_dilation`);
3. clear the dilation that fell into the zero padding outside the image
   (:func:`remove_dilate_in_pad`, with DP2's height-ratio quirk);
4. ``keep_mask`` is the inverse of the result (True = keep, False = synthesise);
5. ``dilated_boxes`` maps the tight box of the dilated mask back to image pixels (used to drop
   faces inside bodies).

:func:`preprocess_persons` runs the box chain of :mod:`dp2.ops.body_boxes`, these steps and
the area sort, and returns DP2's outputs in DP2's order.

Convention: boxes are int64 ``(x0, y0, x1, y1)`` half-open image pixels; masks are bool
``[N, 1, h, w]`` at the target size ``(h, w)``.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

from dp2.ops.body_boxes import expand_person_boxes, masks_to_boxes
from dp2.ops.resize import cut_pad_resize

__all__ = ["disk", "dilation_radius", "binary_dilation", "remove_dilate_in_pad", "dilated_boxes_from_masks",
           "person_crop_masks", "PersonPreprocess", "preprocess_persons"]


def disk(radius: int) -> torch.Tensor:
    """Disk structuring element with ``skimage.morphology.disk`` semantics.

    Args:
        radius: non-negative integer radius.

    Returns:
        uint8 [2r+1, 2r+1]; 1 where ``dy**2 + dx**2 <= r**2``.

    >>> disk(2)
    tensor([[0, 0, 1, 0, 0],
            [0, 1, 1, 1, 0],
            [1, 1, 1, 1, 1],
            [0, 1, 1, 1, 0],
            [0, 0, 1, 0, 0]], dtype=torch.uint8)
    """
    radius = int(radius)
    if radius < 0:
        raise ValueError(f"radius must be >= 0, got {radius}")
    d = torch.arange(-radius, radius + 1)
    return (d[:, None] ** 2 + d[None, :] ** 2 <= radius ** 2).to(torch.uint8)


def dilation_radius(target_hw: tuple[int, int] = (288, 160), dilation_percentage: float = 0.02) -> int:
    """DP2's dilation radius: ``int(sqrt(h * w) * dilation_percentage)``.

    >>> dilation_radius((288, 160))
    4
    """
    return int(math.sqrt(target_hw[0] * target_hw[1]) * dilation_percentage)


def binary_dilation(masks: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Binary dilation as DP2 computes it: ``conv2d(mask, kernel, padding=k // 2) > 0.5``.

    Args:
        masks: bool [N, 1, h, w].
        kernel: [k, k] 0/1 structuring element, ``k`` odd (e.g. :func:`disk`).

    Returns:
        bool [N, 1, h, w]; pixels outside the mask count as background.

    >>> m = torch.zeros((1, 1, 5, 5), dtype=torch.bool)
    >>> m[0, 0, 2, 2] = True
    >>> binary_dilation(m, disk(1))[0, 0].int()
    tensor([[0, 0, 0, 0, 0],
            [0, 0, 1, 0, 0],
            [0, 1, 1, 1, 0],
            [0, 0, 1, 0, 0],
            [0, 0, 0, 0, 0]], dtype=torch.int32)
    """
    if masks.ndim != 4 or masks.shape[1] != 1:
        raise ValueError(f"masks must have shape [N, 1, h, w], got {list(masks.shape)}")
    if kernel.ndim != 2 or kernel.shape[0] != kernel.shape[1] or kernel.shape[0] % 2 == 0:
        raise ValueError(f"kernel must be square [k, k] with k odd, got {list(kernel.shape)}")
    # Sums of 0/1 products are exact in float32, so this equals a max filter over the kernel.
    weight = kernel.to(torch.float32, copy=True).to(masks.device)[None, None]  # [1, 1, k, k]
    out = F.conv2d(masks.to(torch.float32), weight, padding=kernel.shape[0] // 2)
    return out > 0.5


def _pad_sizes(box_xyxy, imshape_hw: tuple[int, int], mask_hw: tuple[int, int]) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = (int(v) for v in (box_xyxy.tolist() if isinstance(box_xyxy, torch.Tensor) else box_xyxy))
    H, W = int(imshape_hw[0]), int(imshape_hw[1])
    pads = (max(-x0, 0), max(-y0, 0), max(x1 - W, 0), max(y1 - H, 0))  # left, top, right, bottom
    # DP2 quirk: all four pads, also the horizontal ones, use the *height* ratio.
    box_h = y1 - y0
    return tuple(int(math.floor(p / box_h * mask_hw[0])) for p in pads)  # type: ignore[return-value]


def remove_dilate_in_pad(mask: torch.Tensor, box_xyxy, imshape_hw: tuple[int, int]) -> torch.Tensor:
    """Clear mask pixels in the part of the crop that lies outside the image.

    The padded widths ``(left, top, right, bottom)`` of ``box_xyxy`` are converted to mask
    pixels with ``floor(pad / (y1 - y0) * h)`` -- DP2 uses the **height** ratio for the left
    and right pads too.

    Args:
        mask: bool [..., h, w] mask of one crop.
        box_xyxy: integer ``(x0, y0, x1, y1)`` the crop was cut from.
        imshape_hw: (H, W) of the image.

    Returns:
        A new bool tensor shaped like ``mask``.

    >>> m = torch.ones((1, 6, 4), dtype=torch.bool)
    >>> remove_dilate_in_pad(m, (-1, 0, 2, 3), (3, 10))[0].int()  # 1 px left pad -> 2 columns
    tensor([[0, 0, 1, 1],
            [0, 0, 1, 1],
            [0, 0, 1, 1],
            [0, 0, 1, 1],
            [0, 0, 1, 1],
            [0, 0, 1, 1]], dtype=torch.int32)
    """
    h, w = mask.shape[-2:]
    left, top, right, bottom = _pad_sizes(box_xyxy, imshape_hw, (h, w))
    out = mask.clone()
    out[..., :top, :] = False
    out[..., :, :left] = False
    if bottom > 0:
        out[..., h - bottom:, :] = False
    if right > 0:
        out[..., :, w - right:] = False
    return out


def dilated_boxes_from_masks(masks: torch.Tensor, boxes_xyxy: torch.Tensor) -> torch.Tensor:
    """Image-space box of each crop mask (DP2 ``dilated_boxes``).

    The tight box of mask ``i`` (:func:`dp2.ops.body_boxes.masks_to_boxes`, half-open, in
    crop pixels) is scaled by ``box size / mask size`` per axis with floor division and
    shifted by the box origin.

    Args:
        masks: bool [N, 1, h, w] (DP2 passes the dilated mask, True = person).
        boxes_xyxy: int64 [N, 4] boxes the crops were cut from.

    Returns:
        int64 [N, 4] image-pixel boxes (an empty mask maps to the whole crop box).

    >>> m = torch.zeros((1, 1, 8, 4), dtype=torch.bool)
    >>> m[0, 0, 2:6, 1:3] = True
    >>> dilated_boxes_from_masks(m, torch.tensor([[10, 20, 20, 40]]))  # crop is 2.5x the mask
    tensor([[12, 25, 17, 35]])
    """
    if masks.ndim != 4 or masks.shape[1] != 1:
        raise ValueError(f"masks must have shape [N, 1, h, w], got {list(masks.shape)}")
    if tuple(boxes_xyxy.shape) != (masks.shape[0], 4):
        raise ValueError(f"boxes_xyxy must have shape [{masks.shape[0]}, 4], got {list(boxes_xyxy.shape)}")
    h, w = masks.shape[-2:]
    tight = masks_to_boxes(masks[:, 0]).cpu()  # [N, 4] in crop pixels
    boxes = boxes_xyxy.to(torch.int64).cpu()
    box_w = (boxes[:, 2] - boxes[:, 0])[:, None]
    box_h = (boxes[:, 3] - boxes[:, 1])[:, None]
    out = torch.empty_like(tight)
    out[:, 0::2] = boxes[:, 0:1] + tight[:, 0::2] * box_w // w
    out[:, 1::2] = boxes[:, 1:2] + tight[:, 1::2] * box_h // h
    return out.to(masks.device)


def person_crop_masks(segmentation: torch.Tensor, boxes_xyxy: torch.Tensor, target_hw: tuple[int, int] = (288, 160),
                      dilation_percentage: float = 0.02) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Keep mask, Mask R-CNN mask and dilated box of every person crop (DP2 step 6).

    Args:
        segmentation: bool [N, H, W] person masks in image pixels (for CSE persons: the
            Mask R-CNN mask OR the CSE mask).
        boxes_xyxy: int64 [N, 4] expanded boxes (may leave the image).
        target_hw: crop size (h, w).
        dilation_percentage: dilation radius relative to ``sqrt(h * w)`` (see
            :func:`dilation_radius`).

    Returns:
        ``(keep_mask, maskrcnn_mask, dilated_boxes)``: bool [N, 1, h, w] True = keep (the
        dilated person, minus the dilation inside the padding, is False); bool [N, 1, h, w]
        True = background (the undilated resized mask, inverted); int64 [N, 4] image-space box
        of the dilated mask. All in input order.

    Raises:
        ValueError: on mismatched shapes.

    >>> seg = torch.zeros((1, 60, 40), dtype=torch.bool)
    >>> seg[0, 10:50, 10:30] = True
    >>> keep, bg, dboxes = person_crop_masks(seg, torch.tensor([[0, 0, 40, 60]]), (24, 16))
    >>> keep.shape, int((~keep).sum()), int((~bg).sum()), dboxes.tolist()
    (torch.Size([1, 1, 24, 16]), 128, 128, [[10, 10, 30, 50]])
    """
    if segmentation.ndim != 3:
        raise ValueError(f"segmentation must have shape [N, H, W], got {list(segmentation.shape)}")
    n, H, W = segmentation.shape
    if tuple(boxes_xyxy.shape) != (n, 4):
        raise ValueError(f"boxes_xyxy must have shape [{n}, 4], got {list(boxes_xyxy.shape)}")
    th, tw = int(target_hw[0]), int(target_hw[1])
    person = torch.zeros((n, 1, th, tw), dtype=torch.bool, device=segmentation.device)
    for i in range(n):
        # dp2_quirk=False: a partly-outside box whose clipped size equals the target would
        # otherwise come back at its padded size; DP2 would fail there.
        person[i] = cut_pad_resize(segmentation[i:i + 1], boxes_xyxy[i], (th, tw), dp2_quirk=False)
    maskrcnn_mask = ~person
    dilated = binary_dilation(person, disk(dilation_radius((th, tw), dilation_percentage)))
    for i in range(n):
        dilated[i] = remove_dilate_in_pad(dilated[i], boxes_xyxy[i], (H, W))
    dilated_boxes = dilated_boxes_from_masks(dilated, boxes_xyxy)
    return ~dilated, maskrcnn_mask, dilated_boxes


class PersonPreprocess(NamedTuple):
    """DP2's pre-processed persons (``PersonDetection`` after ``pre_process``).

    Attributes:
        boxes: int64 [n, 4] expanded boxes of the kept persons, by segmentation area ascending.
        keep_mask: bool [n, 1, h, w], True = keep, same order.
        maskrcnn_mask: bool [n, 1, h, w], True = background, same order.
        dilated_boxes: int64 [n, 4] image-space boxes of the dilated masks, in **input order**
            of the kept persons (DP2 does not re-sort them; only used against faces).
        segmentation: bool [n, H, W] kept masks, sorted like ``boxes``.
        indices: int64 [n] input index of each sorted person (``segmentation ==
            input[indices]``), to gather per-instance data such as scores or CSE outputs.
    """

    boxes: torch.Tensor
    keep_mask: torch.Tensor
    maskrcnn_mask: torch.Tensor
    dilated_boxes: torch.Tensor
    segmentation: torch.Tensor
    indices: torch.Tensor


def preprocess_persons(segmentation: torch.Tensor, imshape_hw: tuple[int, int] | None = None,
                       target_hw: tuple[int, int] = (288, 160), extra_boxes: torch.Tensor | None = None,
                       axis_minimum_expansion: float = 0.1, percentage_background: float = 0.3,
                       minimum_area: int = 1024, dilation_percentage: float = 0.02) -> PersonPreprocess:
    """DP2 ``PersonDetection.pre_process``: expand, filter, build masks, sort by area.

    Args:
        segmentation: bool [N, H, W] person masks in image pixels.
        imshape_hw: (H, W) of the image; defaults to the masks' size (they must agree).
        target_hw: crop size (288, 160).
        extra_boxes: optional int64 [N, 4] boxes merged into the tight mask boxes (CSE boxes).
        axis_minimum_expansion, percentage_background, minimum_area: box chain settings
            (:func:`dp2.ops.body_boxes.expand_person_boxes`).
        dilation_percentage: mask dilation (:func:`person_crop_masks`).

    Returns:
        :class:`PersonPreprocess`. The sort is ``torch.argsort`` of the segmentation pixel
        count (ascending, so the largest person is pasted last); like DP2's, its order for equal
        areas is not specified.

    Raises:
        ValueError: on a wrong shape or an ``imshape_hw`` that differs from the masks.

    >>> seg = torch.zeros((3, 120, 100), dtype=torch.bool)
    >>> seg[0, 20:90, 30:60] = True
    >>> seg[1, 5:10, 5:8] = True  # too small: dropped
    >>> seg[2, 30:70, 60:80] = True
    >>> out = preprocess_persons(seg)
    >>> out.indices.tolist(), out.boxes.tolist()
    ([2, 0], [[58, 27, 84, 73], [25, 18, 66, 92]])
    """
    if segmentation.ndim != 3:
        raise ValueError(f"segmentation must have shape [N, H, W], got {list(segmentation.shape)}")
    if imshape_hw is not None and tuple(int(v) for v in imshape_hw) != tuple(segmentation.shape[1:]):
        raise ValueError(f"imshape_hw {tuple(imshape_hw)} differs from the masks' size {tuple(segmentation.shape[1:])}")
    boxes, keep = expand_person_boxes(segmentation, extra_boxes, target_hw, axis_minimum_expansion,
                                      percentage_background, minimum_area)
    kept = keep.nonzero()[:, 0]
    boxes, seg = boxes[kept], segmentation[kept]
    keep_mask, maskrcnn_mask, dilated_boxes = person_crop_masks(seg, boxes, target_hw, dilation_percentage)
    order = torch.argsort(seg.sum(dim=(1, 2)))
    return PersonPreprocess(boxes[order], keep_mask[order], maskrcnn_mask[order], dilated_boxes, seg[order],
                            kept[order])
