"""DSFD face detector (ResNet-152), used the way DeepPrivacy2 uses it.

The network is ``SSD(resnet152_model_config)`` from the PyPI package ``face-detection``
(0.2.2, Apache-2.0, by DP2's author). Its own ``DSFDDetector`` constructor downloads the
weights from a dead URL, so it is not used: the network is built from the package's
modules and the state dict comes through :mod:`dp2.weights` (``WIDERFace_DSFD_RES152.pth``,
the file name DP2 keeps in the torch-hub cache).

DP2's pipeline (``FaceDetector._detect_faces``), reproduced by :func:`preprocess_dsfd`,
the network and :func:`postprocess_dsfd`:

1. ``image.float() - [123, 117, 104]`` per RGB channel; no resize (full resolution).
2. Channels flipped to BGR, one image per batch.
3. The network returns every prior: ``[1, P, 5]`` = (x0, y0, x1, y1) in [0, 1]-relative
   image coordinates (not yet clipped) and the face probability (softmax). It ignores the
   threshold arguments it is given.
4. Keep ``score >= score_threshold``, ``torchvision.ops.nms(iou=0.3)`` on the unclipped
   boxes, clamp to [0, 1], multiply x by W and y by H, ``round().long()``.

Unlike DP2, the scores are kept (``FaceDetections.scores``). Faces come out in NMS order
(descending score); DP2 sorts by area later, in the anonymizer.
"""
from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import torch
from torch import nn

from dp2.structures.detections import FaceDetections
from dp2.detection.accel import CompiledOrEager, check_precision, inference_autocast, optimize_for_inference_
from dp2.detection.base import LazyModelDetector, check_image, resolve_device
from dp2.weights import WeightSpec, WeightsError, load_checkpoint, resolve_weights

__all__ = ["DSFD_MEAN_RGB", "DSFD_WEIGHTS", "DSFD_WEIGHTS_LOKE_NAME", "DSFDFaceDetector", "build_dsfd_network",
           "find_dsfd_weights", "postprocess_dsfd", "preprocess_dsfd"]

logger = logging.getLogger(__name__)

_MAX_CACHED_PRIOR_SIZES = 8

#: Per-channel mean subtracted from the RGB image (``face_detection.base.Detector.mean``).
DSFD_MEAN_RGB = (123.0, 117.0, 104.0)

# The weight files are described in dp2.weights_catalog (light: the weights command reads it).
from dp2.weights_catalog import DSFD_WEIGHTS, DSFD_WEIGHTS_LOKE_NAME  # noqa: E402


def find_dsfd_weights(weights_dir: str | os.PathLike | None = None, download: bool = True) -> Path:
    """Path of the DSFD state dict: ``WIDERFace_DSFD_RES152.pth`` or DP2's loke-id name, else a download.

    Each name is looked up in ``weights_dir``, ``$DP2_WEIGHTS_DIR`` and the torch-hub cache
    (see :func:`dp2.weights.resolve_weights`) before anything is downloaded.

    Raises:
        WeightsError: not found and the download is disabled or failed.
    """
    for spec in (DSFD_WEIGHTS, DSFD_WEIGHTS_LOKE_NAME):
        try:
            return resolve_weights(spec, weights_dir=weights_dir, download=False)
        except WeightsError:
            continue
    return resolve_weights(DSFD_WEIGHTS, weights_dir=weights_dir, download=download)


def build_dsfd_network() -> nn.Module:
    """DSFD ResNet-152 (``face_detection``'s ``SSD(resnet152_model_config)``), random init, eval mode.

    Raises:
        ModuleNotFoundError: ``face-detection`` is not installed.
    """
    try:
        from face_detection.dsfd.config import resnet152_model_config
        from face_detection.dsfd.face_ssd import SSD
    except ModuleNotFoundError as err:
        raise ModuleNotFoundError(
            "The DSFD face detector needs the 'face-detection' package: pip install face-detection==0.2.2"
        ) from err
    with warnings.catch_warnings():
        # SSD builds its backbone with torchvision's deprecated resnet152(pretrained=False).
        warnings.simplefilter("ignore", UserWarning)
        net = SSD(resnet152_model_config)
    return net.eval()


def preprocess_dsfd(image: torch.Tensor) -> torch.Tensor:
    """DP2's DSFD input: mean-subtracted float, channels flipped to BGR, batch of one.

    Args:
        image: uint8 [3, H, W] RGB.

    Returns:
        float32 [1, 3, H, W] BGR, ``pixel - mean`` (mean 104, 117, 123 for B, G, R), on
        ``image``'s device.

    >>> preprocess_dsfd(torch.tensor([[[200]], [[100]], [[0]]], dtype=torch.uint8)).flatten()
    tensor([-104.,  -17.,   77.])
    """
    mean = torch.tensor(DSFD_MEAN_RGB, dtype=torch.float32, device=image.device).view(3, 1, 1)
    x = image.float() - mean
    return x[None, [2, 1, 0]]  # [1, 3, H, W], BGR


def postprocess_dsfd(raw: torch.Tensor, image_size_hw: tuple[int, int], *, score_threshold: float,
                     nms_iou_threshold: float) -> FaceDetections:
    """Turn the DSFD network output into pixel boxes, exactly as DP2 does.

    Steps: keep ``score >= score_threshold``; NMS at ``nms_iou_threshold`` on the relative,
    unclipped boxes; clamp to [0, 1]; scale x by W, y by H; ``round().long()`` (half to
    even). Rows containing NaN (only an untrained network produces them) are dropped first.

    Args:
        raw: float [P, 5] or [1, P, 5]: (x0, y0, x1, y1, score) with coordinates relative to
            the image size.
        image_size_hw: (H, W) of the image the network saw.
        score_threshold: minimum face probability.
        nms_iou_threshold: IoU above which the lower-scored box is suppressed.

    Returns:
        FaceDetections (on ``raw``'s device) in NMS order (descending score); boxes lie in
        ``[0, W] x [0, H]`` and may be empty after clamping (DP2 keeps those too).

    Raises:
        ValueError: ``raw`` has the wrong shape.

    >>> raw = torch.tensor([[0.1, 0.2, 0.5, 0.6, 0.9], [0.12, 0.2, 0.5, 0.6, 0.8], [-0.1, 0.5, 0.3, 1.2, 0.4]])
    >>> dets = postprocess_dsfd(raw, (10, 20), score_threshold=0.3, nms_iou_threshold=0.3)
    >>> dets.boxes_xyxy
    tensor([[ 2,  2, 10,  6],
            [ 0,  5,  6, 10]])
    >>> dets.scores
    tensor([0.9000, 0.4000])
    """
    if raw.ndim == 3:
        if raw.shape[0] != 1:
            raise ValueError(f"raw must hold one image, got batch size {raw.shape[0]}")
        raw = raw[0]
    if raw.ndim != 2 or raw.shape[1] != 5:
        raise ValueError(f"raw must have shape [P, 5] or [1, P, 5], got {list(raw.shape)}")
    import torchvision

    height, width = int(image_size_hw[0]), int(image_size_hw[1])
    raw = raw.float()
    # Rows with NaN never come from trained weights; dropping them keeps NMS well-defined.
    raw = raw[~raw.isnan().any(dim=1)]
    scores = raw[:, 4]
    keep = scores >= score_threshold
    boxes, scores = raw[keep, :4], scores[keep]
    keep = torchvision.ops.nms(boxes, scores, nms_iou_threshold)  # sorted by descending score
    boxes, scores = boxes[keep].clamp(0, 1), scores[keep].clamp(0, 1)
    scale = torch.tensor([width, height, width, height], dtype=boxes.dtype, device=boxes.device)
    boxes_xyxy = (boxes * scale).round().long()  # [N, 4]
    return FaceDetections(boxes_xyxy=boxes_xyxy, scores=scores, image_size_hw=(height, width))


class DSFDFaceDetector(LazyModelDetector):
    """DSFD ResNet-152 face detector with DeepPrivacy2's pre- and post-processing.

    Args:
        score_threshold: minimum face probability in [0, 1] (DP2 default 0.3). Public and
            mutable (the CLI's ``--dst`` sets it); read at every call.
        nms_iou_threshold: NMS IoU threshold (``face_detection``'s default 0.3).
        weights_dir: extra directory searched first for ``WIDERFace_DSFD_RES152.pth``
            (then ``$DP2_WEIGHTS_DIR``, then the torch-hub cache; DP2's loke-id file name is
            accepted too, see :func:`find_dsfd_weights`).
        weights_path: explicit state-dict file; skips the lookup.
        download: allow downloading the weights when no local copy is found.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``...; None picks CUDA when
            available, else the CPU.
        optimize: fold the batch norms into the convolutions and run channels-last (exact up
            to float rounding; see :mod:`dp2.detection.accel`). False runs the network as built.
        precision: ``"fp32"`` (default) or ``"bf16"`` (opt-in autocast).
        compile: ``torch.compile`` the ResNet-152 stages (opt-in; slow first call per image
            size, falls back to eager with a warning).

    The network (about 120 M parameters) is built and loaded on the first call, so
    constructing the detector (config loading) is cheap. Call it with a uint8 RGB
    ``[3, H, W]`` tensor; it returns CPU :class:`FaceDetections` (int64 boxes, float32
    scores, no landmarks).
    """

    weight_spec = DSFD_WEIGHTS

    def __init__(self, *, score_threshold: float = 0.3, nms_iou_threshold: float = 0.3,
                 weights_dir: str | os.PathLike | None = None, weights_path: str | os.PathLike | None = None,
                 download: bool = True, device: str | torch.device | None = None, optimize: bool = True,
                 precision: str = "fp32", compile: bool = False) -> None:
        super().__init__(score_threshold=score_threshold, weights_dir=weights_dir, weights_path=weights_path,
                         download=download, device=device)
        if not 0.0 < nms_iou_threshold <= 1.0:
            raise ValueError(f"nms_iou_threshold must be in (0, 1], got {nms_iou_threshold}")
        self.nms_iou_threshold = float(nms_iou_threshold)
        self.optimize = bool(optimize)
        self.precision = check_precision(precision)
        self.compile = bool(compile)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(score_threshold={self.score_threshold}, "
                f"nms_iou_threshold={self.nms_iou_threshold}, precision={self.precision!r}, "
                f"device={str(self.device)!r})")

    @property
    def network(self) -> nn.Module:
        """The DSFD network with its weights (built and loaded on first access)."""
        return self.model

    def weights_file(self) -> Path:
        # Also finds DP2 caches that stored the file under the long loke-ID name.
        if self.weights_path is not None:
            return self.weights_path
        return find_dsfd_weights(self.weights_dir, download=self.download)

    def _load_model(self) -> nn.Module:
        path = self.weights_file()
        state = load_checkpoint(path)
        net = build_dsfd_network()
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError as err:
            raise WeightsError(f"{path} is not a DSFD ResNet-152 state dict: {err}") from err
        logger.info("DSFD face detector: weights %s on %s", path, self.device)
        return self._prepare(net.to(self.device))

    def _prepare(self, net: nn.Module) -> nn.Module:
        """Apply the speed options (``optimize``, ``compile``) to a loaded network."""
        if self.optimize:
            optimize_for_inference_(net)
        if self.compile:
            for name in ("layer1", "layer2", "layer3", "layer4"):  # ResNet-152, most of the time
                setattr(net, name, CompiledOrEager(getattr(net, name), name=f"DSFD {name}"))
        return net

    @torch.no_grad()
    def __call__(self, image: torch.Tensor) -> FaceDetections:
        """Detect faces.

        Args:
            image: uint8 [3, H, W] RGB, any device.

        Returns:
            FaceDetections on the CPU, boxes in pixels of ``image`` (inside the image).

        Raises:
            TypeError: ``image`` is not a torch.Tensor.
            ValueError: wrong dtype or shape.
            WeightsError: the weights cannot be found or loaded.
        """
        check_image(image)
        size_hw = (int(image.shape[1]), int(image.shape[2]))
        if size_hw[0] == 0 or size_hw[1] == 0:
            return FaceDetections.empty(size_hw)
        net = self.network
        cache = getattr(net, "prior_cache", None)
        if isinstance(cache, dict) and len(cache) >= _MAX_CACHED_PRIOR_SIZES:
            cache.clear()  # SSD keeps the priors of every image size it saw; bound that for folders
        x = preprocess_dsfd(image.to(self.device))
        # SSD.forward takes the thresholds but applies neither; post-processing does.
        with inference_autocast(self.device, self.precision):
            raw = net(x, self.score_threshold, self.nms_iou_threshold)  # [1, P, 5]
        dets = postprocess_dsfd(raw, size_hw, score_threshold=self.score_threshold,
                                nms_iou_threshold=self.nms_iou_threshold)
        return dets.to("cpu")


