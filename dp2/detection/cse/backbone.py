"""ResNet (frozen batch norm, stride in the 1x1 conv) + FPN with a max-pool p6.

Module and parameter names follow detectron2's, so a detectron2 state dict loads as is:
``backbone.bottom_up.stem.conv1.{weight,norm.*}``, ``backbone.bottom_up.res{2..5}.{i}.
{shortcut,conv1,conv2,conv3}.{weight,norm.*}``, ``backbone.fpn_lateral{2..5}``,
``backbone.fpn_output{2..5}``.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .config import CSEConfig

__all__ = ["FPN", "FrozenBatchNorm2d", "NormConv2d", "ResNet"]


class FrozenBatchNorm2d(nn.Module):
    """Batch norm with fixed statistics and affine terms, all four stored as buffers.

    ``y = (x - running_mean) / sqrt(running_var + eps) * weight + bias``.
    """

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features) - eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                            training=False, eps=self.eps)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}"


class NormConv2d(nn.Conv2d):
    """``nn.Conv2d`` followed by an optional ``norm`` submodule and activation.

    The norm is a child called ``norm``, which gives detectron2's key names
    (``conv1.weight``, ``conv1.norm.running_mean``).
    """

    def __init__(self, *args, norm: nn.Module | None = None,
                 activation: Callable[[torch.Tensor], torch.Tensor] | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.norm = norm
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)
        if self.norm is not None:
            x = self.norm(x)
        if self.activation is not None:
            x = self.activation(x)
        return x


class BasicStem(nn.Module):
    """7x7/2 conv (no bias) + FrozenBN + ReLU + 3x3/2 max-pool: stride 4."""

    def __init__(self, in_channels: int, out_channels: int, eps: float) -> None:
        super().__init__()
        self.conv1 = NormConv2d(in_channels, out_channels, 7, stride=2, padding=3, bias=False,
                                norm=FrozenBatchNorm2d(out_channels, eps))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu_(self.conv1(x))
        return F.max_pool2d(x, kernel_size=3, stride=2, padding=1)


class BottleneckBlock(nn.Module):
    """1x1 -> 3x3 -> 1x1 bottleneck with FrozenBN; the stride sits in the 1x1 conv when ``stride_in_1x1``."""

    def __init__(self, in_channels: int, out_channels: int, bottleneck_channels: int, *, stride: int,
                 num_groups: int, stride_in_1x1: bool, dilation: int, eps: float) -> None:
        super().__init__()
        if in_channels != out_channels:
            self.shortcut = NormConv2d(in_channels, out_channels, 1, stride=stride, bias=False,
                                       norm=FrozenBatchNorm2d(out_channels, eps))
        else:
            self.shortcut = None
        stride_1x1, stride_3x3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = NormConv2d(in_channels, bottleneck_channels, 1, stride=stride_1x1, bias=False,
                                norm=FrozenBatchNorm2d(bottleneck_channels, eps))
        self.conv2 = NormConv2d(bottleneck_channels, bottleneck_channels, 3, stride=stride_3x3,
                                padding=dilation, dilation=dilation, groups=num_groups, bias=False,
                                norm=FrozenBatchNorm2d(bottleneck_channels, eps))
        self.conv3 = NormConv2d(bottleneck_channels, out_channels, 1, bias=False,
                                norm=FrozenBatchNorm2d(out_channels, eps))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu_(self.conv1(x))
        out = F.relu_(self.conv2(out))
        out = self.conv3(out)
        out = out + (self.shortcut(x) if self.shortcut is not None else x)
        return F.relu_(out)


class ResNet(nn.Module):
    """Bottleneck ResNet returning ``{"res2": stride 4, ..., "res5": stride 32}``."""

    def __init__(self, cfg: CSEConfig) -> None:
        super().__init__()
        eps = cfg.frozen_bn_eps
        self.stem = BasicStem(3, cfg.stem_out_channels, eps)
        in_channels = cfg.stem_out_channels
        out_channels = cfg.res2_out_channels
        bottleneck = cfg.num_groups * cfg.width_per_group
        self.stage_names = ("res2", "res3", "res4", "res5")
        for idx, (name, num_blocks) in enumerate(zip(self.stage_names, cfg.resnet_blocks)):
            dilation = cfg.res5_dilation if name == "res5" else 1
            first_stride = 1 if idx == 0 or (name == "res5" and dilation == 2) else 2
            blocks = []
            for i in range(num_blocks):
                blocks.append(BottleneckBlock(in_channels, out_channels, bottleneck,
                                              stride=first_stride if i == 0 else 1, num_groups=cfg.num_groups,
                                              stride_in_1x1=cfg.stride_in_1x1, dilation=dilation, eps=eps))
                in_channels = out_channels
            self.add_module(name, nn.Sequential(*blocks))
            out_channels *= 2
            bottleneck *= 2
        self.out_channels = {name: cfg.res2_out_channels * 2 ** i for i, name in enumerate(self.stage_names)}

    def forward(self, x: torch.Tensor, trace: dict | None = None) -> dict[str, torch.Tensor]:
        x = self.stem(x)
        if trace is not None:
            trace["stem"] = x
        out = {}
        for name in self.stage_names:
            x = getattr(self, name)(x)
            out[name] = x
        return out


class FPN(nn.Module):
    """Feature pyramid on res2..res5 (sum fusion, nearest 2x top-down) plus ``p6 = p5[..., ::2, ::2]``.

    Returns ``{"p2": stride 4, ..., "p6": stride 64}``.
    """

    def __init__(self, cfg: CSEConfig) -> None:
        super().__init__()
        bottom_up = ResNet(cfg)
        out = cfg.fpn_out_channels
        # registration order = detectron2's state_dict order: laterals/outputs, then bottom_up
        for level, name in zip(range(2, 6), bottom_up.stage_names):
            self.add_module(f"fpn_lateral{level}", nn.Conv2d(bottom_up.out_channels[name], out, 1))
            self.add_module(f"fpn_output{level}", nn.Conv2d(out, out, 3, padding=1))
        self.bottom_up = bottom_up
        self.size_divisibility = cfg.size_divisibility

    def forward(self, x: torch.Tensor, trace: dict | None = None) -> dict[str, torch.Tensor]:
        feats = self.bottom_up(x, trace)
        if trace is not None:
            trace.update(feats)
        prev = self.fpn_lateral5(feats["res5"])
        results = {"p5": self.fpn_output5(prev)}
        for level in (4, 3, 2):
            top_down = F.interpolate(prev, scale_factor=2.0, mode="nearest")
            prev = getattr(self, f"fpn_lateral{level}")(feats[f"res{level}"]) + top_down
            results[f"p{level}"] = getattr(self, f"fpn_output{level}")(prev)
        results["p6"] = F.max_pool2d(results["p5"], kernel_size=1, stride=2, padding=0)
        return {k: results[k] for k in ("p2", "p3", "p4", "p5", "p6")}
