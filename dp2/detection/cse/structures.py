"""``CSEDetections``: what the CSE detector returns for one image."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import torch

__all__ = ["CSEDetections"]


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise ValueError(message)


@dataclass(frozen=True)
class CSEDetections:
    """DensePose CSE person detections of one image (DeepPrivacy2's ``CSEDetector`` output).

    Convention: ``boxes_xyxy`` are integer pixels of the image the detector saw, half-open
    (x1/y1 exclusive), inside the image, non-empty. ``S`` and ``E`` live on a box-relative
    grid (S x S, 112 for the official model) that spans the box; ``im_segmentation`` is
    ``S`` pasted into the image (nearest resize).

    Attributes:
        boxes_xyxy: int64 [N, 4].
        scores: float32 [N] box scores in (threshold, 1].
        S: bool [N, S, S] coarse segmentation (``coarse_segm.argmax(1) == 1``; 1 = person).
        E: float32 [N, D, S, S] per-pixel surface embedding (not normalised; D = 16).
        im_segmentation: bool [N, H, W] ``S`` resized (nearest) into its box.
        embed_map: float32 [V, D] L2-normalised mesh vertex embeddings (shared by all
            instances; V = 27554 for SMPL).
        image_size_hw: (H, W) of the image.
    """

    boxes_xyxy: torch.Tensor
    scores: torch.Tensor
    S: torch.Tensor
    E: torch.Tensor
    im_segmentation: torch.Tensor
    embed_map: torch.Tensor
    image_size_hw: tuple[int, int]

    def __post_init__(self) -> None:
        h, w = (int(v) for v in self.image_size_hw)
        object.__setattr__(self, "image_size_hw", (h, w))
        b = self.boxes_xyxy
        _check(isinstance(b, torch.Tensor) and b.ndim == 2 and b.shape[1] == 4 and b.dtype == torch.int64,
               f"boxes_xyxy must be an int64 tensor of shape [N, 4], got {_describe(b)}")
        n = b.shape[0]
        _check(isinstance(self.scores, torch.Tensor) and self.scores.shape == (n,)
               and self.scores.is_floating_point(),
               f"scores must be a float tensor [{n}], got {_describe(self.scores)}")
        _check(isinstance(self.S, torch.Tensor) and self.S.ndim == 3 and self.S.shape[0] == n
               and self.S.dtype == torch.bool, f"S must be a bool tensor [{n}, S, S], got {_describe(self.S)}")
        _check(isinstance(self.E, torch.Tensor) and self.E.ndim == 4 and self.E.shape[0] == n
               and self.E.shape[2:] == self.S.shape[1:] and self.E.is_floating_point(),
               f"E must be a float tensor [{n}, D, {self.S.shape[1]}, {self.S.shape[2]}], got {_describe(self.E)}")
        _check(isinstance(self.im_segmentation, torch.Tensor) and self.im_segmentation.shape == (n, h, w)
               and self.im_segmentation.dtype == torch.bool,
               f"im_segmentation must be a bool tensor [{n}, {h}, {w}], got {_describe(self.im_segmentation)}")
        _check(isinstance(self.embed_map, torch.Tensor) and self.embed_map.ndim == 2
               and self.embed_map.shape[1] == self.E.shape[1],
               f"embed_map must be a float tensor [V, {self.E.shape[1]}], got {_describe(self.embed_map)}")

    def __len__(self) -> int:
        return int(self.boxes_xyxy.shape[0])

    def __getitem__(self, key) -> "CSEDetections":
        """Index instances with an int, slice, list of ints or bool mask (``embed_map`` is shared)."""
        if isinstance(key, int):
            key = slice(key, key + 1 if key != -1 else None)
        elif isinstance(key, (list, tuple)):
            key = torch.as_tensor(key, dtype=torch.long)
        return replace(self, boxes_xyxy=self.boxes_xyxy[key], scores=self.scores[key], S=self.S[key],
                       E=self.E[key], im_segmentation=self.im_segmentation[key])

    def to(self, device: torch.device | str) -> "CSEDetections":
        return replace(self, boxes_xyxy=self.boxes_xyxy.to(device), scores=self.scores.to(device),
                       S=self.S.to(device), E=self.E.to(device), im_segmentation=self.im_segmentation.to(device),
                       embed_map=self.embed_map.to(device))

    @classmethod
    def cat(cls, items: Sequence["CSEDetections"]) -> "CSEDetections":
        """Concatenate detections of the same image (same size and ``embed_map`` shape)."""
        if not items:
            raise ValueError("cat needs at least one CSEDetections")
        first = items[0]
        for other in items[1:]:
            _check(other.image_size_hw == first.image_size_hw,
                   f"cannot cat detections of images {first.image_size_hw} and {other.image_size_hw}")
            _check(other.embed_map.shape == first.embed_map.shape, "cannot cat detections with different embed maps")
        return replace(first, **{name: torch.cat([getattr(d, name) for d in items])
                                 for name in ("boxes_xyxy", "scores", "S", "E", "im_segmentation")})

    @classmethod
    def empty(cls, image_size_hw: tuple[int, int], *, grid_size: int = 112, embed_size: int = 16,
              embed_map: torch.Tensor | None = None) -> "CSEDetections":
        """No detections (``embed_map`` defaults to an empty [0, embed_size] tensor)."""
        h, w = image_size_hw
        if embed_map is None:
            embed_map = torch.zeros((0, embed_size))
        return cls(boxes_xyxy=torch.zeros((0, 4), dtype=torch.int64), scores=torch.zeros(0),
                   S=torch.zeros((0, grid_size, grid_size), dtype=torch.bool),
                   E=torch.zeros((0, embed_map.shape[1], grid_size, grid_size)),
                   im_segmentation=torch.zeros((0, h, w), dtype=torch.bool), embed_map=embed_map,
                   image_size_hw=(h, w))


def _describe(value) -> str:
    if isinstance(value, torch.Tensor):
        return f"{value.dtype} {list(value.shape)}"
    return type(value).__name__
