"""DeepPrivacy (v1) multi-scale-gradient generator, as ported into DeepPrivacy2.

A U-Net at 128x128: weight-scaled convs with LeakyReLU(0.2) and pixel-wise
normalisation, concatenation skips, and at 4x4 the latent z (viewed as [32, 4, 4])
plus a pose map from 7 facial keypoints. The image is the sum of RGB outputs of
every resolution (nearest-upsampled), divided by 6. Module names equal the official
checkpoint's, including the unused ``pose_preprocessor.{1,3}.linear.*`` tensors.

Latent handling: this model has no mapping network, so ``map_latent`` returns z
unchanged and truncation has no effect (as in DeepPrivacy2, where the DP1 path
ignores ``truncation_value``). DeepPrivacy2's anonymizer even ignores its seeded z
and draws ``torch.randn`` inside the generator; here z is always passed explicitly,
so outputs are reproducible.
"""
from __future__ import annotations

import math
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from .base import Generator

__all__ = ["MSGGenerator", "remap_legacy_dp1_keys"]

_OFFICIAL_CHANNELS = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128}
_LRELU_SLOPE = 0.2


class WSConv2d(nn.Conv2d):
    """Conv with weight scaling ``1 / sqrt(fan_in)`` applied at run time (bias unscaled)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        super().__init__(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        self.ws_scale = 1 / math.sqrt(in_channels * kernel_size ** 2)
        nn.init.normal_(self.weight)
        nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.ws_scale, self.bias, padding=self.padding)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", ws_scale={self.ws_scale:.6g}"


class WSLinear(nn.Linear):
    """Linear layer with run-time weight scale ``1 / sqrt(in_features)``.

    The original class also builds an inner ``nn.Linear`` that its forward never uses;
    it is kept (as ``linear``) only so that the official state dict loads strictly.
    """

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__(in_features, out_features)
        self.linear = nn.Linear(in_features, out_features)  # unused, for checkpoint keys
        self.wt_scale = 1 / math.sqrt(in_features)
        nn.init.normal_(self.weight)
        nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.wt_scale, self.bias)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", wt_scale={self.wt_scale:.6g}"


class PixelNorm(nn.Module):
    """``x * rsqrt(mean_c(x^2) + 1e-7)`` over the channel axis."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * (x.square().mean(dim=1, keepdim=True) + 1e-7).rsqrt()


class _SignedRange(nn.Module):
    """Map keypoint coordinates from [0, 1] to [-1, 1]."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2 - 1


def _conv_act(in_channels: int, out_channels: int, kernel_size: int) -> list[nn.Module]:
    return [WSConv2d(in_channels, out_channels, kernel_size), nn.LeakyReLU(_LRELU_SLOPE), PixelNorm()]


class BasicBlock(nn.Module):
    """Two 3x3 conv + lrelu + pixel-norm layers: ``in -> in -> out``."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(*_conv_act(in_channels, in_channels, 3),
                                    *_conv_act(in_channels, out_channels, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class _ConvAct(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(*_conv_act(in_channels, out_channels, kernel_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class SkipConnection(nn.Module):
    """Concatenate the decoder and encoder features, fuse with a 1x1 conv."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = _ConvAct(channels * 2, channels, 1)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat((x, skip), dim=1))


class PoseFCNN(nn.Module):
    """Keypoints [N, 14] in [0, 1] -> pose feature map [N, 16, 4, 4]."""

    def __init__(self, pose_size: int = 14, hidden_size: int = 128,
                 output_shape: tuple[int, int, int] = (16, 4, 4)) -> None:
        super().__init__()
        self.output_shape = output_shape
        self.pose_preprocessor = nn.Sequential(
            _SignedRange(),
            WSLinear(pose_size, hidden_size), nn.LeakyReLU(_LRELU_SLOPE),
            WSLinear(hidden_size, math.prod(output_shape)), nn.LeakyReLU(_LRELU_SLOPE))

    def forward(self, pose: torch.Tensor) -> torch.Tensor:
        return self.pose_preprocessor(pose).view(-1, *self.output_shape)


class _Decoder(nn.Module):
    def __init__(self, ch: Mapping[int, int], z_shape: tuple[int, int, int], pose_size: int) -> None:
        super().__init__()
        self.pose_fcnn = PoseFCNN(pose_size, 128, (16, 4, 4))
        in_4 = ch[8] + z_shape[0] + 16  # encoder feature + z + pose
        self.basic_block4 = BasicBlock(in_4, ch[4])
        for r in (8, 16, 32, 64, 128):
            self.add_module(f"skip_connection{r}", SkipConnection(ch[r // 2]))
            self.add_module(f"basic_block{r}", BasicBlock(ch[r // 2], ch[r]))


class _Encoder(nn.Module):
    def __init__(self, ch: Mapping[int, int]) -> None:
        super().__init__()
        for r in (128, 64, 32, 16, 8, 4):
            self.add_module(f"basic_block{r}", BasicBlock(ch[r], ch[max(r // 2, 4)]))


class MSGGenerator(Generator):
    """DeepPrivacy v1 generator (128x128 faces, 7 keypoints), ``configs/fdf/deep_privacy1.py``.

    ``forward(img, mask, latent=z, keypoints=[N, 7, 3])`` where z is [N, 512].
    """

    def __init__(self, *, channels: Mapping[int, int] | None = None) -> None:
        """Args:
            channels: resolution -> channel map; default the official
                ``{4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128}``.
        """
        super().__init__()
        ch = dict(_OFFICIAL_CHANNELS if channels is None else {int(k): int(v) for k, v in channels.items()})
        if sorted(ch) != sorted(_OFFICIAL_CHANNELS):
            raise ValueError(f"channels must map each of {sorted(_OFFICIAL_CHANNELS)} to a width, got {ch}")
        self.channels = ch
        self.imsize = (128, 128)
        self.z_channels = 512
        self.needs_keypoints = True
        self.z_shape = (32, 4, 4)
        self.pose_size = 14
        self.resolutions = (4, 8, 16, 32, 64, 128)
        self.rgb_convolutions = nn.ModuleDict(
            {str(r): WSConv2d(ch[r], 3, 1) for r in self.resolutions})
        self.decoder = _Decoder(ch, self.z_shape, self.pose_size)
        self.encoder = _Encoder(ch)
        self.from_rgb = nn.Sequential(*_conv_act(3 + 2, ch[128], 1))

    def map_latent(self, z: torch.Tensor | None, truncation_value: float = 0.0,
                   center_index: torch.Tensor | None = None) -> torch.Tensor | None:
        """Return z unchanged: DP1 has no mapping network and ignores truncation."""
        return z

    def forward(self, img: torch.Tensor, mask: torch.Tensor, latent: torch.Tensor | None = None,
                **conditions) -> torch.Tensor:
        """Anonymise ``img`` where ``mask`` is 0.

        Args:
            img: float [N, 3, 128, 128] in [-1, 1].
            mask: float [N, 1, 128, 128], 1 = keep.
            latent: z [N, 512].
            **conditions: ``keypoints`` float [N, 7, 2|3], (x, y[, visibility]) in [0, 1]
                relative to the crop.

        Returns:
            float [N, 3, 128, 128].
        """
        unknown = set(conditions) - {"keypoints"}
        if unknown or "keypoints" not in conditions:
            raise TypeError(f"MSGGenerator needs exactly the condition 'keypoints', got {sorted(conditions)}")
        if latent is None:
            raise ValueError("MSGGenerator needs latent z [N, 512]; it never samples one itself")
        return self.synthesize(img * mask, mask, conditions["keypoints"], latent)

    def synthesize(self, condition: torch.Tensor, mask: torch.Tensor, keypoints: torch.Tensor,
                   z: torch.Tensor) -> torch.Tensor:
        """DP2's ``MSGGenerator(condition, mask, keypoints, z=z)["img"]``.

        Args:
            condition: float [N, 3, 128, 128], ``img * mask``.
            mask: float [N, 1, 128, 128], 1 = keep.
            keypoints: float [N, 7, 2|3]; visibility (if any) is ignored.
            z: float [N, 512].

        Returns:
            float [N, 3, 128, 128]: ``condition * mask + (1 - mask) * rgb``.
        """
        n = condition.shape[0]
        if tuple(condition.shape[1:]) != (3, *self.imsize):
            raise ValueError(f"condition must have shape [N, 3, 128, 128], got {list(condition.shape)}")
        if mask.shape != (n, 1, *self.imsize):
            raise ValueError(f"mask must have shape [{n}, 1, 128, 128], got {list(mask.shape)}")
        if keypoints.ndim != 3 or keypoints.shape[:2] != (n, 7) or keypoints.shape[2] < 2:
            raise ValueError(f"keypoints must have shape [{n}, 7, 2|3], got {list(keypoints.shape)}")
        if z.shape != (n, self.z_channels):
            raise ValueError(f"z must have shape [{n}, {self.z_channels}], got {list(z.shape)}")
        pose = keypoints[:, :, :2].reshape(n, -1).clip(-1, 1)  # [N, 14]
        x = torch.cat((condition, mask, 1 - mask), dim=1)
        x = self.from_rgb(x)
        features = {}
        for r in (128, 64, 32, 16, 8, 4):
            x = getattr(self.encoder, f"basic_block{r}")(x)
            features[r] = x
            if r != 4:
                x = F.avg_pool2d(x, 2)
        dec = self.decoder
        x = torch.cat((x, z.view(n, *self.z_shape).to(x.dtype)), dim=1)
        x = torch.cat((x, dec.pose_fcnn(pose.to(x.dtype))), dim=1)
        x = dec.basic_block4(x)
        rgb = self.rgb_convolutions["4"](x)
        for r in (8, 16, 32, 64, 128):
            x = F.interpolate(x, scale_factor=2, mode="nearest")
            x = getattr(dec, f"skip_connection{r}")(x, features[r])
            x = getattr(dec, f"basic_block{r}")(x)
            rgb = F.interpolate(rgb, scale_factor=2, mode="nearest") + self.rgb_convolutions[str(r)](x)
        rgb = rgb / 6
        return condition * mask + (1 - mask) * rgb

    def extra_repr(self) -> str:
        return f"imsize={self.imsize}, z_channels={self.z_channels}, channels={self.channels}"


def remap_legacy_dp1_keys(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename keys of very old DeepPrivacy checkpoints (``basic_block0`` style) to the current ones.

    Applied only when a key contains ``basic_block0``: ``{decoder,encoder}.basic_block{i}.``
    and ``decoder.skip_connection{i}.`` become index ``4 * 2**i``; ``from_rgb`` keys drop
    ``encoder.`` and ``.conv.layers``; ``decoder.to_rgb`` keys are dropped.
    """
    if not any("basic_block0" in k for k in state):
        return dict(state)
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if "decoder.to_rgb" in key:
            continue
        new = key
        if "from_rgb" in key:
            new = new.replace("encoder.", "").replace(".conv.layers", "")
        else:
            for prefix in ("decoder.basic_block", "decoder.skip_connection", "encoder.basic_block"):
                if new.startswith(prefix):
                    rest = new[len(prefix):]
                    idx, sep, tail = rest.partition(".")
                    if idx.isdigit():
                        new = f"{prefix}{4 * 2 ** int(idx)}{sep}{tail}"
                    break
        out[new] = value
    return out
