"""Continuous surface embeddings (CSE) for body crops, as DeepPrivacy2 prepares them.

- :func:`combine_cse_maskrcnn` pairs Mask R-CNN persons with CSE detections by mask IoU.
- :func:`transform_embedding` maps a CSE embedding (detected in the CSE box on a small grid)
  into the person's expanded crop at the generator's resolution.
- :func:`closest_vertices` assigns each embedded pixel its nearest mesh vertex.
- :func:`cse_person_preprocess` runs the whole CSE person chain (DP2
  ``CSEPersonDetection.pre_process``).

The generator then sees ``embedding = embed_map[vertices] * E_mask`` (see
:func:`vertices_to_embedding`).

Convention: boxes are int64 ``(x0, y0, x1, y1)`` half-open image pixels; masks are bool;
embeddings are float32 ``[C, h, w]``; vertex maps are int64 ``[h, w]`` (0 where there is no
embedding).
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from dp2.ops.body_masks import person_crop_masks
from dp2.ops.body_boxes import expand_person_boxes

__all__ = ["pairwise_mask_iou", "greedy_matches", "combine_cse_maskrcnn", "transform_embedding", "closest_vertices",
           "vertices_to_embedding", "CSEPersonPreprocess", "cse_person_preprocess"]


def pairwise_mask_iou(masks1: torch.Tensor, masks2: torch.Tensor) -> torch.Tensor:
    """IoU of every pair of masks, in float32 as DP2 computes it.

    Args:
        masks1: bool [n, H, W].
        masks2: bool [m, H, W].

    Returns:
        float32 [n, m] ``intersection / union`` (pixel counts). Where both masks are empty
        the IoU is 0 (DP2 would give NaN, which never passes a threshold either).

    >>> a = torch.zeros((1, 2, 4), dtype=torch.bool); a[0, :, :2] = True
    >>> b = torch.zeros((2, 2, 4), dtype=torch.bool); b[0, :, 1:3] = True
    >>> pairwise_mask_iou(a, b)
    tensor([[0.3333, 0.0000]])
    """
    if masks1.ndim != 3 or masks2.ndim != 3 or masks1.shape[1:] != masks2.shape[1:]:
        raise ValueError(f"masks must be [n, H, W] and [m, H, W] of one size, got {list(masks1.shape)} "
                         f"and {list(masks2.shape)}")
    b = masks2.flatten(1)  # [m, HW]
    b_count = b.sum(1)
    iou = torch.zeros((masks1.shape[0], masks2.shape[0]), dtype=torch.float32, device=masks1.device)
    union = torch.zeros_like(iou)
    for i in range(masks1.shape[0]):  # one row at a time: [m, HW] temporaries, not [n, m, HW]
        a = masks1[i].flatten()
        inter = (a[None] & b).sum(1)
        # DP2 divides float32 pixel counts; they are exact below 2**24 pixels.
        union[i] = (a.sum() + b_count - inter).to(torch.float32)
        iou[i] = inter.to(torch.float32) / union[i].clamp(min=1)
    return torch.where(union > 0, iou, torch.zeros_like(iou))


def greedy_matches(scores: torch.Tensor, threshold: float) -> torch.Tensor:
    """DP2's one-to-one matching: visit pairs in row-major order, accept ``>= threshold``.

    A pair ``(i, j)`` is accepted when ``scores[i, j] >= threshold`` and neither row ``i`` nor
    column ``j`` is taken yet. Pairs are **not** sorted by score first.

    Args:
        scores: float [n, m].
        threshold: minimum score.

    Returns:
        int64 [p, 2] ``(row, column)`` pairs in acceptance order.

    >>> greedy_matches(torch.tensor([[0.5, 0.9], [0.8, 0.1]]), 0.4)  # not the best pairing
    tensor([[0, 0]])
    """
    if scores.ndim != 2:
        raise ValueError(f"scores must have shape [n, m], got {list(scores.shape)}")
    candidates = (scores >= threshold).cpu()
    taken_cols: set[int] = set()
    pairs = []
    for i in range(candidates.shape[0]):
        for j in candidates[i].nonzero()[:, 0].tolist():
            if j not in taken_cols:
                pairs.append((i, j))
                taken_cols.add(j)
                break  # row i is taken
    return torch.tensor(pairs, dtype=torch.int64).reshape(-1, 2)


def combine_cse_maskrcnn(maskrcnn_masks: torch.Tensor, cse_masks: torch.Tensor,
                         threshold: float = 0.4) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pair Mask R-CNN persons with CSE detections and merge their masks (DP2).

    Args:
        maskrcnn_masks: bool [n, H, W] Mask R-CNN person masks in score order.
        cse_masks: bool [m, H, W] CSE masks pasted into image pixels.
        threshold: minimum mask IoU of a pair (0.4).

    Returns:
        ``(iou, matches, combined)``: float32 [n, m] mask IoU; int64 [p, 2] ``(maskrcnn index,
        cse index)`` in acceptance order (:func:`greedy_matches`); bool [p, H, W] the union of
        each matched pair's masks.

    >>> a = torch.zeros((1, 4, 4), dtype=torch.bool); a[0, :, :2] = True
    >>> b = torch.zeros((2, 4, 4), dtype=torch.bool); b[0, :, 3:] = True; b[1, :, :3] = True
    >>> iou, matches, combined = combine_cse_maskrcnn(a, b)
    >>> matches.tolist(), int(combined.sum())
    ([[0, 1]], 12)
    """
    iou = pairwise_mask_iou(maskrcnn_masks, cse_masks)
    matches = greedy_matches(iou, threshold).to(maskrcnn_masks.device)
    combined = maskrcnn_masks[matches[:, 0]] | cse_masks[matches[:, 1]]
    return iou, matches, combined


def _inner_rect(exp_box: list[int], e_box: list[int], target_hw: tuple[int, int]) -> tuple[int, int, int, int]:
    ex0, ey0, ex1, ey1 = exp_box
    th, tw = target_hw
    # Relative position scaled to the target in float64, rounded half to even like DP2's
    # np.round (Python's round() of a float is exactly that).
    x0, x1 = (round((e_box[k] - ex0) / (ex1 - ex0) * tw) for k in (0, 2))
    y0, y1 = (round((e_box[k] - ey0) / (ey1 - ey0) * th) for k in (1, 3))
    return x0, y0, x1, y1


def transform_embedding(E: torch.Tensor, S: torch.Tensor, exp_box_xyxy, E_box_xyxy,
                        target_hw: tuple[int, int] = (288, 160)) -> tuple[torch.Tensor, torch.Tensor]:
    """Move a CSE embedding from its detection box into the expanded crop (DP2).

    The CSE box is mapped into the expanded box at target resolution:
    ``x0 = round((Ex0 - bx0) / (bx1 - bx0) * w)`` (``np.round``, half to even) and likewise for
    the other sides. ``E`` is resized into that rectangle (bilinear + antialias, float32) and is
    0 elsewhere; ``S`` is resized the same way and thresholded ``> 0``.

    Args:
        E: float32 [C, he, we] embedding on the CSE grid (112 x 112 for DensePose CSE).
        S: [he, we] 0/1 segmentation of the CSE grid (DP2 passes the int64 argmax map).
        exp_box_xyxy: integer expanded crop box in image pixels.
        E_box_xyxy: integer CSE box in image pixels (normally inside ``exp_box_xyxy``).
        target_hw: crop size (h, w).

    Returns:
        ``(new_E, E_mask)``: float32 [C, h, w] and bool [h, w].

    Raises:
        ValueError: on wrong shapes.

    Convention:
        Resizes sample at pixel centres (``align_corners=False``), as torchvision does.

    >>> E = torch.ones((2, 4, 4)); S = torch.ones((4, 4), dtype=torch.int64)
    >>> new_E, E_mask = transform_embedding(E, S, (0, 0, 20, 40), (5, 10, 15, 30), (8, 4))
    >>> E_mask.int()
    tensor([[0, 0, 0, 0],
            [0, 0, 0, 0],
            [0, 1, 1, 0],
            [0, 1, 1, 0],
            [0, 1, 1, 0],
            [0, 1, 1, 0],
            [0, 0, 0, 0],
            [0, 0, 0, 0]], dtype=torch.int32)
    """
    if E.ndim != 3 or S.ndim != 2 or tuple(S.shape) != tuple(E.shape[1:]):
        raise ValueError(f"E must be [C, h, w] and S [h, w] of the same size, got {list(E.shape)} and {list(S.shape)}")
    exp_box = [int(v) for v in (exp_box_xyxy.tolist() if isinstance(exp_box_xyxy, torch.Tensor) else exp_box_xyxy)]
    e_box = [int(v) for v in (E_box_xyxy.tolist() if isinstance(E_box_xyxy, torch.Tensor) else E_box_xyxy)]
    th, tw = int(target_hw[0]), int(target_hw[1])
    x0, y0, x1, y1 = _inner_rect(exp_box, e_box, (th, tw))
    new_E = torch.zeros((E.shape[0], th, tw), dtype=torch.float32, device=E.device)
    new_S = torch.zeros((th, tw), dtype=torch.bool, device=E.device)
    # Clip to the crop so a CSE box outside the expanded box cannot write out of bounds.
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, tw), min(y1, th)
    if x1 <= x0 or y1 <= y0 or cx1 <= cx0 or cy1 <= cy0:
        return new_E, new_S
    size = (y1 - y0, x1 - x0)
    E_r = F.interpolate(E.to(torch.float32)[None], size=size, mode="bilinear", align_corners=False,
                        antialias=True)[0]
    S_r = F.interpolate(S.to(torch.float32)[None, None], size=size, mode="bilinear", align_corners=False,
                        antialias=True)[0, 0]
    new_E[:, cy0:cy1, cx0:cx1] = E_r[:, cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0]
    new_S[cy0:cy1, cx0:cx1] = S_r[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0] > 0
    return new_E, new_S


def closest_vertices(E: torch.Tensor, E_mask: torch.Tensor, embed_map: torch.Tensor,
                     chunk: int = 10000) -> torch.Tensor:
    """Nearest mesh vertex of every embedded pixel (DensePose's float32 formula).

    Squared distances are computed as ``-2 e.v + (|e|^2 + |v|^2)`` in float32, in chunks of
    ``chunk`` pixels (pixels in row-major order), and the first minimum wins -- the same
    arithmetic as DensePose's ``get_closest_vertices_mask_from_ES``, so near-ties resolve the
    same way.

    Args:
        E: float32 [C, h, w] embedding.
        E_mask: bool [h, w], True where the embedding is valid.
        embed_map: float32 [V, C] vertex embeddings.
        chunk: pixels per distance-matrix chunk.

    Returns:
        int64 [h, w] vertex index per masked pixel, 0 elsewhere.

    >>> E = torch.tensor([[[0.9, 0.0]], [[0.1, 1.0]]])  # C=2, 1x2 image
    >>> closest_vertices(E, torch.tensor([[True, True]]), torch.tensor([[0.0, 1.0], [1.0, 0.0]]))
    tensor([[1, 0]])
    """
    if E.ndim != 3 or tuple(E_mask.shape) != tuple(E.shape[1:]):
        raise ValueError(f"E must be [C, h, w] and E_mask [h, w], got {list(E.shape)} and {list(E_mask.shape)}")
    if embed_map.ndim != 2 or embed_map.shape[1] != E.shape[0]:
        raise ValueError(f"embed_map must have shape [V, {E.shape[0]}], got {list(embed_map.shape)}")
    mask = E_mask.to(torch.bool)
    vertices = torch.zeros(mask.shape, dtype=torch.int64, device=E.device)
    pixels = E[:, mask].t()  # [P, C], a transposed view as in DensePose (same float32 kernels)
    if pixels.shape[0] == 0:
        return vertices
    v_sq = (embed_map * embed_map).sum(1, keepdim=True).t()  # [1, V]
    best = []
    for start in range(0, pixels.shape[0], chunk):
        e = pixels[start:start + chunk]
        dist = torch.mm(-2 * e, embed_map.t())  # [p, V]
        dist += (e * e).sum(1, keepdim=True) + v_sq
        best.append(torch.argmin(dist, dim=1))
    vertices[mask] = torch.cat(best)
    return vertices


def vertices_to_embedding(vertices: torch.Tensor, embed_map: torch.Tensor, E_mask: torch.Tensor) -> torch.Tensor:
    """The generator's CSE input: ``embed_map[vertices]`` channels-first, zero off ``E_mask``.

    Args:
        vertices: int64 [..., h, w] vertex indices.
        embed_map: float32 [V, C].
        E_mask: bool or float [..., h, w] (same shape as ``vertices``).

    Returns:
        float32 [..., C, h, w] (DP2 ``normalize_embedding=False``).

    >>> vertices_to_embedding(torch.tensor([[1, 0]]), torch.eye(2), torch.tensor([[True, False]]))
    tensor([[[0., 0.]],
    <BLANKLINE>
            [[1., 0.]]])
    """
    if tuple(E_mask.shape) != tuple(vertices.shape):
        raise ValueError(f"E_mask must have the shape of vertices {list(vertices.shape)}, got {list(E_mask.shape)}")
    emb = embed_map[vertices.long()]  # [..., h, w, C]
    emb = emb.movedim(-1, -3)  # [..., C, h, w]
    return emb * E_mask.to(emb.dtype).unsqueeze(-3)


class CSEPersonPreprocess(NamedTuple):
    """DP2's pre-processed CSE persons (``CSEPersonDetection`` after ``pre_process``).

    Attributes:
        boxes: int64 [n, 4] expanded boxes, by combined-segmentation area ascending.
        keep_mask: bool [n, 1, h, w], True = keep.
        maskrcnn_mask: bool [n, 1, h, w], True = background.
        E_mask: bool [n, 1, h, w], True where the embedding is valid.
        vertices: int64 [n, 1, h, w] nearest vertex per ``E_mask`` pixel, 0 elsewhere.
        dilated_boxes: int64 [n, 4], **input order** of the kept persons (not re-sorted).
        segmentation: bool [n, H, W] combined masks, sorted like ``boxes``.
        indices: int64 [n] index into the inputs (matched pairs) of each sorted person.
    """

    boxes: torch.Tensor
    keep_mask: torch.Tensor
    maskrcnn_mask: torch.Tensor
    E_mask: torch.Tensor
    vertices: torch.Tensor
    dilated_boxes: torch.Tensor
    segmentation: torch.Tensor
    indices: torch.Tensor


def cse_person_preprocess(segmentation: torch.Tensor, cse_boxes: torch.Tensor, cse_E: torch.Tensor,
                          cse_S: torch.Tensor, embed_map: torch.Tensor, target_hw: tuple[int, int] = (288, 160),
                          axis_minimum_expansion: float = 0.1, percentage_background: float = 0.3,
                          minimum_area: int = 1024, dilation_percentage: float = 0.02,
                          chunk: int = 10000) -> CSEPersonPreprocess:
    """DP2 ``CSEPersonDetection.pre_process`` for matched Mask R-CNN / CSE pairs.

    1. Start box: union of the tight box of ``segmentation`` and the CSE box; expand and filter
       (:func:`dp2.ops.body_boxes.expand_person_boxes`).
    2. Masks and dilated boxes (:func:`dp2.ops.body_masks.person_crop_masks`).
    3. :func:`transform_embedding` and :func:`closest_vertices` per person.
    4. Sort by segmentation area ascending (``dilated_boxes`` stay in input order).

    Args:
        segmentation: bool [N, H, W] combined masks (see :func:`combine_cse_maskrcnn`).
        cse_boxes: int64 [N, 4] CSE boxes of the matched detections.
        cse_E: float32 [N, C, he, we] CSE embeddings.
        cse_S: [N, he, we] CSE 0/1 segmentations (int64 argmax maps in DP2).
        embed_map: float32 [V, C] mesh vertex embeddings.
        target_hw: crop size (288, 160).
        axis_minimum_expansion, percentage_background, minimum_area, dilation_percentage:
            as in :func:`dp2.ops.body_masks.preprocess_persons`.
        chunk: see :func:`closest_vertices`.

    Returns:
        :class:`CSEPersonPreprocess`.

    Raises:
        ValueError: on mismatched shapes.

    >>> seg = torch.zeros((1, 120, 100), dtype=torch.bool); seg[0, 20:90, 30:60] = True
    >>> out = cse_person_preprocess(seg, torch.tensor([[28, 20, 60, 92]]), torch.ones((1, 2, 8, 8)),
    ...                             torch.ones((1, 8, 8), dtype=torch.int64), torch.eye(2))
    >>> out.boxes.tolist(), out.E_mask.shape, int(out.vertices.max())
    ([[23, 18, 65, 94]], torch.Size([1, 1, 288, 160]), 0)
    """
    if segmentation.ndim != 3:
        raise ValueError(f"segmentation must have shape [N, H, W], got {list(segmentation.shape)}")
    n = segmentation.shape[0]
    if cse_E.ndim != 4 or cse_E.shape[0] != n or tuple(cse_S.shape) != (n, *cse_E.shape[2:]):
        raise ValueError(f"cse_E must be [{n}, C, h, w] and cse_S [{n}, h, w], got {list(cse_E.shape)} and "
                         f"{list(cse_S.shape)}")
    th, tw = int(target_hw[0]), int(target_hw[1])
    boxes, keep = expand_person_boxes(segmentation, cse_boxes, (th, tw), axis_minimum_expansion,
                                      percentage_background, minimum_area)
    kept = keep.nonzero()[:, 0]
    boxes, seg = boxes[kept], segmentation[kept]
    keep_mask, maskrcnn_mask, dilated_boxes = person_crop_masks(seg, boxes, (th, tw), dilation_percentage)
    m = len(kept)
    E_mask = torch.zeros((m, 1, th, tw), dtype=torch.bool, device=segmentation.device)
    vertices = torch.zeros((m, 1, th, tw), dtype=torch.int64, device=segmentation.device)
    for out_i, i in enumerate(kept.tolist()):
        new_E, new_S = transform_embedding(cse_E[i], cse_S[i], boxes[out_i], cse_boxes[i], (th, tw))
        E_mask[out_i, 0] = new_S
        vertices[out_i, 0] = closest_vertices(new_E, new_S, embed_map, chunk)
    order = torch.argsort(seg.sum(dim=(1, 2)))
    return CSEPersonPreprocess(boxes[order], keep_mask[order], maskrcnn_mask[order], E_mask[order], vertices[order],
                               dilated_boxes, seg[order], kept[order])
