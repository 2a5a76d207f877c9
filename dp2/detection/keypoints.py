"""Person keypoints from torchvision's Keypoint R-CNN (ResNet-50 FPN, COCO), as DeepPrivacy2 runs it.

DP2's DeepPrivacy1 detector builds ``keypointrcnn_resnet50_fpn(weights=COCO_V1)``, feeds it
the image as float RGB in [0, 1] (the model resizes to 800/1333 and normalises itself) and
keeps the persons with score >= 0.3. Here the same network is built without torchvision's
downloader and its weights come through :mod:`dp2.weights`, under torchvision's own file name
(so an existing torch-hub cache is reused).

Building with ``weights=COCO_V1`` gives a backbone with ``FrozenBatchNorm2d`` whose ``eps``
torchvision then sets to 0 for these weights; :func:`build_keypoint_rcnn` reproduces that, so
the outputs equal torchvision's pretrained model (a plain ``weights=None`` build would use
``BatchNorm2d`` with ``eps=1e-5``).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from dp2.detection.base import LazyModelDetector, check_image
from dp2.weights import WeightSpec, WeightsError, load_checkpoint, resolve_weights

__all__ = ["COCO_KEYPOINT_NAMES", "KEYPOINT_RCNN_WEIGHTS", "KeypointRCNNPersonDetector", "PersonKeypoints",
           "build_keypoint_rcnn"]

logger = logging.getLogger(__name__)

#: COCO keypoint order of the model's output ("left" = the person's left).
COCO_KEYPOINT_NAMES = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)

# The weight files are described in dp2.weights_catalog (light: the weights command reads it).
from dp2.weights_catalog import KEYPOINT_RCNN_WEIGHTS  # noqa: E402

@dataclass(frozen=True)
class PersonKeypoints:
    """People found by a keypoint detector in one image.

    Attributes:
        keypoints: float32 [M, 17, 3]: (x, y, visibility) in image pixels, COCO order
            (:data:`COCO_KEYPOINT_NAMES`). Keypoint R-CNN reports visibility 1 for all.
        scores: float32 [M] person scores, descending.
        image_size_hw: (H, W) of the image.
    """

    keypoints: torch.Tensor
    scores: torch.Tensor
    image_size_hw: tuple[int, int]

    def __post_init__(self) -> None:
        k = self.keypoints
        if k.ndim != 3 or k.shape[2] != 3:
            raise ValueError(f"keypoints must have shape [M, K, 3], got {list(k.shape)}")
        if self.scores.shape != (k.shape[0],):
            raise ValueError(f"scores must have shape [{k.shape[0]}], got {list(self.scores.shape)}")
        object.__setattr__(self, "image_size_hw", (int(self.image_size_hw[0]), int(self.image_size_hw[1])))

    def __len__(self) -> int:
        return int(self.keypoints.shape[0])

    @property
    def keypoints_xy(self) -> torch.Tensor:
        """float32 [M, K, 2] (x, y) pixels."""
        return self.keypoints[..., :2]

    @classmethod
    def empty(cls, image_size_hw: tuple[int, int], num_keypoints: int = 17) -> "PersonKeypoints":
        return cls(keypoints=torch.zeros((0, num_keypoints, 3)), scores=torch.zeros((0,)),
                   image_size_hw=image_size_hw)


def build_keypoint_rcnn() -> nn.Module:
    """torchvision Keypoint R-CNN ResNet-50 FPN as built for ``COCO_V1`` (random init, eval mode).

    2 classes (background, person), 17 keypoints, ``FrozenBatchNorm2d`` with ``eps=0`` in the
    backbone, torchvision's default transform (min size 800, max size 1333, ImageNet
    normalisation) and detection settings.
    """
    from torchvision.models.detection import KeypointRCNN
    from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
    from torchvision.ops import FrozenBatchNorm2d

    backbone = resnet_fpn_backbone(backbone_name="resnet50", weights=None, norm_layer=FrozenBatchNorm2d,
                                   trainable_layers=3)
    model = KeypointRCNN(backbone, num_classes=2, num_keypoints=len(COCO_KEYPOINT_NAMES))
    for module in model.modules():
        if isinstance(module, FrozenBatchNorm2d):
            module.eps = 0.0  # what torchvision does after loading COCO_V1
    return model.eval()


class KeypointRCNNPersonDetector(LazyModelDetector):
    """Keypoint R-CNN person keypoints, with DeepPrivacy2's input and score filter.

    Args:
        score_threshold: minimum person score in [0, 1] (DP2's ``keypoint_threshold``, 0.3).
        weights_dir: extra directory searched first for
            ``keypointrcnn_resnet50_fpn_coco-fc266e95.pth`` (then ``$DP2_WEIGHTS_DIR``, then
            the torch-hub cache, where torchvision itself keeps it).
        weights_path: explicit state-dict file; skips the lookup.
        download: allow downloading the weights when no local copy is found.
        device: ``"cpu"``, ``"cuda"``, ``"mps"``...; None picks CUDA when available.

    The model is built and loaded on the first call. Call it with a uint8 RGB ``[3, H, W]``
    tensor; it returns CPU :class:`PersonKeypoints`.
    """

    weight_spec = KEYPOINT_RCNN_WEIGHTS

    def __init__(self, *, score_threshold: float = 0.3, weights_dir: str | os.PathLike | None = None,
                 weights_path: str | os.PathLike | None = None, download: bool = True,
                 device: str | torch.device | None = None) -> None:
        super().__init__(score_threshold=score_threshold, weights_dir=weights_dir, weights_path=weights_path,
                         download=download, device=device)

    def _load_model(self) -> nn.Module:
        path = self.weights_file()
        state = load_checkpoint(path)
        model = build_keypoint_rcnn()
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as err:
            raise WeightsError(f"{path} is not a Keypoint R-CNN ResNet-50 FPN state dict: {err}") from err
        logger.info("Keypoint R-CNN: weights %s on %s", path, self.device)
        return model.to(self.device)

    @torch.no_grad()
    def __call__(self, image: torch.Tensor) -> PersonKeypoints:
        """Detect people and their 17 COCO keypoints.

        Args:
            image: uint8 [3, H, W] RGB, any device.

        Returns:
            PersonKeypoints (CPU) of the persons with score >= ``score_threshold``, in
            descending score order.

        Raises:
            TypeError, ValueError: ``image`` is not a uint8 [3, H, W] tensor.
            WeightsError: the weights cannot be found or loaded.
        """
        check_image(image)
        size_hw = (int(image.shape[1]), int(image.shape[2]))
        if size_hw[0] == 0 or size_hw[1] == 0:
            return PersonKeypoints.empty(size_hw)
        model = self.model
        x = image.to(self.device).float() / 255
        out = model([x])[0]
        keep = out["scores"] >= self.score_threshold
        return PersonKeypoints(keypoints=out["keypoints"][keep].float().cpu(),
                               scores=out["scores"][keep].float().cpu(), image_size_hw=size_hw)
