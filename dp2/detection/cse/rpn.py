"""Anchors, box deltas and the region proposal network (inference only).

Conventions (detectron2's): boxes are float ``x0, y0, x1, y1`` in pixels of the resized
input; anchors are centred on ``(x * stride, y * stride)`` (offset 0) and flattened in
``(y, x, anchor)`` order; box deltas ``(dx, dy, dw, dh)`` are relative to the box centre
and size with no ``+1``.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import batched_nms

from .config import CSEConfig

__all__ = ["AnchorGenerator", "RPN", "StandardRPNHead", "apply_deltas", "clip_boxes"]

#: ``dw``/``dh`` clamp: a box never grows by more than 1000/16 per decoding step.
SCALE_CLAMP = math.log(1000.0 / 16)


def apply_deltas(deltas: torch.Tensor, boxes: torch.Tensor,
                 weights: tuple[float, float, float, float]) -> torch.Tensor:
    """Decode ``deltas`` [R, 4k] relative to ``boxes`` [R, 4] into boxes [R, 4k].

    ``ctr + (d / w) * size`` for the centre, ``size * exp(min(d / w, log(1000/16)))`` for
    the size, corners at ``ctr -/+ size / 2``.
    """
    deltas = deltas.float()
    boxes = boxes.to(deltas.dtype)
    widths = boxes[:, 2] - boxes[:, 0]
    heights = boxes[:, 3] - boxes[:, 1]
    ctr_x = boxes[:, 0] + 0.5 * widths
    ctr_y = boxes[:, 1] + 0.5 * heights
    wx, wy, ww, wh = weights
    dx = deltas[:, 0::4] / wx
    dy = deltas[:, 1::4] / wy
    dw = torch.clamp(deltas[:, 2::4] / ww, max=SCALE_CLAMP)
    dh = torch.clamp(deltas[:, 3::4] / wh, max=SCALE_CLAMP)
    pred_ctr_x = dx * widths[:, None] + ctr_x[:, None]
    pred_ctr_y = dy * heights[:, None] + ctr_y[:, None]
    pred_w = torch.exp(dw) * widths[:, None]
    pred_h = torch.exp(dh) * heights[:, None]
    x1 = pred_ctr_x - 0.5 * pred_w
    y1 = pred_ctr_y - 0.5 * pred_h
    x2 = pred_ctr_x + 0.5 * pred_w
    y2 = pred_ctr_y + 0.5 * pred_h
    return torch.stack((x1, y1, x2, y2), dim=-1).reshape(deltas.shape)


def clip_boxes(boxes: torch.Tensor, size_hw: tuple[int, int]) -> torch.Tensor:
    """Clamp x to ``[0, W]`` and y to ``[0, H]`` (returns a new tensor)."""
    h, w = size_hw
    x1 = boxes[..., 0].clamp(min=0, max=w)
    y1 = boxes[..., 1].clamp(min=0, max=h)
    x2 = boxes[..., 2].clamp(min=0, max=w)
    y2 = boxes[..., 3].clamp(min=0, max=h)
    return torch.stack((x1, y1, x2, y2), dim=-1)


class AnchorGenerator(nn.Module):
    """One anchor size per level, shared aspect ratios (h / w), anchors at ``(x, y) * stride + offset``."""

    def __init__(self, sizes: tuple[float, ...], aspect_ratios: tuple[float, ...],
                 strides: tuple[int, ...], offset: float = 0.0) -> None:
        super().__init__()
        self.strides = tuple(strides)
        self.offset = float(offset)
        for i, size in enumerate(sizes):
            self.register_buffer(f"cell_anchors_{i}", self.cell_anchors(float(size), aspect_ratios),
                                 persistent=False)
        self.num_anchors = len(aspect_ratios)

    @staticmethod
    def cell_anchors(size: float, aspect_ratios: tuple[float, ...]) -> torch.Tensor:
        """``[A, 4]`` anchors ``(-w/2, -h/2, w/2, h/2)`` with ``w = sqrt(size^2 / r)``, ``h = r * w``."""
        anchors = []
        for ratio in aspect_ratios:
            w = math.sqrt(size ** 2.0 / ratio)
            h = ratio * w
            anchors.append([-w / 2.0, -h / 2.0, w / 2.0, h / 2.0])
        return torch.tensor(anchors)

    def grid_anchors(self, level: int, grid_hw: tuple[int, int]) -> torch.Tensor:
        """``[H * W * A, 4]`` anchors of level index ``level`` (0 = p2) in (y, x, a) order."""
        base = getattr(self, f"cell_anchors_{level}")
        stride = self.strides[level]
        h, w = grid_hw
        shifts_x = torch.arange(self.offset * stride, w * stride, step=stride, dtype=torch.float32,
                                device=base.device)
        shifts_y = torch.arange(self.offset * stride, h * stride, step=stride, dtype=torch.float32,
                                device=base.device)
        shift_y, shift_x = torch.meshgrid(shifts_y, shifts_x, indexing="ij")
        shift_x, shift_y = shift_x.reshape(-1), shift_y.reshape(-1)
        shifts = torch.stack((shift_x, shift_y, shift_x, shift_y), dim=1)
        return (shifts.view(-1, 1, 4) + base.view(1, -1, 4)).reshape(-1, 4)


class StandardRPNHead(nn.Module):
    """Shared 3x3 conv + ReLU, then 1x1 objectness logits [A] and box deltas [4A] per position."""

    def __init__(self, channels: int, num_anchors: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.objectness_logits = nn.Conv2d(channels, num_anchors, 1)
        self.anchor_deltas = nn.Conv2d(channels, num_anchors * 4, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = F.relu(self.conv(x))
        return self.objectness_logits(t), self.anchor_deltas(t)


class RPN(nn.Module):
    """Region proposals at inference: per-level top-k, clip, drop empty, per-level NMS, global top-k."""

    in_features = ("p2", "p3", "p4", "p5", "p6")

    def __init__(self, cfg: CSEConfig) -> None:
        super().__init__()
        self.rpn_head = StandardRPNHead(cfg.fpn_out_channels, len(cfg.anchor_aspect_ratios))
        self.anchor_generator = AnchorGenerator(cfg.anchor_sizes, cfg.anchor_aspect_ratios,
                                                strides=(4, 8, 16, 32, 64), offset=cfg.anchor_offset)
        self.weights = cfg.rpn_bbox_reg_weights
        self.nms_thresh = cfg.rpn_nms_thresh
        self.pre_nms_topk = cfg.rpn_pre_nms_topk
        self.post_nms_topk = cfg.rpn_post_nms_topk
        self.min_box_size = cfg.rpn_min_box_size

    def forward(self, features: dict[str, torch.Tensor], image_size_hw: tuple[int, int],
                trace: dict | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Proposals for one image.

        Args:
            features: ``p2..p6`` maps, batch size 1.
            image_size_hw: unpadded size of the resized input, for clipping.
            trace: optional dict receiving intermediate tensors (for conformance tests).

        Returns:
            boxes float32 [R, 4] (R <= post-NMS top-k), objectness logits [R], sorted by logit.
        """
        boxes_all, logits_all, levels_all = [], [], []
        for level, name in enumerate(self.in_features):
            feat = features[name]
            if feat.shape[0] != 1:
                raise ValueError(f"one image at a time, got batch size {feat.shape[0]}")
            logits, deltas = self.rpn_head(feat)
            num_a, (h, w) = self.anchor_generator.num_anchors, feat.shape[-2:]
            logits = logits.permute(0, 2, 3, 1).flatten().float()  # [H*W*A], (y, x, a) order; fp32 under autocast
            deltas = deltas.view(num_a, 4, h, w).permute(2, 3, 0, 1).reshape(-1, 4)  # [H*W*A, 4]
            anchors = self.anchor_generator.grid_anchors(level, (h, w))
            k = min(self.pre_nms_topk, logits.numel())
            top_logits, top_idx = logits.topk(k)
            # decoding is element-wise, so decoding only the top-k equals decoding all first
            decoded = apply_deltas(deltas[top_idx], anchors[top_idx], self.weights)
            if trace is not None:
                trace[f"rpn_objectness_logits_{name}"] = logits
                trace[f"rpn_pre_nms_topk_idx_{name}"] = top_idx
                trace[f"rpn_pre_nms_topk_logits_{name}"] = top_logits
                trace[f"rpn_pre_nms_topk_anchors_{name}"] = anchors[top_idx]
                trace[f"rpn_pre_nms_topk_deltas_{name}"] = deltas[top_idx]
                trace[f"rpn_pre_nms_topk_decoded_{name}"] = decoded
                trace[f"rpn_cell_anchors_{name}"] = getattr(self.anchor_generator, f"cell_anchors_{level}")
                trace[f"rpn_num_anchors_{name}"] = anchors.shape[0]
            boxes_all.append(decoded)
            logits_all.append(top_logits)
            levels_all.append(torch.full((k,), level, dtype=torch.int64, device=decoded.device))
        boxes = torch.cat(boxes_all)
        logits = torch.cat(logits_all)
        levels = torch.cat(levels_all)
        valid = torch.isfinite(boxes).all(dim=1) & torch.isfinite(logits)
        if not bool(valid.all()):
            boxes, logits, levels = boxes[valid], logits[valid], levels[valid]
        boxes = clip_boxes(boxes, image_size_hw)
        nonempty = ((boxes[:, 2] - boxes[:, 0]) > self.min_box_size) & \
                   ((boxes[:, 3] - boxes[:, 1]) > self.min_box_size)
        if not bool(nonempty.all()):
            boxes, logits, levels = boxes[nonempty], logits[nonempty], levels[nonempty]
        keep = batched_nms(boxes, logits, levels, self.nms_thresh)[: self.post_nms_topk]
        return boxes[keep], logits[keep]
