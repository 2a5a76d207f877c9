"""DensePose CSE R-CNN (``densepose_rcnn_R_101_FPN_DL_soft_s1x``) in plain PyTorch, inference only.

:class:`CSEModel` reproduces what detectron2 + DensePose compute for one image the way
DeepPrivacy2 feeds it:

1. uint8 RGB ``[3, H, W]`` -> BGR, ``torchvision`` bilinear antialiased resize so the short
   side is 800 and the long side at most 1333 (:func:`resize_shortest_edge_shape`);
2. ``(x - pixel_mean) / pixel_std`` on 0..255 values, zero padding (bottom/right) to a
   multiple of 32;
3. ResNet + FPN, RPN proposals, box head, score threshold / class-wise NMS / top 100;
4. DensePose decoder, ROIAlign 28x28 on the detected boxes, DeepLab head, embedding
   predictor (112x112 coarse segmentation and embedding);
5. boxes scaled back to the original image size, clipped, empty boxes dropped.

The state dict keys equal detectron2's (``backbone.bottom_up.res2.0.conv1.weight``, ...),
so the official model-zoo checkpoint loads directly (see :func:`load_cse_weights`).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .backbone import FPN
from .config import CSEConfig
from .pkl import load_detectron2_pkl
from .roi_heads import CSEROIHeads
from .rpn import RPN

__all__ = ["CSEModel", "CSEModelOutput", "IGNORED_CHECKPOINT_KEYS", "build_cse_model", "load_cse_weights",
           "preprocess_image", "resize_shortest_edge_shape"]

logger = logging.getLogger(__name__)

#: Checkpoint keys that hold no weights (non-persistent buffers in detectron2); skipped on load.
IGNORED_CHECKPOINT_KEYS = ("pixel_mean", "pixel_std", "proposal_generator.anchor_generator.cell_anchors.")


def resize_shortest_edge_shape(height: int, width: int, short_edge: int = 800, max_size: int = 1333) -> tuple[int, int]:
    """Output (H, W) of detectron2's ``ResizeShortestEdge.get_output_shape``.

    The short side becomes ``short_edge``; if the long side then exceeds ``max_size``
    both are scaled down so it equals ``max_size``; each side is rounded with ``int(x + 0.5)``.

    >>> resize_shortest_edge_shape(240, 320)
    (800, 1067)
    >>> resize_shortest_edge_shape(100, 1000)
    (133, 1333)
    """
    size = short_edge * 1.0
    scale = size / min(height, width)
    if height < width:
        new_h, new_w = size, scale * width
    else:
        new_h, new_w = scale * height, size
    if max(new_h, new_w) > max_size:
        scale = max_size * 1.0 / max(new_h, new_w)
        new_h, new_w = new_h * scale, new_w * scale
    return int(new_h + 0.5), int(new_w + 0.5)


def preprocess_image(image: torch.Tensor, cfg: CSEConfig) -> tuple[torch.Tensor, tuple[int, int]]:
    """DP2's CSE input: BGR, resized (bilinear, antialias), normalised, zero-padded to 32.

    Args:
        image: uint8 [3, H, W] RGB (H, W > 0).
        cfg: model settings (pixel mean/std, test sizes, size divisibility).

    Returns:
        float32 [1, 3, Hp, Wp] and the unpadded resized size (h, w).
    """
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.functional import resize

    h, w = resize_shortest_edge_shape(int(image.shape[1]), int(image.shape[2]), cfg.min_size_test,
                                      cfg.max_size_test)
    x = image.flip(0)  # RGB -> BGR
    x = resize(x, [h, w], interpolation=InterpolationMode.BILINEAR, antialias=True)
    mean = torch.tensor(cfg.pixel_mean, dtype=torch.float32, device=x.device).view(3, 1, 1)
    std = torch.tensor(cfg.pixel_std, dtype=torch.float32, device=x.device).view(3, 1, 1)
    x = (x.float() - mean) / std
    d = cfg.size_divisibility
    pad_h, pad_w = (-h) % d, (-w) % d
    if pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h), value=0.0)
    return x[None], (h, w)


@dataclass
class CSEModelOutput:
    """Raw detections of one image (detectron2's ``Instances`` after ``detector_postprocess``).

    Attributes:
        boxes_xyxy: float32 [N, 4], original-image pixels, clipped, non-empty.
        scores: float32 [N].
        classes: int64 [N].
        coarse_segm: float32 [N, 2, S, S] logits on the box-relative grid (S = 112).
        embedding: float32 [N, D, S, S] (D = 16), not normalised.
    """

    boxes_xyxy: torch.Tensor
    scores: torch.Tensor
    classes: torch.Tensor
    coarse_segm: torch.Tensor
    embedding: torch.Tensor


class CSEModel(nn.Module):
    """The DensePose CSE R-CNN. Submodules are named like detectron2's ``GeneralizedRCNN``.

    Args:
        cfg: model settings (:class:`CSEConfig`; defaults = the official R-101 model).
    """

    def __init__(self, cfg: CSEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = FPN(cfg)
        self.proposal_generator = RPN(cfg)
        self.roi_heads = CSEROIHeads(cfg)

    def extra_repr(self) -> str:
        c = self.cfg
        return (f"R-{c.resnet_depth}-FPN({c.fpn_out_channels}), DeepLab head {c.dp_head_dim}x{c.dp_num_stacked_convs}, "
                f"embed {c.embed_size}, mesh {c.mesh_name} ({c.num_vertices} vertices)")

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def embed_map(self) -> torch.Tensor:
        """Normalised mesh vertex embeddings [V, D] of class 0's mesh."""
        return self.roi_heads.embedder(self.cfg.mesh_name)

    @torch.no_grad()
    def forward(self, image: torch.Tensor, score_thresh: float | None = None,
                trace: dict | None = None) -> CSEModelOutput:
        """Detect people and their CSE embeddings in one image.

        Args:
            image: uint8 [3, H, W] RGB on the model's device (H, W > 0).
            score_thresh: box score threshold (strict ``>``); None uses ``cfg.score_thresh``.
            trace: optional dict that receives intermediate tensors (conformance tests).

        Returns:
            :class:`CSEModelOutput` in original-image coordinates.
        """
        if score_thresh is None:
            score_thresh = self.cfg.score_thresh
        orig_h, orig_w = int(image.shape[1]), int(image.shape[2])
        x, size_hw = preprocess_image(image, self.cfg)
        if trace is not None:
            trace["preprocessed"] = x
            trace["preprocessed_image_size_HW"] = size_hw
        features = self.backbone(x, trace)
        if trace is not None:
            trace.update({f"fpn_{k}": v for k, v in features.items()})
        proposals, logits = self.proposal_generator(features, size_hw, trace)
        if trace is not None:
            trace["rpn_proposals"] = proposals
            trace["rpn_proposal_logits"] = logits
        boxes, scores, classes = self.roi_heads.forward_box(features, proposals, size_hw, score_thresh, trace)
        if trace is not None:
            trace["inst_boxes_input_coords"] = boxes
            trace["inst_scores"] = scores
            trace["inst_classes"] = classes
        coarse_segm, embedding = self.roi_heads.forward_densepose(features, boxes, trace)
        # detector_postprocess: scale to the original size, clip, drop empty boxes
        boxes = boxes.clone()
        boxes[:, 0::2] *= orig_w / size_hw[1]
        boxes[:, 1::2] *= orig_h / size_hw[0]
        boxes[:, 0::2] = boxes[:, 0::2].clamp(min=0, max=orig_w)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(min=0, max=orig_h)
        keep = ((boxes[:, 2] - boxes[:, 0]) > 0) & ((boxes[:, 3] - boxes[:, 1]) > 0)
        return CSEModelOutput(boxes_xyxy=boxes[keep], scores=scores[keep], classes=classes[keep],
                              coarse_segm=coarse_segm[keep], embedding=embedding[keep])


def build_cse_model(cfg: CSEConfig | None = None, device: str | torch.device | None = None) -> CSEModel:
    """An untrained :class:`CSEModel` (PyTorch default init, FrozenBN = identity) in eval mode.

    ``device="meta"`` builds it without allocating memory (shapes and names only).
    """
    cfg = cfg or CSEConfig()
    if device is not None:
        with torch.device(device):
            model = CSEModel(cfg)
    else:
        model = CSEModel(cfg)
    return model.eval().requires_grad_(False)


def load_cse_weights(model: CSEModel, source: str | os.PathLike | Mapping[str, np.ndarray | torch.Tensor], *,
                     name: str | None = None) -> CSEModel:
    """Load detectron2 weights into ``model`` in place, strictly.

    Like detectron2, FrozenBN ``running_mean``/``running_var`` missing from the checkpoint
    (old, version-less state dicts) are set to 0 / 1 (with a warning); every other key
    must be present.

    Args:
        model: the model to fill.
        source: a model-zoo ``.pkl`` path (read with the restricted unpickler), or a dict
            ``{detectron2 state-dict name: array or tensor}``.
        name: how to call ``source`` in messages (default: its path, or "state dict").

    Returns:
        ``model``.

    Raises:
        dp2.weights.WeightsError: keys are missing or unexpected, or shapes differ; the
            message lists them. ``pixel_mean``/``pixel_std``/``cell_anchors`` keys are ignored.
        dp2.detection.cse.pkl.UnsafePickleError: the pickle names a refused global.
    """
    from dp2.weights import WeightsError

    from .backbone import FrozenBatchNorm2d

    if isinstance(source, (str, os.PathLike)):
        name = name or str(source)
        try:
            arrays = load_detectron2_pkl(Path(source))
        except ValueError as err:
            raise WeightsError(str(err)) from err
    else:
        name = name or "state dict"
        arrays = dict(source)
    state = {k: v for k, v in arrays.items() if not k.startswith(IGNORED_CHECKPOINT_KEYS)}
    own = model.state_dict()
    frozen_bn = {n for n, m in model.named_modules() if isinstance(m, FrozenBatchNorm2d)}
    filled = []
    for key in own:
        module, _, leaf = key.rpartition(".")
        if key not in state and module in frozen_bn and leaf in ("running_mean", "running_var"):
            state[key] = (torch.zeros_like if leaf == "running_mean" else torch.ones_like)(own[key])
            filled.append(key)
    if filled:
        logger.warning("%s has no FrozenBN statistics for %d keys (e.g. %s); using mean 0 / var 1 like detectron2",
                       name, len(filled), filled[0])
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [f"{k}: checkpoint {list(np.shape(state[k]))} vs model {list(own[k].shape)}"
                  for k in own if k in state and tuple(np.shape(state[k])) != tuple(own[k].shape)]
    if missing or unexpected or mismatched:
        parts = []
        for label, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched)):
            if items:
                shown = ", ".join(items[:12]) + (f", ... ({len(items)} in all)" if len(items) > 12 else "")
                parts.append(f"{label} keys: {shown}")
        raise WeightsError(f"{name} does not fit the CSE model ({model.extra_repr()}): " + "; ".join(parts))
    tensors = {}
    for key, value in state.items():
        t = torch.as_tensor(np.ascontiguousarray(value)) if isinstance(value, np.ndarray) else torch.as_tensor(value)
        tensors[key] = t.to(own[key].dtype)
    model.load_state_dict(tensors, strict=True)
    return model
