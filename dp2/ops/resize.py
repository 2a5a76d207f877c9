"""Crop a box out of an image with zero padding and resize it, with DeepPrivacy2's rules.

DP2 (``cut_pad_resize``) picks the interpolation from the size of the box *clipped to the
image*, not from the padded crop that is actually resized:

========================  =============================================  ==================
input                     condition (clipped ``h_c x w_c`` vs target)    resize
========================  =============================================  ==================
any dtype                 ``(h_c, w_c) == target``                        none (see quirk)
bool                      always                                          nearest, ``> 0.5``
``fdf_resize=True``       ``h_c * w_c < H_t * W_t``                       bicubic + antialias
``fdf_resize=True``       otherwise                                       ``cv2.INTER_AREA``
``fdf_resize=False``      ``h_c < H_t`` and ``w_c < W_t``                 nearest
``fdf_resize=False``      otherwise                                       bicubic + antialias
========================  =============================================  ==================

Torch resizes run in float32 (``F.interpolate``, ``align_corners=False``); uint8 results are
``round`` (half to even) + ``clamp(0, 255)``. This matches torchvision's
``resize(..., antialias=True)`` on float tensors, which DP2 calls.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["crop_pad", "cut_pad_resize"]


def _check_image(x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 3:
        raise ValueError(f"x must be a [C, H, W] tensor, got {getattr(x, 'shape', type(x).__name__)}")


def _box_ints(box_xyxy) -> tuple[int, int, int, int]:
    values = box_xyxy.tolist() if isinstance(box_xyxy, torch.Tensor) else list(box_xyxy)
    if len(values) != 4:
        raise ValueError(f"box must be (x0, y0, x1, y1), got {values}")
    x0, y0, x1, y1 = (int(v) for v in values)
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"box must have positive width and height, got {values}")
    return x0, y0, x1, y1


def crop_pad(x: torch.Tensor, box_xyxy) -> torch.Tensor:
    """Cut ``box_xyxy`` out of ``x``; the parts outside the image are zeros.

    Args:
        x: [C, H, W] tensor of any dtype.
        box_xyxy: integer ``(x0, y0, x1, y1)`` (tuple or int tensor [4]); may extend past the image.

    Returns:
        A new [C, y1 - y0, x1 - x0] tensor with ``x``'s dtype and device.

    Raises:
        ValueError: if ``x`` is not 3-D or the box is empty.

    Convention:
        Half-open box: output pixel ``(i, j)`` is input pixel ``(y0 + i, x0 + j)``.

    >>> crop_pad(torch.arange(1, 7).reshape(1, 2, 3), (-1, 1, 2, 3))
    tensor([[[0, 4, 5],
             [0, 0, 0]]])
    """
    _check_image(x)
    x0, y0, x1, y1 = _box_ints(box_xyxy)
    _, H, W = x.shape
    out = x.new_zeros((x.shape[0], y1 - y0, x1 - x0))
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, W), min(y1, H)
    if cx1 > cx0 and cy1 > cy0:
        out[:, cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0] = x[:, cy0:cy1, cx0:cx1]
    return out


def _interpolate(x: torch.Tensor, size_hw: tuple[int, int], mode: str) -> torch.Tensor:
    """Float32 resize of [C, h, w] as torchvision ``resize`` does it (antialias for bicubic)."""
    xf = x.to(torch.float32)[None]  # [1, C, h, w]
    if mode == "nearest":
        return F.interpolate(xf, size=size_hw, mode="nearest")[0]
    return F.interpolate(xf, size=size_hw, mode="bicubic", align_corners=False, antialias=True)[0]


def _to_dtype(y: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    if dtype == torch.uint8:
        return y.round().clamp(0, 255).to(torch.uint8)
    return y.to(dtype)


def _inter_area(crop: torch.Tensor, size_hw: tuple[int, int]) -> torch.Tensor:
    import cv2  # only this branch needs OpenCV; DP2 built FDF with it
    import numpy as np

    arr = np.ascontiguousarray(crop.permute(1, 2, 0).cpu().numpy())  # [h, w, C]
    out = cv2.resize(arr, (size_hw[1], size_hw[0]), interpolation=cv2.INTER_AREA)
    out = out.reshape(size_hw[0], size_hw[1], -1)  # cv2 drops a single channel axis
    return torch.from_numpy(out).permute(2, 0, 1).contiguous().to(crop.device)


def cut_pad_resize(x: torch.Tensor, box_xyxy, target_hw: tuple[int, int], fdf_resize: bool = False,
                   dp2_quirk: bool = True) -> torch.Tensor:
    """Crop ``box_xyxy`` with zero padding and resize it to ``target_hw`` (DP2 ``cut_pad_resize``).

    The interpolation is chosen from the box clipped to the image (see the module table):
    bool masks use nearest and ``> 0.5``; faces (``fdf_resize=True``) use bicubic + antialias when
    the clipped area is smaller than the target area and ``cv2.INTER_AREA`` otherwise (even if
    one side is upscaled); other inputs use nearest when the clipped box is smaller than the
    target in both dimensions and bicubic + antialias otherwise.

    Args:
        x: [C, H, W] uint8 image, bool mask or float32 field.
        box_xyxy: integer ``(x0, y0, x1, y1)``; may extend past the image (zero padding).
        target_hw: (H_t, W_t) output size.
        fdf_resize: use the face rule (bicubic up / INTER_AREA down) instead of the body rule.
        dp2_quirk: reproduce DP2's shortcut bug: when the *clipped* box already has the target
            size the padded crop is returned without resizing, so a partly-outside box comes back
            at its padded size ``[C, y1 - y0, x1 - x0]``, not at ``target_hw``. With False the
            output always has the target size (the interpolation choice is unchanged).

    Returns:
        [C, H_t, W_t] tensor with ``x``'s dtype (except for the quirk above).

    Raises:
        ValueError: if ``x`` is not [C, H, W] or the box is empty.

    Convention:
        Half-open integer box in pixels of ``x``. Resampling uses pixel centres
        (``align_corners=False``), as torchvision and OpenCV do.

    >>> img = torch.arange(16, dtype=torch.uint8).reshape(1, 4, 4)
    >>> cut_pad_resize(img, (2, 2, 4, 4), (4, 4))  # 2x2 < 4x4 in both dims: nearest
    tensor([[[10, 10, 11, 11],
             [10, 10, 11, 11],
             [14, 14, 15, 15],
             [14, 14, 15, 15]]], dtype=torch.uint8)
    >>> cut_pad_resize(img, (2, 2, 6, 6), (2, 2)).shape  # quirk: clipped box is 2x2
    torch.Size([1, 4, 4])
    >>> cut_pad_resize(img, (2, 2, 6, 6), (2, 2), dp2_quirk=False)
    tensor([[[11,  1],
             [ 1,  0]]], dtype=torch.uint8)
    """
    _check_image(x)
    x0, y0, x1, y1 = _box_ints(box_xyxy)
    th, tw = int(target_hw[0]), int(target_hw[1])
    _, H, W = x.shape
    h_c = max(min(y1, H) - max(y0, 0), 0)
    w_c = max(min(x1, W) - max(x0, 0), 0)
    crop = crop_pad(x, (x0, y0, x1, y1))
    if (h_c, w_c) == (th, tw) and (dp2_quirk or crop.shape[1:] == (th, tw)):
        return crop
    if x.dtype == torch.bool:
        return _interpolate(crop, (th, tw), "nearest") > 0.5
    if fdf_resize:
        if h_c * w_c < th * tw:
            return _to_dtype(_interpolate(crop, (th, tw), "bicubic"), x.dtype)
        return _inter_area(crop, (th, tw))
    mode = "nearest" if (h_c < th and w_c < tw) else "bicubic"
    return _to_dtype(_interpolate(crop, (th, tw), mode), x.dtype)
