"""ViTPose top-down keypoints (a plain ViT backbone plus a deconvolution heatmap head), as
DeepPrivacy2's ``MaskRCNNVitPose`` runs it for FB_triagan.

Written in plain PyTorch; parameter names equal those of DP2's ``vit-{b,l,h}-multi-coco-*.pth``
checkpoints (``backbone.*`` and ``keypoint_head.*``), so they load strictly.

DP2's person crop and decode, reproduced because they decide where keypoints land:

* the box is clipped to the image, then the short side is padded **with zeros** to the
  256:192 aspect around ``centre = x0 + (x1 - x0) // 2`` with ``length = round(h * 192/256)``
  and ``centre -/+ length // 2`` (an odd length loses a pixel); image content inside the padded
  area is not used, and the padded box may leave the image;
* the crop is resized to 256x192 (bilinear, antialias, float) and normalised with the ImageNet
  mean and std times 255;
* ``PatchEmbed`` is a 16x16 stride-16 conv with padding 4 (16x12 tokens); the position
  embedding is added as ``pos[:, 1:] + pos[:, :1]`` (there is no class token);
* a keypoint is the heatmap argmax, ``x = col / 48 * (px1 - px0) + px0`` over the padded box
  (no half-pixel centre, no sub-pixel refinement, no flip test); its confidence is the raw
  heatmap maximum (it can be negative).

Convention: boxes are ``boxes_xyxy`` int64 half-open image pixels; keypoints are float32
``(x, y, confidence)`` in image pixels, COCO order.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from dp2.detection.base import LazyModelDetector, check_image
from dp2.weights import VITPOSE_WEIGHTS, WeightSpec, WeightsError, load_checkpoint

__all__ = ["VITPOSE_SIZES", "VITPOSE_WEIGHTS", "VITPOSE_H_WEIGHTS", "ViTPose", "ViTPoseDetector",
           "build_vitpose", "decode_heatmaps", "vitpose_crops"]

logger = logging.getLogger(__name__)

#: Backbone input size (H, W) and heatmap size of the released models.
INPUT_HW = (256, 192)
HEATMAP_HW = (64, 48)
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ViTPoseSize:
    """One released ViTPose size (DP2's ``model_{base,large,huge}`` dicts)."""

    embed_dim: int
    depth: int
    num_heads: int
    deconv_filters: tuple[int, int] = (256, 256)


VITPOSE_SIZES = {
    "vit_base": ViTPoseSize(768, 12, 12),
    "vit_large": ViTPoseSize(1024, 24, 16),
    "vit_huge": ViTPoseSize(1280, 32, 16),
    # The conformance data's reduced model (embed 64, depth 2, heads 4, deconv 32).
    "vit_mini": ViTPoseSize(64, 2, 4, (32, 32)),
}

# The weight files (URLs, names) live in dp2.weights, which stays light for the weights command.
#: ViTPose-H, the model FB_triagan uses (637,208,849 parameters).
VITPOSE_H_WEIGHTS = VITPOSE_WEIGHTS["vit_huge"]


# -- network ------------------------------------------------------------------------------------

class _PatchEmbed(nn.Module):
    def __init__(self, embed_dim: int, patch_size: int = 16, padding: int = 2) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, embed_dim, kernel_size=patch_size, stride=patch_size, padding=padding)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        x = self.proj(x)                               # [N, C, Hp, Wp]
        hp, wp = x.shape[2:]
        return x.flatten(2).transpose(1, 2), (hp, wp)  # [N, Hp*Wp, C]


class _Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, c = x.shape
        qkv = self.qkv(x).reshape(n, t, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]               # [N, heads, T, C/heads]
        attn = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(n, t, c))


class _Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class _Block(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = _Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = _Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViTBackbone(nn.Module):
    """Plain ViT on 256x192 crops: ``[N, 3, 256, 192] -> [N, C, 16, 12]``."""

    def __init__(self, embed_dim: int, depth: int, num_heads: int, img_size: tuple[int, int] = INPUT_HW,
                 patch_size: int = 16, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.patch_embed = _PatchEmbed(embed_dim, patch_size)
        num_patches = (img_size[0] // patch_size) * (img_size[1] // patch_size)
        # One extra position (a class token's, in the pre-training) is folded into every token.
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, embed_dim))
        self.blocks = nn.ModuleList([_Block(embed_dim, num_heads, mlp_ratio) for _ in range(depth)])
        self.last_norm = nn.LayerNorm(embed_dim, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        x, (hp, wp) = self.patch_embed(x)
        x = x + self.pos_embed[:, 1:] + self.pos_embed[:, :1]
        for block in self.blocks:
            x = block(x)
        x = self.last_norm(x)
        return x.permute(0, 2, 1).reshape(n, -1, hp, wp)  # [N, C, Hp, Wp]


class HeatmapHead(nn.Module):
    """Two stride-2 deconvolutions (4x4, no bias) with BatchNorm and ReLU, then a 1x1 conv to
    one heatmap per keypoint: ``[N, C, 16, 12] -> [N, 17, 64, 48]``."""

    def __init__(self, in_channels: int, filters: tuple[int, int] = (256, 256), num_keypoints: int = 17) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for f in filters:
            layers += [nn.ConvTranspose2d(c, f, kernel_size=4, stride=2, padding=1, output_padding=0, bias=False),
                       nn.BatchNorm2d(f), nn.ReLU(inplace=True)]
            c = f
        self.deconv_layers = nn.Sequential(*layers)
        self.final_layer = nn.Conv2d(c, num_keypoints, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.final_layer(self.deconv_layers(x))


class ViTPose(nn.Module):
    """ViT backbone + heatmap head with DP2's ``VitPoseModel`` parameter names."""

    def __init__(self, size: ViTPoseSize, num_keypoints: int = 17) -> None:
        super().__init__()
        # The head is built (and saved) first, as in the checkpoints.
        self.keypoint_head = HeatmapHead(size.embed_dim, size.deconv_filters, num_keypoints)
        self.backbone = ViTBackbone(size.embed_dim, size.depth, size.num_heads)

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        """Heatmaps float32 [N, 17, 64, 48] for normalised crops [N, 3, 256, 192]."""
        return self.keypoint_head(self.backbone(crops))


def build_vitpose(size: str = "vit_huge") -> ViTPose:
    """A randomly initialised ViTPose of a released size (``vit_base``, ``vit_large``, ``vit_huge``),
    in eval mode, without gradients."""
    if size not in VITPOSE_SIZES:
        raise ValueError(f"unknown ViTPose size {size!r}; expected one of {sorted(VITPOSE_SIZES)}")
    model = ViTPose(VITPOSE_SIZES[size])
    model.requires_grad_(False)
    return model.eval()


# -- crop and decode ------------------------------------------------------------------------------

def _padded_boxes(boxes_xyxy: torch.Tensor, image_size_hw: tuple[int, int],
                  aspect_hw: tuple[int, int] = INPUT_HW) -> tuple[torch.Tensor, torch.Tensor]:
    """Clipped boxes and the per-side pads ``(left, right, top, bottom)`` that bring them to the
    target aspect (negative = crop), as DP2 computes them."""
    h_img, w_img = int(image_size_hw[0]), int(image_size_hw[1])
    b = boxes_xyxy.to(torch.int64).clone()
    b = b.clamp(min=0)
    b[:, 2] = b[:, 2].clamp(max=w_img)
    b[:, 3] = b[:, 3].clamp(max=h_img)
    pads = torch.zeros((b.shape[0], 4), dtype=torch.int64)
    target = aspect_hw[0] / aspect_hw[1]
    for i in range(b.shape[0]):
        x0, y0, x1, y1 = b[i]
        w, h = x1 - x0, y1 - y0
        if h / w > target:  # too tall: widen
            length = torch.round(h * (aspect_hw[1] / aspect_hw[0])).long()
            centre = x0 + (x1 - x0) // 2
            nx0, nx1 = centre - length.div(2, rounding_mode="trunc"), centre + length.div(2, rounding_mode="trunc")
            pads[i] = torch.stack([x0 - nx0, nx1 - x1, x0 * 0, x0 * 0])
        else:  # too wide (or exact): heighten
            length = torch.round(w * target).long()
            centre = y0 + (y1 - y0) // 2
            ny0, ny1 = centre - length.div(2, rounding_mode="trunc"), centre + length.div(2, rounding_mode="trunc")
            pads[i] = torch.stack([y0 * 0, y0 * 0, y0 - ny0, ny1 - y1])
    return b, pads


def vitpose_crops(image: torch.Tensor, boxes_xyxy: torch.Tensor,
                  out_hw: tuple[int, int] = INPUT_HW) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """DP2's ViTPose person crops.

    Args:
        image: uint8 [3, H, W] RGB.
        boxes_xyxy: int64 [N, 4] person boxes (e.g. tight boxes of the person masks).
        out_hw: crop size fed to the backbone.

    Returns:
        ``(crops, padded_boxes, pads)``: float32 [N, 3, 256, 192] normalised crops; int64 [N, 4]
        the boxes the crops show (clipped box plus pads; may leave the image); int64 [N, 4]
        pads ``(left, right, top, bottom)``.

    Raises:
        ValueError: a box is empty after clipping to the image.

    >>> img = torch.full((3, 40, 40), 255, dtype=torch.uint8)
    >>> crops, padded, pads = vitpose_crops(img, torch.tensor([[10, 0, 20, 40]]))
    >>> padded.tolist(), pads.tolist()  # 10 wide, 40 tall: widened to 30 around x = 15
    ([[0, 0, 30, 40]], [[10, 10, 0, 0]])
    """
    check_image(image)
    if boxes_xyxy.ndim != 2 or boxes_xyxy.shape[1] != 4:
        raise ValueError(f"boxes_xyxy must have shape [N, 4], got {list(boxes_xyxy.shape)}")
    size_hw = (int(image.shape[1]), int(image.shape[2]))
    boxes, pads = _padded_boxes(boxes_xyxy.cpu(), size_hw, out_hw)
    empty = (boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])
    if bool(empty.any()):
        raise ValueError(f"boxes {boxes[empty].tolist()} are empty inside the {size_hw} image")
    mean = torch.tensor([m * 255 for m in _MEAN], device=image.device)[:, None, None]
    std = torch.tensor([s * 255 for s in _STD], device=image.device)[:, None, None]
    crops = torch.empty((boxes.shape[0], 3, *out_hw), dtype=torch.float32, device=image.device)
    for i, ((x0, y0, x1, y1), pad) in enumerate(zip(boxes.tolist(), pads.tolist())):
        crop = F.pad(image[:, y0:y1, x0:x1], pad).float()  # zeros, not image content
        crop = F.interpolate(crop[None], size=out_hw, mode="bilinear", align_corners=False, antialias=True)[0]
        crops[i] = (crop - mean) / std
    padded = torch.stack([boxes[:, 0] - pads[:, 0], boxes[:, 1] - pads[:, 2],
                          boxes[:, 2] + pads[:, 1], boxes[:, 3] + pads[:, 3]], dim=1)
    return crops, padded, pads


def decode_heatmaps(heatmaps: torch.Tensor, padded_boxes: torch.Tensor) -> torch.Tensor:
    """Keypoints at the heatmap maxima, mapped into the padded boxes (DP2's decode).

    Args:
        heatmaps: float [N, K, h, w].
        padded_boxes: int64 [N, 4] boxes the crops show.

    Returns:
        float32 [N, K, 3]: ``x = col * (1 / w) * (x1 - x0) + x0``, ``y = row * (1 / h) * (y1 - y0) + y0``
        (no half-pixel centre) and the heatmap maximum as confidence. Ties go to the first
        maximum in row-major order.

    >>> hm = torch.zeros(1, 1, 4, 4); hm[0, 0, 1, 2] = 0.7
    >>> decode_heatmaps(hm, torch.tensor([[0, 0, 40, 80]])).tolist()
    [[[20.0, 20.0, 0.699999988079071]]]
    """
    n, k, h, w = heatmaps.shape
    conf, index = heatmaps.flatten(2).max(dim=2)  # [N, K]
    col = (index % w).float()
    row = torch.div(index, w, rounding_mode="floor").float()
    b = padded_boxes.to(heatmaps.device)[:, None, :]  # [N, 1, 4]
    # DP2 multiplies by the reciprocal (1 ulp away from dividing on some values).
    x = col * (1 / w) * (b[..., 2] - b[..., 0]) + b[..., 0]
    y = row * (1 / h) * (b[..., 3] - b[..., 1]) + b[..., 1]
    return torch.stack([x, y, conf], dim=2).float()


# -- detector -----------------------------------------------------------------------------------

class ViTPoseDetector(LazyModelDetector):
    """ViTPose keypoints for given person boxes.

    Args:
        size: ``vit_huge`` (DP2's FB_triagan), ``vit_large`` or ``vit_base`` (or ``vit_mini``,
            the conformance model, which has no released weights: give ``weights_path``).
        weights_dir: folder searched first for the checkpoint (then ``$DP2_WEIGHTS_DIR``, then the
            torch hub cache, where DP2 keeps ``vit-h-multi-coco-dbc06d4337.pth``).
        weights_path: an explicit checkpoint; skips the lookup.
        download: allow downloading missing weights.
        device: ``cpu``, ``cuda``, ``mps``; None = CUDA if available.
        batch_size: persons per backbone call (ViTPose-H needs about 1.3 GB of activations
            per 8 persons in fp32).

    Call it with a uint8 [3, H, W] image and int64 [N, 4] boxes; it returns float32
    [N, 17, 3] keypoints ``(x, y, confidence)`` in image pixels, on the CPU.
    """

    def __init__(self, *, size: str = "vit_huge", weights_dir: str | os.PathLike | None = None,
                 weights_path: str | os.PathLike | None = None, download: bool = True,
                 device: str | torch.device | None = None, batch_size: int = 8) -> None:
        if size not in VITPOSE_SIZES:
            raise ValueError(f"size must be one of {sorted(VITPOSE_SIZES)}, got {size!r}")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.size = size
        self.batch_size = int(batch_size)
        # ViTPose has no score threshold of its own; the base class wants one.
        super().__init__(score_threshold=0.0, weights_dir=weights_dir, weights_path=weights_path,
                         download=download, device=device)

    @property
    def weight_spec(self) -> WeightSpec:  # type: ignore[override]
        if self.size not in VITPOSE_WEIGHTS:
            raise WeightsError(f"ViTPose {self.size!r} has no released weights; pass weights_path")
        return VITPOSE_WEIGHTS[self.size]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size={self.size!r}, device={str(self.device)!r})"

    def _load_model(self) -> nn.Module:
        path = self.weights_file()
        ckpt = load_checkpoint(path)
        state = ckpt.get("state_dict", ckpt)
        with torch.device("meta"):  # no random init of 637 M parameters that are overwritten anyway
            model = ViTPose(VITPOSE_SIZES[self.size])
        model = model.to_empty(device="cpu").requires_grad_(False).eval()
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as err:
            raise WeightsError(f"{path} is not a {self.size} ViTPose checkpoint: {err}") from err
        logger.info("ViTPose %s: weights %s on %s", self.size, path, self.device)
        return model.to(self.device)

    @torch.no_grad()
    def __call__(self, image: torch.Tensor, boxes_xyxy: torch.Tensor) -> torch.Tensor:
        check_image(image)
        n = int(boxes_xyxy.shape[0])
        if n == 0:
            return torch.zeros((0, 17, 3), dtype=torch.float32)
        model = self.model
        crops, padded, _ = vitpose_crops(image.to(self.device), boxes_xyxy)
        heatmaps = torch.cat([model(crops[i:i + self.batch_size]) for i in range(0, n, self.batch_size)])
        return decode_heatmaps(heatmaps.float(), padded).cpu()
