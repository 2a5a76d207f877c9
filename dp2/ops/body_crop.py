"""Body crops as DeepPrivacy2 feeds them to its body generators (``PersonDetection.get_crop``).

The image is cut out of each expanded box with zero padding and resized with DP2's body rule
(:func:`dp2.ops.resize.cut_pad_resize` with ``fdf_resize=False``): nearest when the box
clipped to the image is smaller than the target in both dimensions, bicubic + antialias
otherwise. Masks come from :func:`dp2.ops.body_masks.preprocess_persons` or
:func:`dp2.ops.cse.cse_person_preprocess`; CSE persons also get
``embedding = embed_map[vertices] * E_mask`` (DP2 ``normalize_embedding=False``).

Convention: boxes are int64 ``(x0, y0, x1, y1)`` half-open image pixels; crops are
``target_hw = (288, 160)``; ``keep_mask`` True = keep, False = synthesise.
"""
from __future__ import annotations

import torch

from dp2.ops.cse import vertices_to_embedding
from dp2.ops.resize import cut_pad_resize
from dp2.structures.crops import CropBatch

__all__ = ["crop_persons"]


def _check_mask(name: str, mask: torch.Tensor | None, expected: tuple[int, ...]) -> None:
    if mask is not None and tuple(mask.shape) != expected:
        raise ValueError(f"{name} must have shape {list(expected)}, got {list(mask.shape)}")


def crop_persons(image: torch.Tensor, boxes_xyxy: torch.Tensor, keep_mask: torch.Tensor,
                 maskrcnn_mask: torch.Tensor | None = None, vertices: torch.Tensor | None = None,
                 embed_map: torch.Tensor | None = None, embedding_mask: torch.Tensor | None = None,
                 target_hw: tuple[int, int] = (288, 160)) -> CropBatch:
    """Crop every person the way DP2's body anonymizers do.

    Persons keep the input order (pass the already area-sorted outputs of the pre-processing
    to reproduce DP2's order).

    Args:
        image: uint8 [3, H, W] RGB.
        boxes_xyxy: int64 [N, 4] expanded boxes (may leave the image).
        keep_mask: bool [N, 1, h, w], True = keep.
        maskrcnn_mask: optional bool [N, 1, h, w], True = background.
        vertices: optional int64 [N, 1, h, w] CSE vertex indices (needs ``embed_map`` and
            ``embedding_mask``).
        embed_map: optional float32 [V, C] vertex embeddings.
        embedding_mask: optional bool [N, 1, h, w], True where the CSE embedding is valid.
        target_hw: crop size (h, w).

    Returns:
        CropBatch with ``images`` uint8 [N, 3, h, w], ``keep_mask``, ``boxes_xyxy``,
        ``maskrcnn_mask`` and, with CSE, ``embedding`` float32 [N, C, h, w] and
        ``embedding_mask`` float32 [N, 1, h, w].

    Raises:
        ValueError: on wrong shapes or an incomplete set of CSE inputs.

    Note:
        Crops are made with ``dp2_quirk=False``: where the box is partly outside the image and
        its clipped size equals the target, DP2 would return a larger padded crop that its
        generator cannot take; here it is resized to the target.

    >>> img = torch.full((3, 100, 80), 7, dtype=torch.uint8)
    >>> keep = torch.ones((1, 1, 36, 20), dtype=torch.bool)
    >>> crops = crop_persons(img, torch.tensor([[-10, 0, 10, 36]]), keep, target_hw=(36, 20))
    >>> crops.images[0, 0, 0].tolist()  # left half is zero padding
    [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7]
    """
    if image.dtype != torch.uint8 or image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"image must be uint8 [3, H, W], got {image.dtype} {list(image.shape)}")
    if boxes_xyxy.ndim != 2 or boxes_xyxy.shape[1] != 4:
        raise ValueError(f"boxes_xyxy must have shape [N, 4], got {list(boxes_xyxy.shape)}")
    n = boxes_xyxy.shape[0]
    th, tw = int(target_hw[0]), int(target_hw[1])
    mask_shape = (n, 1, th, tw)
    for name, mask in (("keep_mask", keep_mask), ("maskrcnn_mask", maskrcnn_mask), ("vertices", vertices),
                       ("embedding_mask", embedding_mask)):
        _check_mask(name, mask, mask_shape)
    cse_inputs = (vertices, embed_map, embedding_mask)
    if any(v is not None for v in cse_inputs) and any(v is None for v in cse_inputs):
        raise ValueError("vertices, embed_map and embedding_mask must be given together")

    boxes = boxes_xyxy.to(torch.int64)
    images = torch.zeros((n, 3, th, tw), dtype=torch.uint8, device=image.device)
    for i in range(n):
        images[i] = cut_pad_resize(image, boxes[i], (th, tw), fdf_resize=False, dp2_quirk=False)
    embedding = e_mask = None
    if vertices is not None:
        embedding = vertices_to_embedding(vertices[:, 0], embed_map.to(image.device), embedding_mask[:, 0])
        e_mask = embedding_mask.to(torch.float32)
    return CropBatch(images=images, keep_mask=keep_mask.to(torch.bool), boxes_xyxy=boxes, embedding=embedding,
                     embedding_mask=e_mask, maskrcnn_mask=None if maskrcnn_mask is None else maskrcnn_mask.bool())
