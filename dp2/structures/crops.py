"""Crops handed to generators and the frame type that flows through the loop."""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch

__all__ = ["CropBatch", "Frame"]


@dataclass(frozen=True)
class CropBatch:
    """Same-size crops of one detection kind, ready for one generator call.

    Attributes:
        images: uint8 [N, 3, h, w] RGB crops (zero padding where the box left the image).
        keep_mask: bool [N, 1, h, w]; True = keep the pixel, False = the generator
            synthesises it.
        boxes_xyxy: int64 [N, 4] source boxes in image pixels (half-open); may extend
            past the image. ``paste`` maps the crops back into these boxes.
        keypoints: optional float32 [N, K, 3] (x, y relative to the crop in [0, 1], visibility).
        embedding: optional float32 [N, C, h, w] CSE surface embedding (bodies with CSE).
        embedding_mask: optional float32 [N, 1, h, w], 1 where ``embedding`` is valid (DP2 ``E_mask``).
        maskrcnn_mask: optional bool [N, 1, h, w], True = background (DP2 ``maskrcnn_mask``,
            the undilated person mask inverted).
    """

    images: torch.Tensor
    keep_mask: torch.Tensor
    boxes_xyxy: torch.Tensor
    keypoints: torch.Tensor | None = None
    embedding: torch.Tensor | None = None
    embedding_mask: torch.Tensor | None = None
    maskrcnn_mask: torch.Tensor | None = None

    _OPTIONAL = ("keypoints", "embedding", "embedding_mask", "maskrcnn_mask")

    def __post_init__(self) -> None:
        n = self.images.shape[0]
        if self.images.dtype != torch.uint8 or self.images.ndim != 4 or self.images.shape[1] != 3:
            raise ValueError(f"images must be uint8 [N, 3, h, w], got {self.images.dtype} {list(self.images.shape)}")
        expected = (n, 1, *self.images.shape[2:])
        if self.keep_mask.dtype != torch.bool or tuple(self.keep_mask.shape) != expected:
            raise ValueError(f"keep_mask must be bool {list(expected)}, got {self.keep_mask.dtype} {list(self.keep_mask.shape)}")
        if tuple(self.boxes_xyxy.shape) != (n, 4):
            raise ValueError(f"boxes_xyxy must have shape [{n}, 4], got {list(self.boxes_xyxy.shape)}")
        for name in self._OPTIONAL:
            value = getattr(self, name)
            if value is not None and value.shape[0] != n:
                raise ValueError(f"{name} must have {n} rows, got {list(value.shape)}")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def size_hw(self) -> tuple[int, int]:
        return int(self.images.shape[2]), int(self.images.shape[3])

    def _map(self, fn) -> "CropBatch":
        values = {name: None if getattr(self, name) is None else fn(getattr(self, name))
                  for name in ("images", "keep_mask", "boxes_xyxy") + self._OPTIONAL}
        return replace(self, **values)

    def __getitem__(self, key) -> "CropBatch":
        if isinstance(key, int):
            key = slice(key, key + 1)
        return self._map(lambda t: t[key])

    def to(self, device) -> "CropBatch":
        return self._map(lambda t: t.to(device))


@dataclass
class Frame:
    """One image or video frame travelling through the frame loop.

    Attributes:
        image: uint8 [3, H, W] RGB tensor (after EXIF orientation / rotation and ``--max-res``).
        index: position in its stream (0 for a single image).
        time_s: presentation time in seconds for video frames, else None.
        source: a human-readable name of where the frame came from (path or ``webcam:0``).
    """

    image: torch.Tensor
    index: int = 0
    time_s: float | None = None
    source: str = ""

    @property
    def size_hw(self) -> tuple[int, int]:
        return int(self.image.shape[1]), int(self.image.shape[2])
