"""Box head and DensePose CSE heads (inference only).

Names follow detectron2/DensePose (``roi_heads.box_head.fc1``, ``roi_heads.decoder.p4.2``,
``roi_heads.densepose_head.ASPP.convs.4.1``, ``roi_heads.densepose_head.body_conv_fcn3.norm``,
``roi_heads.densepose_predictor.embed_lowres``, ``roi_heads.embedder.embedder_smpl_27554``),
so the official checkpoint loads without renaming.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import batched_nms, roi_align

from .backbone import NormConv2d
from .config import CSEConfig
from .rpn import apply_deltas, clip_boxes

__all__ = ["ASPP", "BoxHead", "BoxPredictor", "CSEROIHeads", "DensePoseDeepLabHead", "DensePoseDecoder",
           "DensePoseEmbeddingPredictor", "Embedder", "VertexFeatureEmbedder", "assign_boxes_to_levels",
           "multilevel_roi_align", "normalize_embeddings"]


def assign_boxes_to_levels(boxes: torch.Tensor, min_level: int = 2, max_level: int = 5,
                           canonical_box_size: float = 224.0, canonical_level: int = 4) -> torch.Tensor:
    """FPN level index (0 = ``min_level``) of each box [R, 4]: ``floor(4 + log2(sqrt(area) / 224 + 1e-8))``, clamped."""
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    level = torch.floor(canonical_level + torch.log2(torch.sqrt(area) / canonical_box_size + 1e-8))
    return torch.clamp(level, min=min_level, max=max_level).to(torch.int64) - min_level


def multilevel_roi_align(features: list[torch.Tensor], boxes: torch.Tensor, strides: list[int],
                         output_size: int, sampling_ratio: int) -> torch.Tensor:
    """ROIAlign (``aligned=False``) of each box [R, 4] on its FPN level; one image.

    Returns:
        float [R, C, output_size, output_size].
    """
    rois = torch.cat([boxes.new_zeros(boxes.shape[0], 1), boxes], dim=1)  # [R, 5], batch index 0
    # Pool in float32 whatever the feature dtype (bf16 under autocast): box coordinates in bf16
    # would be off by up to 4 px at 1000 px. A no-op for float32 features.
    features = [f.float() for f in features]
    rois = rois.float()
    if len(features) == 1:
        return roi_align(features[0], rois.to(features[0].dtype), output_size, 1.0 / strides[0],
                         sampling_ratio, aligned=False)
    min_level = int(math.log2(strides[0]))
    levels = assign_boxes_to_levels(boxes, min_level, min_level + len(features) - 1)
    out = features[0].new_zeros((boxes.shape[0], features[0].shape[1], output_size, output_size))
    for level, (feat, stride) in enumerate(zip(features, strides)):
        inds = torch.nonzero(levels == level).squeeze(1)
        if inds.numel():
            out[inds] = roi_align(feat, rois[inds].to(feat.dtype), output_size, 1.0 / stride, sampling_ratio,
                                  aligned=False)
    return out


class BoxHead(nn.Module):
    """Flatten + ``num_fc`` x (Linear + ReLU)."""

    def __init__(self, in_features: int, fc_dim: int, num_fc: int) -> None:
        super().__init__()
        self.num_fc = num_fc
        for i in range(num_fc):
            self.add_module(f"fc{i + 1}", nn.Linear(in_features if i == 0 else fc_dim, fc_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(x, start_dim=1)
        for i in range(self.num_fc):
            x = F.relu(getattr(self, f"fc{i + 1}")(x))
        return x


class BoxPredictor(nn.Module):
    """Class logits [K + 1] (last = background) and class-specific box deltas [4K]."""

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        self.cls_score = nn.Linear(in_features, num_classes + 1)
        self.bbox_pred = nn.Linear(in_features, num_classes * 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.cls_score(x), self.bbox_pred(x)


class DensePoseDecoder(nn.Module):
    """Sum of per-level conv heads brought to stride 4, then a 1x1 ``predictor`` conv.

    p2: conv; p3: conv, up; p4: 2 x (conv, up); p5: 3 x (conv, up); every conv is 3x3 +
    ReLU, every ``up`` bilinear x2 (``align_corners=False``).
    """

    in_features = ("p2", "p3", "p4", "p5")

    def __init__(self, in_channels: int, conv_dims: int, num_classes: int, common_stride: int = 4) -> None:
        super().__init__()
        for name, stride in zip(self.in_features, (4, 8, 16, 32)):
            length = max(1, int(math.log2(stride) - math.log2(common_stride)))
            layers: list[nn.Module] = []
            for k in range(length):
                layers.append(NormConv2d(in_channels if k == 0 else conv_dims, conv_dims, 3, padding=1,
                                         activation=F.relu))
                if stride != common_stride:
                    layers.append(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False))
            self.add_module(name, nn.Sequential(*layers))
        self.predictor = nn.Conv2d(conv_dims, num_classes, 1)

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        x = None
        for name in self.in_features:
            y = getattr(self, name)(features[name])
            x = y if x is None else x + y
        return self.predictor(x)


class _ASPPPooling(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int, groups: int) -> None:
        super().__init__(nn.AdaptiveAvgPool2d(1), nn.Conv2d(in_channels, out_channels, 1, bias=False),
                         nn.GroupNorm(groups, out_channels), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        return F.interpolate(super().forward(x), size=size, mode="bilinear", align_corners=False)


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: 1x1, three dilated 3x3, image pooling; concat; 1x1 + ReLU."""

    def __init__(self, in_channels: int, dilations: tuple[int, ...], out_channels: int, groups: int) -> None:
        super().__init__()
        convs: list[nn.Module] = [nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, bias=False),
                                                nn.GroupNorm(groups, out_channels), nn.ReLU())]
        for d in dilations:
            convs.append(nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, padding=d, dilation=d, bias=False),
                                       nn.GroupNorm(groups, out_channels), nn.ReLU()))
        convs.append(_ASPPPooling(in_channels, out_channels, groups))
        self.convs = nn.ModuleList(convs)
        self.project = nn.Sequential(nn.Conv2d(len(convs) * out_channels, out_channels, 1, bias=False), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(torch.cat([conv(x) for conv in self.convs], dim=1))


class DensePoseDeepLabHead(nn.Module):
    """ASPP (C -> C), then ``num_convs`` x (3x3 conv without bias, GroupNorm, ReLU) to ``hidden_dim``."""

    def __init__(self, in_channels: int, hidden_dim: int, *, kernel_size: int = 3, num_convs: int = 8,
                 dilations: tuple[int, ...] = (6, 12, 56), groups: int = 32) -> None:
        super().__init__()
        self.ASPP = ASPP(in_channels, dilations, in_channels, groups)
        self.num_convs = num_convs
        n_channels = in_channels
        for i in range(num_convs):
            self.add_module(f"body_conv_fcn{i + 1}",
                            NormConv2d(n_channels, hidden_dim, kernel_size, padding=kernel_size // 2, bias=False,
                                       norm=nn.GroupNorm(groups, hidden_dim)))
            n_channels = hidden_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.ASPP(x)
        for i in range(self.num_convs):
            x = F.relu(getattr(self, f"body_conv_fcn{i + 1}")(x))
        return x


class DensePoseEmbeddingPredictor(nn.Module):
    """Transposed 4x4/2 convs to coarse segmentation and embedding, then bilinear x``up_scale``."""

    def __init__(self, in_channels: int, num_segm_channels: int, embed_size: int, kernel: int = 4,
                 up_scale: int = 2) -> None:
        super().__init__()
        pad = kernel // 2 - 1
        self.coarse_segm_lowres = nn.ConvTranspose2d(in_channels, num_segm_channels, kernel, stride=2, padding=pad)
        self.embed_lowres = nn.ConvTranspose2d(in_channels, embed_size, kernel, stride=2, padding=pad)
        self.up_scale = up_scale

    def upsample(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=self.up_scale, mode="bilinear", align_corners=False)

    def forward(self, x: torch.Tensor, trace: dict | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        segm_lowres = self.coarse_segm_lowres(x)
        embed_lowres = self.embed_lowres(x)
        if trace is not None:
            trace["dp_coarse_segm_lowres"] = segm_lowres
            trace["dp_embed_lowres"] = embed_lowres
        return self.upsample(segm_lowres), self.upsample(embed_lowres)


def normalize_embeddings(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Row-wise L2 normalisation with the norm clamped at ``eps``."""
    return x / torch.clamp(x.norm(p=None, dim=1, keepdim=True), min=eps)


class VertexFeatureEmbedder(nn.Module):
    """Mesh vertex embeddings ``normalize(features [V, K] @ embeddings [K, D])``."""

    def __init__(self, num_vertices: int, feature_dim: int, embed_dim: int) -> None:
        super().__init__()
        self.embeddings = nn.Parameter(torch.zeros(feature_dim, embed_dim))
        self.register_buffer("features", torch.zeros(num_vertices, feature_dim))

    def forward(self) -> torch.Tensor:
        return normalize_embeddings(self.features.mm(self.embeddings))


class Embedder(nn.Module):
    """Holds one :class:`VertexFeatureEmbedder` per mesh, as ``embedder_<mesh name>``."""

    def __init__(self, mesh_name: str, num_vertices: int, feature_dim: int, embed_dim: int) -> None:
        super().__init__()
        self.mesh_names = (mesh_name,)
        self.add_module(f"embedder_{mesh_name}", VertexFeatureEmbedder(num_vertices, feature_dim, embed_dim))

    def forward(self, mesh_name: str) -> torch.Tensor:
        if mesh_name not in self.mesh_names:
            raise KeyError(f"unknown mesh {mesh_name!r}; known: {list(self.mesh_names)}")
        return getattr(self, f"embedder_{mesh_name}")()


class CSEROIHeads(nn.Module):
    """Box head + box post-processing, then DensePose CSE on the detected boxes."""

    box_in_features = ("p2", "p3", "p4", "p5")

    def __init__(self, cfg: CSEConfig) -> None:
        super().__init__()
        c = cfg.fpn_out_channels
        r = cfg.box_pooler_resolution
        self.box_head = BoxHead(c * r * r, cfg.box_fc_dim, cfg.box_num_fc)
        self.box_predictor = BoxPredictor(cfg.box_fc_dim, cfg.num_classes)
        self.decoder = DensePoseDecoder(c, cfg.decoder_conv_dims, cfg.decoder_num_classes, cfg.decoder_common_stride)
        self.densepose_head = DensePoseDeepLabHead(
            cfg.decoder_num_classes, cfg.dp_head_dim, kernel_size=cfg.dp_head_kernel,
            num_convs=cfg.dp_num_stacked_convs, dilations=cfg.aspp_dilations, groups=cfg.gn_groups)
        self.densepose_predictor = DensePoseEmbeddingPredictor(
            cfg.dp_head_dim, cfg.num_coarse_segm_channels, cfg.embed_size, cfg.deconv_kernel, cfg.up_scale)
        self.embedder = Embedder(cfg.mesh_name, cfg.num_vertices, cfg.vertex_feature_dim, cfg.embed_size)
        self.cfg = cfg

    def forward_box(self, features: dict[str, torch.Tensor], proposals: torch.Tensor,
                    image_size_hw: tuple[int, int], score_thresh: float,
                    trace: dict | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Detections of one image from its proposals.

        Returns:
            boxes float32 [N, 4] (resized-input pixels, clipped), scores [N], classes int64 [N];
            sorted by descending score, at most ``detections_per_image``.
        """
        cfg = self.cfg
        feats = [features[f] for f in self.box_in_features]
        pooled = multilevel_roi_align(feats, proposals, [4, 8, 16, 32], cfg.box_pooler_resolution,
                                      cfg.box_pooler_sampling_ratio)
        x = self.box_head(pooled)
        logits, deltas = self.box_predictor(x)
        if trace is not None:
            trace["box_pooler_level_of_proposal"] = assign_boxes_to_levels(proposals)
            trace["box_pooled_first16"] = pooled[:16]
            trace["box_head_out"] = x
            trace["box_cls_logits"] = logits
            trace["box_deltas"] = deltas
        num_classes = cfg.num_classes
        boxes = apply_deltas(deltas, proposals, cfg.box_bbox_reg_weights)  # [R, 4K]
        scores = F.softmax(logits, dim=-1)[:, :-1]  # [R, K]
        valid = torch.isfinite(boxes).all(dim=1) & torch.isfinite(scores).all(dim=1)
        if not bool(valid.all()):
            boxes, scores = boxes[valid], scores[valid]
        boxes = clip_boxes(boxes.view(-1, num_classes, 4), image_size_hw)  # [R, K, 4]
        keep_mask = scores > score_thresh
        idx = keep_mask.nonzero()  # [M, 2]: (proposal, class)
        boxes = boxes[keep_mask]
        scores = scores[keep_mask]
        classes = idx[:, 1]
        keep = batched_nms(boxes.float(), scores, classes, cfg.nms_thresh)[: cfg.detections_per_image]
        return boxes[keep], scores[keep], classes[keep]

    def forward_densepose(self, features: dict[str, torch.Tensor], boxes: torch.Tensor,
                          trace: dict | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Coarse segmentation [N, 2, S, S] and embedding [N, D, S, S] for boxes [N, 4] (resized-input pixels).

        Without boxes the whole-image decoder (~140 GFLOP on a 1024-px image, R-101) is skipped:
        its output only feeds the per-box heads. With ``trace`` it always runs (golden stages).
        """
        cfg = self.cfg
        if trace is not None:
            trace["decoder_out"] = self.decoder(features)
        if boxes.shape[0] == 0:
            s, like = cfg.heatmap_size, next(iter(features.values()))
            return (like.new_zeros((0, cfg.num_coarse_segm_channels, s, s)),
                    like.new_zeros((0, cfg.embed_size, s, s)))
        decoded = trace["decoder_out"] if trace is not None else self.decoder(features)
        pooled = multilevel_roi_align([decoded], boxes, [cfg.decoder_common_stride], cfg.dp_pooler_resolution,
                                      cfg.dp_pooler_sampling_ratio)
        head = self.densepose_head(pooled)
        if trace is not None:
            trace["dp_pooled"] = pooled
            trace["dp_head_out"] = head
        return self.densepose_predictor(head, trace)
