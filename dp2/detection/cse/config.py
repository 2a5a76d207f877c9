"""Settings of the DensePose CSE model, as a small frozen dataclass.

:class:`CSEConfig` holds every value that changes shapes or numbers at inference. Its
defaults are the official ``densepose_rcnn_R_101_FPN_DL_soft_s1x`` model as DeepPrivacy2
runs it (score threshold 0.3). :func:`config_from_detectron2_yaml` translates a detectron2
yaml (a ``cfg.dump()`` or a file with ``_BASE_`` chains) into a :class:`CSEConfig`; it is
parsed with ``yaml.safe_load`` and options this implementation does not cover raise
``ValueError`` instead of being ignored.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping

__all__ = ["CSEConfig", "config_from_detectron2_yaml"]

_RESNET_BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}


@dataclass(frozen=True)
class CSEConfig:
    """Inference settings of a DensePose CSE R-CNN (ResNet-FPN, DeepLab head, embedding predictor).

    Defaults: the official ``densepose_rcnn_R_101_FPN_DL_soft_s1x`` with DP2's settings.
    """

    # -- input (INPUT.*, MODEL.PIXEL_*) --
    pixel_mean: tuple[float, float, float] = (103.53, 116.28, 123.675)  # BGR, 0..255 scale
    pixel_std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    min_size_test: int = 800             # short side after resizing
    max_size_test: int = 1333            # cap on the long side
    size_divisibility: int = 32          # zero padding (after normalisation) to this multiple
    # -- ResNet (MODEL.RESNETS.*) --
    resnet_depth: int = 101
    stem_out_channels: int = 64
    res2_out_channels: int = 256
    num_groups: int = 1
    width_per_group: int = 64
    stride_in_1x1: bool = True
    res5_dilation: int = 1
    frozen_bn_eps: float = 1e-5
    # -- FPN --
    fpn_out_channels: int = 256
    # -- anchors / RPN --
    anchor_sizes: tuple[float, ...] = (32.0, 64.0, 128.0, 256.0, 512.0)  # one per level p2..p6
    anchor_aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)  # h / w
    anchor_offset: float = 0.0
    rpn_bbox_reg_weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)
    rpn_nms_thresh: float = 0.7
    rpn_pre_nms_topk: int = 1000         # per level
    rpn_post_nms_topk: int = 1000        # in total
    rpn_min_box_size: float = 0.0
    # -- box head (ROI_HEADS.*, ROI_BOX_HEAD.*) --
    num_classes: int = 1
    box_fc_dim: int = 1024
    box_num_fc: int = 2
    box_pooler_resolution: int = 7
    box_pooler_sampling_ratio: int = 2
    box_bbox_reg_weights: tuple[float, float, float, float] = (10.0, 10.0, 5.0, 5.0)
    score_thresh: float = 0.3
    nms_thresh: float = 0.5
    detections_per_image: int = 100
    # -- DensePose decoder / pooler / DeepLab head / predictor (ROI_DENSEPOSE_HEAD.*) --
    decoder_conv_dims: int = 256
    decoder_num_classes: int = 256
    decoder_common_stride: int = 4       # only 4 (the p2 resolution) is supported
    dp_pooler_resolution: int = 28
    dp_pooler_sampling_ratio: int = 2
    dp_head_dim: int = 512               # CONV_HEAD_DIM
    dp_head_kernel: int = 3
    dp_num_stacked_convs: int = 8
    aspp_dilations: tuple[int, int, int] = (6, 12, 56)  # hard-coded in DensePose
    gn_groups: int = 32
    deconv_kernel: int = 4
    up_scale: int = 2
    num_coarse_segm_channels: int = 2
    embed_size: int = 16
    # -- embedder (CSE.EMBEDDERS) --
    mesh_name: str = "smpl_27554"
    num_vertices: int = 27554
    vertex_feature_dim: int = 256

    def __post_init__(self) -> None:
        if self.resnet_depth not in _RESNET_BLOCKS:
            raise ValueError(f"resnet_depth must be one of {sorted(_RESNET_BLOCKS)}, got {self.resnet_depth}")
        if len(self.anchor_sizes) != 5:
            raise ValueError(f"anchor_sizes needs one size per level p2..p6 (5), got {self.anchor_sizes}")
        if self.res5_dilation not in (1, 2):
            raise ValueError(f"res5_dilation must be 1 or 2, got {self.res5_dilation}")
        if self.deconv_kernel % 2:
            raise ValueError(f"deconv_kernel must be even, got {self.deconv_kernel}")
        for name in ("stem_out_channels", "res2_out_channels", "width_per_group", "fpn_out_channels",
                     "box_fc_dim", "decoder_conv_dims", "decoder_num_classes", "dp_head_dim",
                     "embed_size", "num_vertices", "vertex_feature_dim", "num_classes"):
            if int(getattr(self, name)) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")

    @property
    def resnet_blocks(self) -> tuple[int, int, int, int]:
        """Bottleneck blocks per stage res2..res5."""
        return _RESNET_BLOCKS[self.resnet_depth]

    @property
    def heatmap_size(self) -> int:
        """Side of the output E / coarse-segm grid (112 for the official model)."""
        return self.dp_pooler_resolution * 2 * self.up_scale


# ------------------------------------------------------------------------------------------
# detectron2 yaml translation

def _deep_merge(base: dict, update: Mapping) -> dict:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _load_yaml_chain(path: Path, depth: int = 0) -> dict:
    import yaml

    if depth > 10:
        raise ValueError(f"{path}: _BASE_ chain deeper than 10 files")
    with open(path, encoding="utf-8") as fh:
        data = yaml.safe_load(fh) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    base = data.pop("_BASE_", None)
    if base is None:
        return data
    base_path = Path(base)
    if not base_path.is_absolute():
        base_path = path.parent / base_path
    return _deep_merge(_load_yaml_chain(base_path, depth + 1), data)


class _Reader:
    """Nested-key access with defaults, collecting unsupported settings."""

    def __init__(self, data: Mapping, source: str) -> None:
        self.data = data
        self.source = source
        self.problems: list[str] = []

    def get(self, dotted: str, default: Any = None) -> Any:
        node: Any = self.data
        for part in dotted.split("."):
            if not isinstance(node, Mapping) or part not in node:
                return default
            node = node[part]
        return node

    def require(self, dotted: str, allowed: tuple, default: Any) -> Any:
        value = self.get(dotted, default)
        if value not in allowed:
            self.problems.append(f"{dotted}={value!r} (supported: {', '.join(map(repr, allowed))})")
        return value


def config_from_detectron2_yaml(path: str | os.PathLike, **overrides: Any) -> CSEConfig:
    """Translate a DensePose CSE detectron2 yaml into a :class:`CSEConfig`.

    Values missing from the yaml keep detectron2/DensePose's defaults (which equal the
    official model's). ``_BASE_`` chains are followed relative to each file.

    Args:
        path: the yaml file (e.g. a ``cfg.dump()``).
        overrides: :class:`CSEConfig` fields to set after the translation
            (e.g. ``score_thresh=0.5``).

    Raises:
        ValueError: the yaml selects an architecture or option this implementation does
            not provide (listed in the message), or an override names an unknown field.
    """
    path = Path(path)
    r = _Reader(_load_yaml_chain(path), str(path))
    m = "MODEL."
    r.require(m + "META_ARCHITECTURE", ("GeneralizedRCNN",), "GeneralizedRCNN")
    r.require(m + "BACKBONE.NAME", ("build_resnet_fpn_backbone",), "build_resnet_fpn_backbone")
    r.require(m + "RESNETS.NORM", ("FrozenBN",), "FrozenBN")
    r.require(m + "RESNETS.OUT_FEATURES", (["res2", "res3", "res4", "res5"],), ["res2", "res3", "res4", "res5"])
    deform = r.get(m + "RESNETS.DEFORM_ON_PER_STAGE", [False] * 4)
    if any(deform):
        r.problems.append(f"{m}RESNETS.DEFORM_ON_PER_STAGE={deform!r} (deformable convs are not supported)")
    r.require(m + "FPN.IN_FEATURES", (["res2", "res3", "res4", "res5"],), ["res2", "res3", "res4", "res5"])
    r.require(m + "FPN.NORM", ("",), "")
    r.require(m + "FPN.FUSE_TYPE", ("sum",), "sum")
    r.require(m + "ANCHOR_GENERATOR.NAME", ("DefaultAnchorGenerator",), "DefaultAnchorGenerator")
    r.require(m + "PROPOSAL_GENERATOR.NAME", ("RPN",), "RPN")
    r.require(m + "RPN.HEAD_NAME", ("StandardRPNHead",), "StandardRPNHead")
    r.require(m + "RPN.IN_FEATURES", (["p2", "p3", "p4", "p5", "p6"],), ["p2", "p3", "p4", "p5", "p6"])
    r.require(m + "RPN.CONV_DIMS", ([-1],), [-1])
    r.require(m + "ROI_HEADS.NAME", ("DensePoseROIHeads",), "DensePoseROIHeads")
    r.require(m + "ROI_HEADS.IN_FEATURES", (["p2", "p3", "p4", "p5"],), ["p2", "p3", "p4", "p5"])
    r.require(m + "ROI_BOX_HEAD.NAME", ("FastRCNNConvFCHead",), "FastRCNNConvFCHead")
    r.require(m + "ROI_BOX_HEAD.NUM_CONV", (0,), 0)
    r.require(m + "ROI_BOX_HEAD.POOLER_TYPE", ("ROIAlign",), "ROIAlign")
    r.require(m + "ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG", (False,), False)
    r.require(m + "ROI_BOX_HEAD.USE_SIGMOID_CE", (False,), False)
    r.require(m + "MASK_ON", (False,), False)
    r.require(m + "KEYPOINT_ON", (False,), False)
    r.require(m + "DENSEPOSE_ON", (True,), True)
    dp = m + "ROI_DENSEPOSE_HEAD."
    r.require(dp + "NAME", ("DensePoseDeepLabHead",), "DensePoseDeepLabHead")
    r.require(dp + "PREDICTOR_NAME", ("DensePoseEmbeddingPredictor",), "DensePoseEmbeddingPredictor")
    r.require(dp + "DEEPLAB.NORM", ("GN",), "GN")
    r.require(dp + "DEEPLAB.NONLOCAL_ON", (0, False), 0)
    r.require(dp + "DECODER_ON", (True,), True)
    r.require(dp + "DECODER_NORM", ("",), "")
    r.require(dp + "POOLER_TYPE", ("ROIAlign",), "ROIAlign")
    r.require(dp + "SEGM_CONFIDENCE.ENABLED", (False,), False)
    r.require(dp + "UV_CONFIDENCE.ENABLED", (False,), False)
    r.require("INPUT.FORMAT", ("BGR",), "BGR")
    r.require("TEST.AUG.ENABLED", (False,), False)
    r.require(dp + "DECODER_COMMON_STRIDE", (4,), 4)

    embedders = r.get(dp + "CSE.EMBEDDERS", {}) or {}
    mapping = r.get("DATASETS.CLASS_TO_MESH_NAME_MAPPING", {"0": "smpl_27554"}) or {"0": "smpl_27554"}
    mesh_name = mapping.get("0", mapping.get(0, "smpl_27554"))
    if len(embedders) != 1 or mesh_name not in embedders:
        r.problems.append(f"{dp}CSE.EMBEDDERS must hold exactly the mesh of class 0 ({mesh_name!r}), "
                          f"got {sorted(embedders)}")
        embedder = {}
    else:
        embedder = embedders[mesh_name]
        if embedder.get("TYPE", "vertex_feature") != "vertex_feature":
            r.problems.append(f"embedder TYPE={embedder.get('TYPE')!r} (supported: 'vertex_feature')")
    if r.problems:
        raise ValueError(f"{path}: unsupported settings: " + "; ".join(r.problems))

    def tup(value, cast=float):
        return tuple(cast(v) for v in value)

    anchor_sizes = r.get(m + "ANCHOR_GENERATOR.SIZES", [[32], [64], [128], [256], [512]])
    if any(len(s) != 1 for s in anchor_sizes):
        raise ValueError(f"{path}: one anchor size per level is supported, got {anchor_sizes}")
    ratios = r.get(m + "ANCHOR_GENERATOR.ASPECT_RATIOS", [[0.5, 1.0, 2.0]])
    if len(ratios) != 1:
        raise ValueError(f"{path}: one list of aspect ratios shared by all levels is supported, got {ratios}")
    min_size = r.get("INPUT.MIN_SIZE_TEST", 800)
    if isinstance(min_size, (list, tuple)):
        min_size = min_size[-1]
    if not min_size:
        raise ValueError(f"{path}: INPUT.MIN_SIZE_TEST=0 (no resizing) is not supported")

    values = dict(
        pixel_mean=tup(r.get(m + "PIXEL_MEAN", [103.53, 116.28, 123.675])),
        pixel_std=tup(r.get(m + "PIXEL_STD", [1.0, 1.0, 1.0])),
        min_size_test=int(min_size),
        max_size_test=int(r.get("INPUT.MAX_SIZE_TEST", 1333)),
        resnet_depth=int(r.get(m + "RESNETS.DEPTH", 50)),
        stem_out_channels=int(r.get(m + "RESNETS.STEM_OUT_CHANNELS", 64)),
        res2_out_channels=int(r.get(m + "RESNETS.RES2_OUT_CHANNELS", 256)),
        num_groups=int(r.get(m + "RESNETS.NUM_GROUPS", 1)),
        width_per_group=int(r.get(m + "RESNETS.WIDTH_PER_GROUP", 64)),
        stride_in_1x1=bool(r.get(m + "RESNETS.STRIDE_IN_1X1", True)),
        res5_dilation=int(r.get(m + "RESNETS.RES5_DILATION", 1)),
        fpn_out_channels=int(r.get(m + "FPN.OUT_CHANNELS", 256)),
        anchor_sizes=tuple(float(s[0]) for s in anchor_sizes),
        anchor_aspect_ratios=tup(ratios[0]),
        anchor_offset=float(r.get(m + "ANCHOR_GENERATOR.OFFSET", 0.0)),
        rpn_bbox_reg_weights=tup(r.get(m + "RPN.BBOX_REG_WEIGHTS", [1.0, 1.0, 1.0, 1.0])),
        rpn_nms_thresh=float(r.get(m + "RPN.NMS_THRESH", 0.7)),
        rpn_pre_nms_topk=int(r.get(m + "RPN.PRE_NMS_TOPK_TEST", 1000)),
        rpn_post_nms_topk=int(r.get(m + "RPN.POST_NMS_TOPK_TEST", 1000)),
        rpn_min_box_size=float(r.get(m + "PROPOSAL_GENERATOR.MIN_SIZE", 0)),
        num_classes=int(r.get(m + "ROI_HEADS.NUM_CLASSES", 1)),
        box_fc_dim=int(r.get(m + "ROI_BOX_HEAD.FC_DIM", 1024)),
        box_num_fc=int(r.get(m + "ROI_BOX_HEAD.NUM_FC", 2)),
        box_pooler_resolution=int(r.get(m + "ROI_BOX_HEAD.POOLER_RESOLUTION", 7)),
        box_pooler_sampling_ratio=int(r.get(m + "ROI_BOX_HEAD.POOLER_SAMPLING_RATIO", 2)),
        box_bbox_reg_weights=tup(r.get(m + "ROI_BOX_HEAD.BBOX_REG_WEIGHTS", [10.0, 10.0, 5.0, 5.0])),
        score_thresh=float(r.get(m + "ROI_HEADS.SCORE_THRESH_TEST", 0.05)),
        nms_thresh=float(r.get(m + "ROI_HEADS.NMS_THRESH_TEST", 0.5)),
        detections_per_image=int(r.get("TEST.DETECTIONS_PER_IMAGE", 100)),
        decoder_conv_dims=int(r.get(dp + "DECODER_CONV_DIMS", 256)),
        decoder_num_classes=int(r.get(dp + "DECODER_NUM_CLASSES", 256)),
        decoder_common_stride=int(r.get(dp + "DECODER_COMMON_STRIDE", 4)),
        dp_pooler_resolution=int(r.get(dp + "POOLER_RESOLUTION", 28)),
        dp_pooler_sampling_ratio=int(r.get(dp + "POOLER_SAMPLING_RATIO", 2)),
        dp_head_dim=int(r.get(dp + "CONV_HEAD_DIM", 512)),
        dp_head_kernel=int(r.get(dp + "CONV_HEAD_KERNEL", 3)),
        dp_num_stacked_convs=int(r.get(dp + "NUM_STACKED_CONVS", 8)),
        deconv_kernel=int(r.get(dp + "DECONV_KERNEL", 4)),
        up_scale=int(r.get(dp + "UP_SCALE", 2)),
        num_coarse_segm_channels=int(r.get(dp + "NUM_COARSE_SEGM_CHANNELS", 2)),
        embed_size=int(r.get(dp + "CSE.EMBED_SIZE", 16)),
        mesh_name=str(mesh_name),
        num_vertices=int(embedder.get("NUM_VERTICES", 27554)),
        vertex_feature_dim=int(embedder.get("FEATURE_DIM", 256)),
    )
    known = {f.name for f in fields(CSEConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown CSEConfig fields: {unknown}")
    values.update(overrides)
    return CSEConfig(**values)
