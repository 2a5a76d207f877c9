"""Typed detection results that flow from detectors to the anonymizer.

Convention: boxes are ``boxes_xyxy`` in pixel coordinates of the image they
were detected on, half-open (``x1``/``y1`` exclusive), integer valued
(``torch.int64``). Boxes may extend past the image border; clipping is an
explicit operation in :mod:`dp2.ops.boxes`.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Sequence

import torch

__all__ = ["BodyDetections", "FaceDetections", "PersonDetections"]


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise ValueError(message)


def _index(value: torch.Tensor | None, key) -> torch.Tensor | None:
    if value is None:
        return None
    if isinstance(key, int):
        key = slice(key, key + 1 if key != -1 else None)
    if isinstance(key, (list, tuple)):
        key = torch.as_tensor(key, dtype=torch.long)
    return value[key]


class _Instances:
    """Shared behaviour: ``len``, indexing, ``to``, ``cat``, ``empty``.

    Subclasses are dataclasses whose tensor fields all have the instance count
    as their first dimension (``image_size_hw`` is the only non-tensor field).
    """

    image_size_hw: tuple[int, int]

    def _tensor_fields(self) -> list[str]:
        return [f.name for f in fields(self) if f.name != "image_size_hw"]

    def __len__(self) -> int:
        return int(self.boxes_xyxy.shape[0])  # type: ignore[attr-defined]

    def __getitem__(self, key) -> "_Instances":
        """Index with an int, slice, list of ints or a bool mask; returns a new object."""
        values = {name: _index(getattr(self, name), key) for name in self._tensor_fields()}
        return replace(self, **values)

    def to(self, device: torch.device | str) -> "_Instances":
        values = {}
        for name in self._tensor_fields():
            value = getattr(self, name)
            values[name] = None if value is None else value.to(device)
        return replace(self, **values)

    @classmethod
    def cat(cls, items: Sequence["_Instances"]):
        """Concatenate detections of the same image (all must agree on optional fields)."""
        _check(len(items) > 0, f"{cls.__name__}.cat needs at least one item")
        sizes = {tuple(item.image_size_hw) for item in items}
        _check(len(sizes) == 1, f"{cls.__name__}.cat: image sizes differ: {sorted(sizes)}")
        first = items[0]
        values = {}
        for name in first._tensor_fields():
            parts = [getattr(item, name) for item in items]
            if all(p is None for p in parts):
                values[name] = None
                continue
            _check(all(p is not None for p in parts), f"{cls.__name__}.cat: field {name} is missing in some items")
            values[name] = torch.cat(parts)
        return replace(first, **values)


@dataclass(frozen=True)
class FaceDetections(_Instances):
    """Faces found in one image.

    Attributes:
        boxes_xyxy: int64 [N, 4], half-open pixel boxes.
        scores: float32 [N] in [0, 1].
        landmarks: float32 [N, 5, 2] (x, y) pixels: right eye, left eye, nose,
            right and left mouth corner as seen in the image (CenterFace order), or None.
        image_size_hw: size of the image the boxes refer to.
    """

    boxes_xyxy: torch.Tensor
    scores: torch.Tensor
    image_size_hw: tuple[int, int]
    landmarks: torch.Tensor | None = None

    def __post_init__(self) -> None:
        b = self.boxes_xyxy
        _check(isinstance(b, torch.Tensor), f"boxes_xyxy must be a torch.Tensor, got {type(b).__name__}")
        _check(b.ndim == 2 and b.shape[1] == 4, f"boxes_xyxy must have shape [N, 4], got {list(b.shape)}")
        _check(b.dtype == torch.int64, f"boxes_xyxy must be int64, got {b.dtype}")
        _check(self.scores.shape == (b.shape[0],), f"scores must have shape [{b.shape[0]}], got {list(self.scores.shape)}")
        if self.landmarks is not None:
            _check(
                self.landmarks.ndim == 3 and self.landmarks.shape[0] == b.shape[0] and self.landmarks.shape[2] == 2,
                f"landmarks must have shape [{b.shape[0]}, K, 2], got {list(self.landmarks.shape)}",
            )
        _check(len(self.image_size_hw) == 2, f"image_size_hw must be (H, W), got {self.image_size_hw}")
        object.__setattr__(self, "image_size_hw", (int(self.image_size_hw[0]), int(self.image_size_hw[1])))

    @classmethod
    def empty(cls, image_size_hw: tuple[int, int], with_landmarks: bool = False) -> "FaceDetections":
        return cls(
            boxes_xyxy=torch.zeros((0, 4), dtype=torch.int64),
            scores=torch.zeros((0,), dtype=torch.float32),
            image_size_hw=image_size_hw,
            landmarks=torch.zeros((0, 5, 2), dtype=torch.float32) if with_landmarks else None,
        )


@dataclass(frozen=True)
class PersonDetections(_Instances):
    """People found in one image (instance masks).

    Attributes:
        boxes_xyxy: int64 [N, 4], half-open pixel boxes.
        scores: float32 [N].
        masks: bool [N, H, W] instance masks in image coordinates (True = person).
        image_size_hw: (H, W).
    """

    boxes_xyxy: torch.Tensor
    scores: torch.Tensor
    masks: torch.Tensor
    image_size_hw: tuple[int, int]

    def __post_init__(self) -> None:
        b = self.boxes_xyxy
        _check(b.ndim == 2 and b.shape[1] == 4, f"boxes_xyxy must have shape [N, 4], got {list(b.shape)}")
        _check(b.dtype == torch.int64, f"boxes_xyxy must be int64, got {b.dtype}")
        _check(self.scores.shape == (b.shape[0],), f"scores must have shape [{b.shape[0]}], got {list(self.scores.shape)}")
        h, w = self.image_size_hw
        _check(
            self.masks.dtype == torch.bool and tuple(self.masks.shape) == (b.shape[0], h, w),
            f"masks must be bool [{b.shape[0]}, {h}, {w}], got {self.masks.dtype} {list(self.masks.shape)}",
        )

    @classmethod
    def empty(cls, image_size_hw: tuple[int, int]) -> "PersonDetections":
        h, w = image_size_hw
        return cls(
            boxes_xyxy=torch.zeros((0, 4), dtype=torch.int64),
            scores=torch.zeros((0,), dtype=torch.float32),
            masks=torch.zeros((0, h, w), dtype=torch.bool),
            image_size_hw=image_size_hw,
        )


@dataclass(frozen=True)
class BodyDetections(_Instances):
    """People prepared for a body generator (DeepPrivacy2's ``PersonDetection`` /
    ``CSEPersonDetection`` after ``pre_process``), in anonymization order (ascending mask area).

    Attributes:
        boxes_xyxy: int64 [N, 4] crop boxes (expanded to the generator's aspect; may leave the image).
        scores: float32 [N] detector scores.
        segmentation: bool [N, H, W] person masks in image pixels (Mask R-CNN, OR-ed with the CSE
            mask for CSE persons).
        keep_mask: bool [N, 1, h, w] crop-space mask, True = keep, False = the dilated person.
        maskrcnn_mask: bool [N, 1, h, w] crop-space undilated mask, True = background.
        dilated_boxes: int64 [N, 4] image-space boxes of the dilated masks (face de-duplication).
        image_size_hw: (H, W).
        vertices: int64 [N, 1, h, w] closest CSE mesh vertex per crop pixel, or None (no CSE).
        embedding_mask: bool [N, 1, h, w] where the CSE embedding is valid, or None.
        embed_map: float32 [V, C] vertex embeddings shared by all instances, or None.
        keypoints: float32 [N, 17, 3] COCO keypoints ``(x, y, visible)`` in image pixels
            (visible 0/1), or None (TriA-GAN's detector, ``MaskRCNNVitPose``, fills it).
    """

    boxes_xyxy: torch.Tensor
    scores: torch.Tensor
    segmentation: torch.Tensor
    keep_mask: torch.Tensor
    maskrcnn_mask: torch.Tensor
    dilated_boxes: torch.Tensor
    image_size_hw: tuple[int, int]
    vertices: torch.Tensor | None = None
    embedding_mask: torch.Tensor | None = None
    embed_map: torch.Tensor | None = None
    keypoints: torch.Tensor | None = None

    def _tensor_fields(self) -> list[str]:
        return [name for name in super()._tensor_fields() if name != "embed_map"]

    def __post_init__(self) -> None:
        n = self.boxes_xyxy.shape[0]
        _check(self.boxes_xyxy.dtype == torch.int64 and tuple(self.boxes_xyxy.shape) == (n, 4),
               f"boxes_xyxy must be int64 [N, 4], got {self.boxes_xyxy.dtype} {list(self.boxes_xyxy.shape)}")
        h, w = self.image_size_hw
        _check(tuple(self.segmentation.shape) == (n, h, w) and self.segmentation.dtype == torch.bool,
               f"segmentation must be bool [{n}, {h}, {w}], got {self.segmentation.dtype} {list(self.segmentation.shape)}")
        for name in ("scores", "keep_mask", "maskrcnn_mask", "dilated_boxes"):
            _check(getattr(self, name).shape[0] == n, f"{name} must have {n} rows, got {list(getattr(self, name).shape)}")
        _check(self.keep_mask.ndim == 4 and self.keep_mask.dtype == torch.bool,
               f"keep_mask must be bool [N, 1, h, w], got {self.keep_mask.dtype} {list(self.keep_mask.shape)}")
        has_cse = [v is not None for v in (self.vertices, self.embedding_mask, self.embed_map)]
        _check(all(has_cse) or not any(has_cse), "vertices, embedding_mask and embed_map go together")
        if self.keypoints is not None:
            _check(self.keypoints.ndim == 3 and self.keypoints.shape[0] == n and self.keypoints.shape[2] == 3,
                   f"keypoints must have shape [{n}, K, 3], got {list(self.keypoints.shape)}")

    @property
    def has_cse(self) -> bool:
        return self.vertices is not None

    @classmethod
    def cat(cls, items):
        first = items[0]
        out = super().cat(items)
        return replace(out, embed_map=first.embed_map)
