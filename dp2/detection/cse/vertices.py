"""Pure tensor helpers around CSE outputs: nearest mesh vertices and box-to-crop placement.

These reproduce what DeepPrivacy2 does with the detector output when it builds a body
crop (``CSEPersonDetection.pre_process``): the CSE embedding ``E`` and mask ``S`` are
placed into the crop of an expanded box, and every masked pixel gets the id of the mesh
vertex whose embedding is nearest (squared Euclidean distance, lowest id on ties).
"""
from __future__ import annotations

import numpy as np
import torch

__all__ = ["closest_vertices", "embedding_to_crop", "squared_distances"]


def squared_distances(points: torch.Tensor, vertices: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances [P, V] between ``points`` [P, D] and ``vertices`` [V, D].

    Computed as ``(-2 p) @ v^T + (|p|^2 + |v|^2)`` (the same float order as DensePose's
    ``squared_euclidean_distance_matrix``, so argmin ties resolve identically).
    """
    d = torch.mm(-2 * points, vertices.t())
    d += (points * points).sum(1, keepdim=True) + (vertices * vertices).sum(1, keepdim=True).t()
    return d


def closest_vertices(embedding: torch.Tensor, mask: torch.Tensor, embed_map: torch.Tensor,
                     chunk_size: int = 10_000) -> torch.Tensor:
    """Id of the nearest mesh vertex for every masked pixel, 0 elsewhere.

    Args:
        embedding: float [D, H, W] per-pixel embedding (CSE ``E``).
        mask: bool [H, W]; pixels to label.
        embed_map: float [V, D] normalised vertex embeddings (:meth:`CSEDetector.embed_map`).
        chunk_size: pixels per distance-matrix chunk (bounds the memory to chunk x V).

    Returns:
        int64 [H, W]: ``argmin_v |E(p) - embed_map[v]|^2`` where ``mask``, else 0.

    Raises:
        ValueError: shapes do not fit.

    >>> emb = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])  # [2, 1, 2]
    >>> closest_vertices(emb, torch.tensor([[True, True]]), torch.tensor([[0.0, 1.0], [1.0, 0.0]]))
    tensor([[1, 0]])
    """
    if embedding.ndim != 3 or mask.shape != embedding.shape[1:]:
        raise ValueError(f"embedding must be [D, H, W] and mask [H, W], got {list(embedding.shape)} "
                         f"and {list(mask.shape)}")
    if embed_map.ndim != 2 or embed_map.shape[1] != embedding.shape[0]:
        raise ValueError(f"embed_map must be [V, {embedding.shape[0]}], got {list(embed_map.shape)}")
    mask = mask.bool()
    out = torch.zeros(mask.shape, dtype=torch.int64, device=embedding.device)
    points = embedding[:, mask].t()  # [P, D]
    ids = [torch.argmin(squared_distances(points[i:i + chunk_size], embed_map), dim=1)
           for i in range(0, points.shape[0], chunk_size)]
    if ids:
        out[mask] = torch.cat(ids)
    return out


def embedding_to_crop(embedding: torch.Tensor, segmentation: torch.Tensor, cse_box_xyxy, crop_box_xyxy,
                      crop_size_hw: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Place a CSE embedding and mask (box-relative grid) into the crop of an enclosing box.

    The CSE box becomes the rectangle ``x0 = round((Ex0 - Bx0) / (Bx1 - Bx0) * Wc)`` (numpy
    round, half to even; likewise x1 with Ex1, and y with the heights) of the crop grid
    ``(Hc, Wc)``. ``embedding`` is resized into it with bilinear antialiased interpolation,
    ``segmentation`` the same way as float, then ``> 0``. Outside the rectangle both are 0.

    Args:
        embedding: float [D, h, w] (CSE ``E``, e.g. 112 x 112).
        segmentation: bool/int [h, w] (CSE ``S``).
        cse_box_xyxy: the CSE box (x0, y0, x1, y1), integer pixels.
        crop_box_xyxy: the crop box (may extend outside the image); must contain the CSE box.
        crop_size_hw: (Hc, Wc) of the crop, e.g. (288, 160).

    Returns:
        embedding float32 [D, Hc, Wc] and mask bool [Hc, Wc].

    Raises:
        ValueError: the CSE box is not inside the crop box, or the crop box is empty.
    """
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.functional import resize

    ex0, ey0, ex1, ey1 = (int(v) for v in cse_box_xyxy)
    bx0, by0, bx1, by1 = (int(v) for v in crop_box_xyxy)
    if bx1 <= bx0 or by1 <= by0:
        raise ValueError(f"crop box must be non-empty, got {[bx0, by0, bx1, by1]}")
    if not (bx0 <= ex0 <= ex1 <= bx1 and by0 <= ey0 <= ey1 <= by1):
        raise ValueError(f"CSE box {[ex0, ey0, ex1, ey1]} must lie inside the crop box {[bx0, by0, bx1, by1]}")
    hc, wc = int(crop_size_hw[0]), int(crop_size_hw[1])

    def to_grid(v: int, lo: int, hi: int, size: int) -> int:
        return int(np.round((v - lo) / (hi - lo) * size))

    x0, x1 = to_grid(ex0, bx0, bx1, wc), to_grid(ex1, bx0, bx1, wc)
    y0, y1 = to_grid(ey0, by0, by1, hc), to_grid(ey1, by0, by1, hc)
    new_e = torch.zeros((embedding.shape[0], hc, wc), dtype=torch.float32, device=embedding.device)
    new_s = torch.zeros((hc, wc), dtype=torch.bool, device=embedding.device)
    if y1 > y0 and x1 > x0:
        mode = InterpolationMode.BILINEAR
        new_e[:, y0:y1, x0:x1] = resize(embedding.float(), [y1 - y0, x1 - x0], interpolation=mode, antialias=True)
        s = resize(segmentation[None].float(), [y1 - y0, x1 - x0], interpolation=mode, antialias=True)[0]
        new_s[y0:y1, x0:x1] = s > 0
    return new_e, new_s
