"""``CSEDetector``: DensePose CSE person detection the way DeepPrivacy2 runs it.

The model (:class:`~dp2.detection.cse.model.CSEModel`, pure PyTorch, no detectron2) is
built and loaded lazily on the first call from the official model-zoo file
``model_final_1d3314.pkl`` (found/downloaded through :mod:`dp2.weights`, read with the
restricted unpickler of :mod:`dp2.detection.cse.pkl`).

DP2's post-processing (:func:`postprocess_cse`):

* ``xywh = (x0, y0, x1 - x0, y1 - y0)`` (float32), ``boxes_xyxy = round(x0, y0, x0 + w,
  y0 + h)`` (half to even); boxes with ``x0 == x1`` or ``y0 == y1`` are dropped;
* ``S = coarse_segm.argmax(1) == 1`` (ties go to background), ``E = embedding``;
* ``im_segmentation[i, y0:y1, x0:x1] = nearest_resize(S[i], (y1 - y0, x1 - x0))``;
* ``embed_map = normalize(features @ embeddings)``, [27554, 16].
"""
from __future__ import annotations

import logging
import os
from dataclasses import replace
from pathlib import Path

import torch

from dp2.detection.accel import CompiledOrEager, check_precision, inference_autocast, optimize_for_inference_
from dp2.detection.base import LazyModelDetector, check_image
from dp2.weights import WeightSpec, WeightsError, resolve_weights

from .config import CSEConfig
from .model import CSEModel, CSEModelOutput, build_cse_model, load_cse_weights
from .pkl import load_detectron2_pkl, load_vertex_features
from .structures import CSEDetections

__all__ = ["CSE_WEIGHTS", "CSEDetector", "SMPL_VERTEX_FEATURES", "postprocess_cse"]

logger = logging.getLogger(__name__)

# The weight files are described in dp2.weights_catalog (light: the weights command reads it).
from dp2.weights_catalog import CSE_WEIGHTS, SMPL_VERTEX_FEATURES  # noqa: E402

def postprocess_cse(output: CSEModelOutput, image_size_hw: tuple[int, int], embed_map: torch.Tensor) -> CSEDetections:
    """DP2's ``CSEDetector`` post-processing of the model output (see the module docstring).

    Args:
        output: model output in original-image coordinates.
        image_size_hw: (H, W) of the image.
        embed_map: float [V, D] normalised vertex embeddings.

    Returns:
        CSEDetections on ``output``'s device.
    """
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.functional import resize

    h, w = image_size_hw
    b = output.boxes_xyxy.float()
    bw, bh = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]  # xywh as DensePose's extractor gives it
    boxes = torch.stack((b[:, 0], b[:, 1], b[:, 0] + bw, b[:, 1] + bh), dim=1).round_().long()  # [N, 4]
    keep = (boxes[:, 0] != boxes[:, 2]) & (boxes[:, 1] != boxes[:, 3])
    boxes = boxes[keep]
    S = output.coarse_segm[keep].argmax(dim=1) > 0  # [N, S, S]
    E = output.embedding[keep]
    im_seg = torch.zeros((boxes.shape[0], h, w), dtype=torch.bool, device=S.device)
    for i, (x0, y0, x1, y1) in enumerate(boxes.tolist()):
        pasted = resize(S[i][None].float(), [y1 - y0, x1 - x0], interpolation=InterpolationMode.NEAREST)
        im_seg[i, y0:y1, x0:x1] = pasted[0] > 0
    return CSEDetections(boxes_xyxy=boxes, scores=output.scores[keep].float(), S=S, E=E.float(),
                         im_segmentation=im_seg, embed_map=embed_map, image_size_hw=(h, w))


class CSEDetector(LazyModelDetector):
    """DensePose CSE (``densepose_rcnn_R_101_FPN_DL_soft_s1x``) person detector.

    Args:
        score_threshold: box score threshold in [0, 1] (strict ``>``; DP2 uses 0.3). Public
            and mutable; read at every call.
        weights: a model-zoo ``.pkl`` to load instead of looking up ``model_final_1d3314.pkl``.
        weights_dir: extra directory searched first for ``model_final_1d3314.pkl`` (then
            ``$DP2_WEIGHTS_DIR``, then the torch-hub cache, then the official URL).
        download: allow downloading the weights when no local copy exists.
        device: ``"cpu"``, ``"cuda"``, ...; None picks CUDA when available.
        config: model settings; None = the official R-101 model (:class:`CSEConfig`).
        optimize: run channels-last (opt-in; see :mod:`dp2.detection.accel`). The
            detections stay the reference ones on the golden data (boxes, S, E, vertex ids),
            but float noise of ~1e-5 in the backbone grows to ~3e-3 in the DensePose head's
            low-resolution coarse segmentation (the golden tolerance is 2e-3) and swaps
            near-tied RPN proposals, so the default (False) keeps detectron2's numerics exactly.
        precision: ``"fp32"`` (default) or ``"bf16"`` (opt-in autocast; boxes within a few
            pixels, scores within about 1e-2 of fp32).
        compile: ``torch.compile`` the backbone + FPN (opt-in; slow first call per image
            size, falls back to eager with a warning).
        proposals: RPN proposals kept for the box head (None = ``config.rpn_post_nms_topk``,
            1000 as DensePose). Fewer is faster but may lose recall.

    The model (~85 M parameters) is built and loaded on the first call. Call the detector
    with a uint8 RGB ``[3, H, W]`` tensor; it returns :class:`CSEDetections` on the CPU.
    """

    weight_spec = CSE_WEIGHTS

    def __init__(self, *, score_threshold: float = 0.3, weights: str | os.PathLike | None = None,
                 weights_dir: str | os.PathLike | None = None, download: bool = True,
                 device: str | torch.device | None = None, config: CSEConfig | None = None,
                 optimize: bool = False, precision: str = "fp32", compile: bool = False,
                 proposals: int | None = None) -> None:
        super().__init__(score_threshold=score_threshold, weights_dir=weights_dir, weights_path=weights,
                         download=download, device=device)
        self.config = config or CSEConfig()
        if proposals is not None:
            if int(proposals) < 1:
                raise ValueError(f"proposals must be >= 1 or None, got {proposals}")
            self.config = replace(self.config, rpn_post_nms_topk=int(proposals))
        self.optimize = bool(optimize)
        self.precision = check_precision(precision)
        self.compile = bool(compile)
        self._embed_map: torch.Tensor | None = None

    @property
    def weights(self) -> Path | None:
        """An explicit weights file (``weights=``), or None to use the weights manager."""
        return self.weights_path

    def embed_map(self) -> torch.Tensor:
        """float32 [V, D] normalised mesh vertex embeddings (on the CPU, computed once)."""
        if self._embed_map is None:
            with torch.no_grad():
                self._embed_map = self.model.embed_map().float().cpu()
        return self._embed_map

    def _load_model(self) -> CSEModel:
        path = self.weights_file()
        if not path.is_file():
            raise WeightsError(f"CSE weights file {path} does not exist")
        try:
            arrays = load_detectron2_pkl(path)
        except ValueError as err:
            raise WeightsError(str(err)) from err
        self._fill_vertex_features(arrays)
        model = build_cse_model(self.config)
        load_cse_weights(model, arrays, name=str(path))
        logger.info("DensePose CSE detector: weights %s on %s", path, self.device)
        return self._prepare(model.to(self.device))

    def _prepare(self, model: CSEModel) -> CSEModel:
        """Apply the speed options (``optimize``, ``compile``) to a loaded model."""
        if self.optimize:
            optimize_for_inference_(model, entry=model.backbone, fold_bn=False)
        if self.compile:
            model.backbone = CompiledOrEager(model.backbone, name="the CSE backbone")
        return model

    def _fill_vertex_features(self, arrays: dict) -> None:
        """DensePose's embedder init: vertex features from ``INIT_FILE`` where the checkpoint has none."""
        prefix = f"roi_heads.embedder.embedder_{self.config.mesh_name}."
        if prefix + "features" in arrays:
            return
        if self.config.mesh_name != "smpl_27554":
            return  # no known INIT_FILE; the strict load reports the missing key
        path = resolve_weights(SMPL_VERTEX_FEATURES, weights_dir=self.weights_dir, download=self.download)
        try:
            init = load_vertex_features(path)
        except ValueError as err:
            raise WeightsError(str(err)) from err
        logger.info("CSE checkpoint has no vertex features; using %s", path)
        for key, value in init.items():
            arrays.setdefault(prefix + key, value)

    @torch.no_grad()
    def __call__(self, image: torch.Tensor) -> CSEDetections:
        """Detect people with their CSE embeddings.

        Args:
            image: uint8 [3, H, W] RGB, any device.

        Returns:
            CSEDetections on the CPU, boxes in pixels of ``image``.

        Raises:
            TypeError: ``image`` is not a torch.Tensor.
            ValueError: wrong dtype or shape.
            WeightsError: the weights cannot be found or loaded.
        """
        check_image(image)
        size_hw = (int(image.shape[1]), int(image.shape[2]))
        model = self.model
        embed_map = self.embed_map()
        if size_hw[0] == 0 or size_hw[1] == 0:
            return CSEDetections.empty(size_hw, grid_size=self.config.heatmap_size, embed_map=embed_map)
        with inference_autocast(self.device, self.precision):
            out = model(image.to(self.device), score_thresh=self.score_threshold)
        if self.precision != "fp32":
            out = replace(out, coarse_segm=out.coarse_segm.float(), embedding=out.embedding.float(),
                          scores=out.scores.float(), boxes_xyxy=out.boxes_xyxy.float())
        dets = postprocess_cse(out, size_hw, embed_map.to(self.device))
        return dets.to("cpu")
