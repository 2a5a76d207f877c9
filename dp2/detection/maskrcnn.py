"""Person instance masks from torchvision's Mask R-CNN v2 (ResNet-50 FPN, COCO).

DeepPrivacy2 segments people with detectron2's Mask R-CNN R-X101-32x8d FPN. dp2 installs from
PyPI alone, so it uses torchvision's improved ``maskrcnn_resnet50_fpn_v2`` (COCO val2017 box AP
47.4, mask AP 41.8) in its place, with DP2's settings: score threshold 0.3, NMS 0.5, at most 100
detections per image, masks thresholded at 0.5 and pasted at full image resolution, class
``person`` only.

The network is built without torchvision's downloader (``weights=None, weights_backbone=None``,
91 COCO classes); its weights come through :mod:`dp2.weights` under torchvision's own file name,
so an existing torch-hub cache is reused.

Unlike the v1 detection models (see :mod:`dp2.detection.keypoints`), the v2 builder uses plain
``nn.BatchNorm2d`` (backbone, box head and mask head) whether or not pretrained weights are
requested, and it does not call ``overwrite_eps``: ``maskrcnn_resnet50_fpn_v2(weights=None)``
therefore has exactly the modules, state-dict keys and eval-mode behaviour of the pretrained
model (``BatchNorm2d`` in eval mode uses the stored running statistics with ``eps=1e-5``). The
only difference is which backbone layers have ``requires_grad``, which inference ignores.

Convention: boxes are computed from the thresholded masks (tight, half-open, int64 xyxy, like
``masks_to_boxes`` plus one on the far side), not taken from the box head, because DP2 derives
every person box from its mask anyway. A detection whose mask is empty after thresholding (a
tiny or degenerate instance) is dropped: DP2 cannot crop or paint it either.
"""
from __future__ import annotations

import functools
import logging
import os
from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from dp2.detection.accel import CompiledOrEager, check_precision, inference_autocast, optimize_for_inference_
from dp2.detection.base import LazyModelDetector, check_image
from dp2.structures import PersonDetections
from dp2.weights import WeightSpec, WeightsError, load_checkpoint, resolve_weights

__all__ = [
    "COCO_PERSON_LABEL",
    "MASKRCNN_V2_WEIGHTS",
    "MaskRCNNPersonDetector",
    "build_maskrcnn_v2",
    "keep_only_class_",
    "mask_boxes_xyxy",
    "person_detections_from_output",
]

logger = logging.getLogger(__name__)

#: Label of ``person`` in torchvision's 91-entry COCO category list (0 is background).
COCO_PERSON_LABEL = 1

# The weight files are described in dp2.weights_catalog (light: the weights command reads it).
from dp2.weights_catalog import MASKRCNN_V2_WEIGHTS  # noqa: E402

def build_maskrcnn_v2(*, score_threshold: float = 0.05, min_size: int = 800, max_size: int = 1333,
                      nms_threshold: float = 0.5, detections_per_image: int = 100) -> nn.Module:
    """torchvision Mask R-CNN ResNet-50 FPN v2 with the COCO_V1 architecture (random init, eval mode).

    Nothing is downloaded. Parameters do not require gradients (inference only).

    Args:
        score_threshold: the box head's ``box_score_thresh``: boxes scoring at or below it are
            discarded before NMS and never get a mask.
        min_size: shortest image side after torchvision's resize (800 as trained).
        max_size: longest side limit of that resize (1333 as trained).
        nms_threshold: per-class box NMS IoU threshold (0.5, as detectron2 and DP2).
        detections_per_image: most detections kept per image, all classes together (100).
    """
    from torchvision.models.detection import maskrcnn_resnet50_fpn_v2

    model = maskrcnn_resnet50_fpn_v2(
        weights=None, weights_backbone=None, num_classes=91, min_size=min_size, max_size=max_size,
        box_score_thresh=score_threshold, box_nms_thresh=nms_threshold,
        box_detections_per_img=detections_per_image)
    model.requires_grad_(False)
    return model.eval()


def mask_boxes_xyxy(masks: torch.Tensor) -> torch.Tensor:
    """Tight half-open boxes around bool masks.

    Args:
        masks: bool [N, H, W].

    Returns:
        int64 [N, 4] ``(x0, y0, x1, y1)`` with ``x1``/``y1`` exclusive; ``(0, 0, 0, 0)`` for an
        empty mask.

    Example:
        >>> m = torch.zeros(1, 4, 5, dtype=torch.bool); m[0, 1:3, 2] = True
        >>> mask_boxes_xyxy(m).tolist()
        [[2, 1, 3, 3]]
    """
    n, h, w = masks.shape
    rows = masks.any(dim=2)  # [N, H]
    cols = masks.any(dim=1)  # [N, W]
    ys = torch.arange(h, device=masks.device)
    xs = torch.arange(w, device=masks.device)
    big = max(h, w) + 1
    y0 = torch.where(rows, ys, big).amin(dim=1) if h else torch.zeros(n, dtype=torch.int64)
    y1 = torch.where(rows, ys + 1, 0).amax(dim=1) if h else torch.zeros(n, dtype=torch.int64)
    x0 = torch.where(cols, xs, big).amin(dim=1) if w else torch.zeros(n, dtype=torch.int64)
    x1 = torch.where(cols, xs + 1, 0).amax(dim=1) if w else torch.zeros(n, dtype=torch.int64)
    boxes = torch.stack([x0, y0, x1, y1], dim=1).to(torch.int64)  # [N, 4]
    boxes[~rows.any(dim=1)] = 0
    return boxes


def person_detections_from_output(output: Mapping[str, torch.Tensor], image_size_hw: tuple[int, int], *,
                                  score_threshold: float, mask_threshold: float = 0.5,
                                  person_label: int = COCO_PERSON_LABEL) -> PersonDetections:
    """Turn one torchvision Mask R-CNN output dict into :class:`PersonDetections`.

    Keeps detections with ``label == person_label`` and ``score > score_threshold`` (strict, as
    detectron2's and torchvision's box heads compare), thresholds the mask probabilities with
    ``>= mask_threshold`` (as detectron2's mask pasting), drops empty masks and computes the boxes
    from the masks (:func:`mask_boxes_xyxy`). Order is the model's (descending score).

    Args:
        output: ``boxes`` float [N, 4], ``labels`` int64 [N], ``scores`` float [N], ``masks``
            float [N, 1, H, W] probabilities in [0, 1] at image resolution.
        image_size_hw: (H, W) of the image.
        score_threshold: person score threshold in [0, 1].
        mask_threshold: mask probability threshold in (0, 1).
        person_label: label of the person class.

    Returns:
        PersonDetections on the CPU.
    """
    h, w = int(image_size_hw[0]), int(image_size_hw[1])
    scores, labels, masks = output["scores"], output["labels"], output["masks"]
    if masks.ndim == 4:
        masks = masks[:, 0]  # [N, H, W]
    if masks.shape[0] and tuple(masks.shape[1:]) != (h, w):
        raise ValueError(f"masks must be [N, 1, {h}, {w}] at image resolution, got {list(output['masks'].shape)}")
    keep = (labels == person_label) & (scores > score_threshold)
    masks = masks[keep] >= mask_threshold  # [M, H, W] bool
    scores = scores[keep]
    nonempty = masks.flatten(1).any(dim=1)
    if not bool(nonempty.all()):
        logger.debug("dropping %d person detections with empty masks", int((~nonempty).sum()))
        masks, scores = masks[nonempty], scores[nonempty]
    if masks.shape[0] == 0:
        return PersonDetections.empty((h, w))
    return PersonDetections(boxes_xyxy=mask_boxes_xyxy(masks).cpu(), scores=scores.float().cpu(),
                            masks=masks.cpu(), image_size_hw=(h, w))


def _postprocess_one_class(heads: nn.Module, label: int, *args, **kwargs):
    """torchvision's ``RoIHeads.postprocess_detections``, then every class but ``label`` dropped.

    The class-wise NMS and the top-``detections_per_img`` cut over all classes run first, as
    before, so the ``label`` detections are exactly those of the unfiltered model; only the mask
    head and the full-resolution mask pasting, which run on every detection that comes out of
    here, no longer spend time on cars, bags and chairs that dp2 throws away.
    """
    boxes, scores, labels = type(heads).postprocess_detections(heads, *args, **kwargs)
    keep = [lab == label for lab in labels]
    return ([b[k] for b, k in zip(boxes, keep)], [s[k] for s, k in zip(scores, keep)],
            [lab[k] for lab, k in zip(labels, keep)])


def keep_only_class_(model: nn.Module, label: int = COCO_PERSON_LABEL) -> nn.Module:
    """Make a torchvision Mask R-CNN compute masks for the ``label`` detections only, in place.

    The detections of ``label`` (boxes, scores, masks) are unchanged; other classes are no longer
    returned. Returns ``model``.
    """
    heads = model.roi_heads
    heads.postprocess_detections = functools.partial(_postprocess_one_class, heads, int(label))
    return model


def _check_unit(name: str, value: float, *, open_interval: bool = False) -> float:
    value = float(value)
    ok = 0.0 < value < 1.0 if open_interval else 0.0 <= value <= 1.0
    if not ok:
        interval = "(0, 1)" if open_interval else "[0, 1]"
        raise ValueError(f"{name} must be in {interval}, got {value}")
    return value


class MaskRCNNPersonDetector(LazyModelDetector):
    """Mask R-CNN v2 person instance segmentation with DeepPrivacy2's thresholds.

    Args:
        score_threshold: minimum person score in [0, 1] (DP2's ``--dst``/``score_threshold``,
            0.3). Also the box head's ``box_score_thresh``, so boxes below it get no mask.
        mask_threshold: mask probability threshold in (0, 1) (0.5, as DP2).
        weights_dir: extra directory searched first for
            ``maskrcnn_resnet50_fpn_v2_coco-73cbd019.pth`` (then ``$DP2_WEIGHTS_DIR``, then the
            torch-hub cache, where torchvision itself keeps it).
        weights_path: explicit state-dict file; skips the lookup and the hash check.
        download: allow downloading the weights when no local copy is found.
        device: ``"cpu"``, ``"cuda"``, ``"mps"``...; None picks CUDA when available.
        min_size: shortest side after the model's internal resize (800 as trained; lower is
            faster and misses small people).
        max_size: longest side limit of that resize (1333 as trained).
        detections_per_image: most detections the model keeps per image, all classes together
            (100, as detectron2 and DP2).
        optimize: fold the batch norms into the convolutions and run channels-last (exact up
            to float rounding; see :mod:`dp2.detection.accel`). False runs the network as built.
        precision: ``"fp32"`` (default) or ``"bf16"`` (opt-in autocast; boxes within a few
            pixels, scores within about 1e-2 of fp32).
        compile: ``torch.compile`` the backbone (opt-in; slow first call per image size, falls
            back to eager with a warning).
        proposals: RPN proposals kept after NMS for the box head (None = 1000, as detectron2 and
            DP2). Fewer is faster (the box head runs on each) but may lose recall.

    The model is built and loaded on the first call. Call it with a uint8 RGB ``[3, H, W]``
    tensor; it returns CPU :class:`PersonDetections` (boxes computed from the masks).
    """

    weight_spec = MASKRCNN_V2_WEIGHTS

    def __init__(self, *, score_threshold: float = 0.3, mask_threshold: float = 0.5,
                 weights_dir: str | os.PathLike | None = None, weights_path: str | os.PathLike | None = None,
                 download: bool = True, device: str | torch.device | None = None,
                 min_size: int = 800, max_size: int = 1333, detections_per_image: int = 100,
                 optimize: bool = True, precision: str = "fp32", compile: bool = False,
                 proposals: int | None = None) -> None:
        self.mask_threshold = mask_threshold
        super().__init__(score_threshold=score_threshold, weights_dir=weights_dir, weights_path=weights_path,
                         download=download, device=device)
        if int(min_size) < 1 or int(max_size) < int(min_size):
            raise ValueError(f"need 1 <= min_size <= max_size, got min_size={min_size}, max_size={max_size}")
        self.min_size, self.max_size = int(min_size), int(max_size)
        if int(detections_per_image) < 1:
            raise ValueError(f"detections_per_image must be >= 1, got {detections_per_image}")
        self.detections_per_image = int(detections_per_image)
        self.optimize = bool(optimize)
        self.precision = check_precision(precision)
        self.compile = bool(compile)
        if proposals is not None and int(proposals) < 1:
            raise ValueError(f"proposals must be >= 1 or None, got {proposals}")
        self.proposals = None if proposals is None else int(proposals)

    @property
    def score_threshold(self) -> float:
        return self._score_threshold

    @score_threshold.setter
    def score_threshold(self, value: float) -> None:
        self._score_threshold = _check_unit("score_threshold", value)
        if self._model is not None:
            self._model.roi_heads.score_thresh = self._score_threshold

    @property
    def mask_threshold(self) -> float:
        return self._mask_threshold

    @mask_threshold.setter
    def mask_threshold(self, value: float) -> None:
        self._mask_threshold = _check_unit("mask_threshold", value, open_interval=True)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(score_threshold={self.score_threshold}, "
                f"mask_threshold={self.mask_threshold}, precision={self.precision!r}, device={str(self.device)!r})")

    def _load_model(self) -> nn.Module:
        path = self.weights_file()
        state = load_checkpoint(path)
        model = build_maskrcnn_v2(score_threshold=self.score_threshold, min_size=self.min_size,
                                  max_size=self.max_size, detections_per_image=self.detections_per_image)
        try:
            result = model.load_state_dict(state, strict=False)
        except RuntimeError as err:  # shape mismatches
            raise WeightsError(f"{path} is not a Mask R-CNN ResNet-50 FPN v2 state dict: {err}") from err
        # BatchNorm fills in a missing num_batches_tracked only for old checkpoints; it is unused in eval.
        missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
        if missing or result.unexpected_keys:
            raise WeightsError(f"{path} is not a Mask R-CNN ResNet-50 FPN v2 state dict: missing keys "
                               f"{missing[:5]}, unexpected keys {result.unexpected_keys[:5]}")
        logger.info("Mask R-CNN v2: weights %s on %s", path, self.device)
        return self._prepare(model.to(self.device))

    def _prepare(self, model: nn.Module) -> nn.Module:
        """Apply the speed options (``optimize``, ``compile``, ``proposals``) to a loaded model;
        masks are computed for persons only (:func:`keep_only_class_`, exact)."""
        keep_only_class_(model, COCO_PERSON_LABEL)
        if self.proposals is not None:
            model.rpn._post_nms_top_n["testing"] = self.proposals
        if self.optimize:
            optimize_for_inference_(model, entry=model.backbone)
        if self.compile:
            model.backbone = CompiledOrEager(model.backbone, name="the Mask R-CNN backbone")
        return model

    @torch.no_grad()
    def __call__(self, image: torch.Tensor) -> PersonDetections:
        """Segment the people in one image.

        Args:
            image: uint8 [3, H, W] RGB, any device.

        Returns:
            PersonDetections (CPU): bool masks [N, H, W], int64 boxes from the masks, float32
            scores > ``score_threshold`` in descending order.

        Raises:
            TypeError, ValueError: ``image`` is not a uint8 [3, H, W] tensor.
            WeightsError: the weights cannot be found or loaded.
        """
        check_image(image)
        size_hw = (int(image.shape[1]), int(image.shape[2]))
        if size_hw[0] == 0 or size_hw[1] == 0:
            return PersonDetections.empty(size_hw)
        model = self.model
        x = image.to(self.device).float() / 255  # the model resizes and normalises itself
        with inference_autocast(self.device, self.precision):
            out = model([x])[0]
        if self.precision != "fp32":
            out = {k: v.float() if v.is_floating_point() else v for k, v in out.items()}
        return person_detections_from_output(out, size_hw, score_threshold=self.score_threshold,
                                             mask_threshold=self.mask_threshold)
