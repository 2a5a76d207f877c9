"""DeepPrivacy2's TriA-GAN body generator (``configs/fdh/triagan/L_im288.py``, FB_triagan).

A U-Net of pre-activation residual blocks at 288x160. The input stacks the condition (the
image with the person removed), both polarities of the dilated and of the Mask R-CNN mask,
one map per COCO keypoint and a one-hot joint (limb) map; every conv, in the encoder as in
the decoder, is modulated by one latent ``w`` from the mapping network.

Differences from the StyleGAN-UNet convs (:class:`dp2.generation.layers.Conv2d`), all needed
for checkpoint parity:

* pre-activation order: InstanceNorm (when set) -> ``x * affine(w) + affine_beta(w)`` ->
  activation x its default gain -> conv with ``weight * weight_gain * gain`` and
  ``bias * gain`` -> ``+ noise_const * noise_strength`` (decoder only); no clamp;
* resolutions change only between levels, through separate FIR resamplers;
* ``from_rgb`` (7x7) keeps the weight gain its authors computed for the input channel
  *groups*, ``1 / sqrt(7 * 49)``, although it takes 30 channels;
* the output is ``mask * img + (1 - mask) * to_rgb(x)`` (no tanh, no clamp).

Module, parameter and buffer names and their order equal the official ones, so official
checkpoints load as they are (after :func:`map_triagan_checkpoint`).
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .base import Generator
from .layers import ACTIVATION_GAINS, make_fir_filter, upfirdn2d
from .layers import FullyConnectedLayer
from .stylegan_unet import MappingNetwork

__all__ = ["TriaConv2d", "TriaGAN", "TriaResidualBlock", "keypoint_maps", "map_triagan_checkpoint",
           "triagan_kwargs"]

_LRELU_SLOPE = 0.2
#: Number of COCO keypoints the released model takes.
N_KEYPOINTS = 17
#: Joint-map categories (head, left arm, right arm, body, left leg, right leg).
N_JOINT_CATEGORIES = 6


def triagan_kwargs(*, mini: bool = False) -> dict[str, Any]:
    """Constructor arguments of the released ``L_im288`` model, or of the conformance mini
    variant (``dim 16``, ``w_dim 64``, ``z_channels 16``)."""
    kwargs: dict[str, Any] = dict(imsize=(288, 160), im_channels=3, dim=128, dim_mults=(1, 2, 4, 4, 4, 4),
                                  num_resnet_blocks=2, n_middle_blocks=2, z_channels=64, w_dim=512,
                                  norm_enc=True, norm_dec=True, use_maskrcnn_mask=True, input_keypoints=True,
                                  n_keypoints=N_KEYPOINTS, input_joint=True, layer_scale=True, use_noise=True)
    if mini:
        kwargs.update(dim=16, w_dim=64, z_channels=16)
    return kwargs


def map_triagan_checkpoint(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The ``ckpt_mapper`` of DP2's ``configs/generators/triagan.py``.

    Progressive-growing checkpoints hold one RGB head per resolution,
    ``decoder.to_rgb.{0..5}.{weight,bias}``; the final model has one, ``decoder.to_rgb.*``.
    Such keys are renamed, later indices overwriting earlier ones; other keys pass unchanged.

    >>> import torch
    >>> sd = {"decoder.to_rgb.0.bias": torch.zeros(1), "decoder.to_rgb.5.bias": torch.ones(1), "a": torch.ones(1)}
    >>> {k: float(v) for k, v in map_triagan_checkpoint(sd).items()}
    {'a': 1.0, 'decoder.to_rgb.bias': 1.0}
    """
    out: dict[str, torch.Tensor] = {}
    legacy: dict[str, list[tuple[int, torch.Tensor]]] = {}
    prefix = "decoder.to_rgb."
    for key, value in state.items():
        rest = key[len(prefix):] if key.startswith(prefix) else ""
        index, _, name = rest.partition(".")
        if index.isdigit() and name in ("weight", "bias"):
            legacy.setdefault(prefix + name, []).append((int(index), value))
        else:
            out[key] = value
    for key, items in legacy.items():
        out[key] = max(items, key=lambda item: item[0])[1]
    return out


class TriaConv2d(nn.Module):
    """TriA-GAN's pre-activation convolution (stride 1, "same" padding).

    Forward, in order: InstanceNorm (``norm``; eps 1e-5, no affine) -> ``x * affine(w) +
    affine_beta(w)`` per input channel (``w_dim``) -> activation x its default gain ->
    conv with ``weight * weight_gain * gain`` plus ``bias * gain`` -> ``+ noise_const *
    noise_strength`` (``resolution``; the stored constant, as in DP2's eval mode).
    """

    def __init__(self,
                 in_channels: int,                 # Input channels.
                 out_channels: int,                # Output channels.
                 kernel_size: int = 3,             # Square kernel side (odd).
                 activation: str = "lrelu",        # "linear" or "lrelu", applied to the input.
                 bias: bool = True,                # Learn an additive bias?
                 norm: bool = False,               # InstanceNorm on the input?
                 w_dim: int | None = None,         # Modulate the input from w; None = off.
                 gain: float = 1.0,                # Output gain (residual branch scaling).
                 resolution: Sequence[int] | None = None,  # (H, W): add a learned-strength noise constant.
                 weight_gain: float | None = None,  # Override 1/sqrt(in_channels * k * k).
                 ) -> None:
        super().__init__()
        if activation not in ACTIVATION_GAINS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATION_GAINS)}, got {activation!r}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.activation = activation
        self.norm = norm
        self.w_dim = w_dim
        self.gain = float(gain)
        self.act_gain = ACTIVATION_GAINS[activation]
        self.weight_gain = (1 / math.sqrt(in_channels * kernel_size ** 2)) if weight_gain is None else weight_gain
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias = nn.Parameter(torch.zeros([out_channels])) if bias else None
        self.use_noise = resolution is not None
        if self.use_noise:
            self.noise_strength = nn.Parameter(torch.zeros([]))
            self.register_buffer("noise_const", torch.randn([int(resolution[0]), int(resolution[1])]))
        if w_dim is not None:
            self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1.0)
            self.affine_beta = FullyConnectedLayer(w_dim, in_channels, bias_init=0.0)

    def forward(self, x: torch.Tensor, w: torch.Tensor | None = None) -> torch.Tensor:
        if self.norm:
            x = F.instance_norm(x, eps=1e-5)
        if self.w_dim is not None:
            if w is None:
                raise ValueError("this TriaConv2d is modulated by w; pass w [N, w_dim]")
            gamma = self.affine(w)[:, :, None, None]       # [N, Cin, 1, 1]
            beta = self.affine_beta(w)[:, :, None, None]   # [N, Cin, 1, 1]
            x = torch.addcmul(beta, x, gamma)
        if self.activation == "lrelu":
            x = F.leaky_relu(x, _LRELU_SLOPE) * self.act_gain
        weight = self.weight.to(x.dtype) * (self.weight_gain * self.gain)
        bias = None if self.bias is None else self.bias.to(x.dtype) * self.gain
        x = F.conv2d(x, weight, bias, padding=self.kernel_size // 2)
        if self.use_noise:
            x = x + self.noise_const.to(x.dtype) * self.noise_strength.to(x.dtype)
        return x

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"activation={self.activation}, gain={self.gain:.6g}, weight_gain={self.weight_gain:.6g}, "
                f"norm={self.norm}, bias={self.bias is not None}, w_dim={self.w_dim}, noise={self.use_noise}")


class TriaResidualBlock(nn.Module):
    """``skip(x) + layer_scale * conv1(conv0(x, w), w)`` at one resolution.

    ``skip`` is a linear 1x1 conv without bias; ``skip`` and ``conv1`` carry ``gain``
    (sqrt(1/2), or sqrt(1/3) where a U-Net feature was added to the input).
    """

    def __init__(self,
                 in_channels: int,                 # Input channels.
                 out_channels: int,                # Output channels.
                 w_dim: int,                       # Latent size of the modulations.
                 norm: bool = True,                # InstanceNorm before each 3x3 conv.
                 gain: float = math.sqrt(0.5),     # Scale of the skip and of conv1.
                 layer_scale: bool = True,         # Learned per-channel scale of the residual branch.
                 resolution: Sequence[int] | None = None,  # (H, W) of the noise constants; None = no noise.
                 ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.gain = gain
        if layer_scale:
            self.layer_scale = nn.Parameter(torch.full([1, out_channels, 1, 1], 1e-5))
        else:
            self.layer_scale = None
        self.conv0 = TriaConv2d(in_channels, in_channels, w_dim=w_dim, norm=norm, resolution=resolution)
        self.conv1 = TriaConv2d(in_channels, out_channels, w_dim=w_dim, norm=norm, gain=gain, resolution=resolution)
        self.skip = TriaConv2d(in_channels, out_channels, kernel_size=1, activation="linear", bias=False, gain=gain)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        y = self.skip(x)
        x = self.conv1(self.conv0(x, w), w)
        if self.layer_scale is not None:
            x = x * self.layer_scale.to(x.dtype)
        return y + x

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, gain={self.gain:.6g}"


class _Resample(nn.Module):
    """2x FIR up- or downsampling between U-Net levels (buffer ``resample_filter``)."""

    def __init__(self, up: int = 1, down: int = 1) -> None:
        super().__init__()
        self.up, self.down = up, down
        self.register_buffer("resample_filter", make_fir_filter())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.up > 1:  # H -> 2H: zero-insert, pad (2, 1), filter with gain 4
            return upfirdn2d(x, self.resample_filter, up=self.up, padding=(2, 1, 2, 1), gain=self.up ** 2)
        return upfirdn2d(x, self.resample_filter, down=self.down, padding=(1, 1, 1, 1))

    def extra_repr(self) -> str:
        return f"up={self.up}, down={self.down}"


class _Encoder(nn.Module):
    def __init__(self, channels: list[int], resolutions: list[tuple[int, int]], num_blocks: int, w_dim: int,
                 norm: bool, layer_scale: bool) -> None:
        super().__init__()
        levels = []
        for level, c in enumerate(channels):
            c_next = channels[level - 1] if level > 0 else c
            blocks = [TriaResidualBlock(c, c_next if b == num_blocks - 1 else c, w_dim, norm=norm,
                                        layer_scale=layer_scale) for b in range(num_blocks)]
            levels.append(nn.ModuleList(blocks))
        self.layers = nn.ModuleList(levels)  # index 0 = lowest resolution
        self.downsample = _Resample(down=2)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        features = []
        for level in range(len(self.layers) - 1, -1, -1):  # highest resolution first
            for block in self.layers[level]:
                x = block(x, w)
                features.append(x)
            if level > 0:
                x = self.downsample(x)
        return x, features


class _Decoder(nn.Module):
    def __init__(self, channels: list[int], resolutions: list[tuple[int, int]], num_blocks: int,
                 n_middle_blocks: int, w_dim: int, norm: bool, layer_scale: bool, use_noise: bool,
                 im_channels: int) -> None:
        super().__init__()
        levels, unets = [], []
        for level, c in enumerate(channels):
            c_in = channels[level - 1] if level > 0 else c
            res = resolutions[level] if use_noise else None
            blocks, unet = [], []
            for b in range(num_blocks):
                with_feature = level > 0 and b == 0
                blocks.append(TriaResidualBlock(c_in if b == 0 else c, c, w_dim, norm=norm, layer_scale=layer_scale,
                                                gain=math.sqrt(1 / 3) if with_feature else math.sqrt(1 / 2),
                                                resolution=res))
                unet.append(TriaConv2d(c_in, c_in, kernel_size=1, bias=False, norm=True, gain=math.sqrt(1 / 3))
                            if with_feature else nn.Identity())
            levels.append(nn.ModuleList(blocks))
            unets.append(nn.ModuleList(unet))
        self.layers = nn.ModuleList(levels)      # index 0 = lowest resolution
        self.unet_layers = nn.ModuleList(unets)  # 1x1 convs on the encoder features (first block per level)
        self.upsample = _Resample(up=2)
        self.middle_blocks = nn.ModuleList([
            TriaResidualBlock(channels[0], channels[0], w_dim, norm=norm, layer_scale=layer_scale,
                              resolution=resolutions[0] if use_noise else None)
            for _ in range(n_middle_blocks)])
        self.to_rgb = TriaConv2d(channels[-1], im_channels, kernel_size=1, activation="linear")

    def forward(self, x: torch.Tensor, features: list[torch.Tensor], w: torch.Tensor) -> torch.Tensor:
        for block in self.middle_blocks:
            x = block(x, w)
        features = list(features)
        for level, (blocks, unets) in enumerate(zip(self.layers, self.unet_layers)):
            if level > 0:
                x = self.upsample(x)
            for block, unet in zip(blocks, unets):
                feature = features.pop()  # the encoder's outputs, last first
                if not isinstance(unet, nn.Identity):
                    x = x + unet(feature)
                x = block(x, w)
        return self.to_rgb(x)


def keypoint_maps(keypoints: torch.Tensor, imsize: Sequence[int]) -> torch.Tensor:
    """One map per keypoint with a single 1 at the keypoint's pixel (visible ones only).

    Args:
        keypoints: float [N, K, 3]: (x, y) relative to the crop in [0, 1], visibility (> 0 = visible).
        imsize: (H, W) of the maps.

    Returns:
        float32 [N, K, H, W]; the pixel is ``(round(y * H), round(x * W))`` (half to even),
        keypoints whose pixel falls outside the map are left out.

    >>> keypoint_maps(torch.tensor([[[0.5, 0.25, 1.0], [0.1, 0.1, 0.0]]]), (4, 4))[0, 0]
    tensor([[0., 0., 0., 0.],
            [0., 0., 1., 0.],
            [0., 0., 0., 0.],
            [0., 0., 0., 0.]])
    """
    if keypoints.ndim != 3 or keypoints.shape[2] != 3:
        raise ValueError(f"keypoints must have shape [N, K, 3], got {list(keypoints.shape)}")
    h, w = int(imsize[0]), int(imsize[1])
    n, k = keypoints.shape[:2]
    x = torch.round(keypoints[..., 0] * w).long()
    y = torch.round(keypoints[..., 1] * h).long()
    valid = (keypoints[..., 2] > 0) & (x >= 0) & (x < w) & (y >= 0) & (y < h)
    maps = torch.zeros((n * k, h * w), dtype=torch.float32, device=keypoints.device)
    rows = torch.arange(n * k, device=keypoints.device)[valid.flatten()]
    maps[rows, (y * w + x).flatten()[valid.flatten()]] = 1
    return maps.view(n, k, h, w)


class TriaGAN(Generator):
    """TriA-GAN (Hukkelås & Lindseth, "Synthesizing Anyone, Anywhere, in Any Pose"), as released
    with DeepPrivacy2 for FB_triagan.

    The latent handed to :meth:`forward` is ``w`` [N, w_dim] from :meth:`map_latent`. Conditions:
    ``maskrcnn_mask`` [N, 1, H, W] (1 = background, the undilated person mask inverted),
    ``keypoints`` [N, 17, 3] (crop-relative x, y and visibility) and ``joint_map`` [N, 1, H, W]
    (uint8 0..6, see :func:`dp2.ops.joint_map.draw_joint_map`).
    """

    needs_keypoints = False      # (the face stage's DeepPrivacy1 keypoints)
    needs_body_keypoints = True  # the body stage passes maskrcnn_mask, keypoints and joint_map
    input_cse = False            # CSE persons are cropped without their embedding

    def __init__(self, *,
                 imsize: Sequence[int] = (288, 160),      # Crop size (H, W).
                 im_channels: int = 3,                    # Image channels.
                 dim: int = 128,                          # Channels at the highest resolution.
                 dim_mults: Sequence[int] = (1, 2, 4, 4, 4, 4),  # Channel multipliers, highest resolution first.
                 num_resnet_blocks: int = 2,              # Residual blocks per level (encoder and decoder).
                 n_middle_blocks: int = 2,                # Blocks at the lowest resolution between them.
                 z_channels: int = 64,                    # Latent z size.
                 w_dim: int = 512,                        # Latent w size.
                 norm_enc: bool = True,                   # InstanceNorm in the encoder convs.
                 norm_dec: bool = True,                   # InstanceNorm in the decoder convs.
                 use_maskrcnn_mask: bool = True,          # Input the undilated Mask R-CNN mask too.
                 input_keypoints: bool = True,            # Input one map per keypoint.
                 n_keypoints: int = N_KEYPOINTS,          # Number of keypoints.
                 input_joint: bool = True,                # Input the one-hot joint map.
                 layer_scale: bool = True,                # Learned scale of each residual branch.
                 use_noise: bool = True,                  # Noise constants in the decoder.
                 mask_output: bool = True,                # Paste the known pixels back into the output.
                 ) -> None:
        super().__init__()
        self.imsize = (int(imsize[0]), int(imsize[1]))
        self.im_channels = im_channels
        self.dim = dim
        self.dim_mults = tuple(int(m) for m in dim_mults)
        self.z_channels = z_channels
        self.w_dim = w_dim
        self.use_maskrcnn_mask = use_maskrcnn_mask
        self.input_keypoints = input_keypoints
        self.n_keypoints = n_keypoints
        self.input_joint = input_joint
        self.mask_output = mask_output
        n_levels = len(self.dim_mults)
        channels = [dim * m for m in reversed(self.dim_mults)]  # index 0 = lowest resolution
        scale = 2 ** (n_levels - 1)
        if self.imsize[0] % scale or self.imsize[1] % scale:
            raise ValueError(f"imsize {self.imsize} must be divisible by {scale} ({n_levels} levels)")
        resolutions = [(self.imsize[0] // 2 ** (n_levels - 1 - i), self.imsize[1] // 2 ** (n_levels - 1 - i))
                       for i in range(n_levels)]
        self.style_net = MappingNetwork(z_dim=z_channels, w_dim=w_dim)
        in_channels = (im_channels + 2 + 2 * use_maskrcnn_mask + n_keypoints * input_keypoints
                       + N_JOINT_CATEGORIES * input_joint)
        # DP2 sized this gain for one channel per input *group* (condition's 3 + mask + ...).
        groups = im_channels + 1 + use_maskrcnn_mask + input_keypoints + input_joint
        self.from_rgb = TriaConv2d(in_channels, channels[-1], kernel_size=7, activation="linear",
                                   weight_gain=1 / math.sqrt(groups * 7 ** 2))
        self.encoder = _Encoder(channels, resolutions, num_resnet_blocks, w_dim, norm_enc, layer_scale)
        self.decoder = _Decoder(channels, resolutions, num_resnet_blocks, n_middle_blocks, w_dim, norm_dec,
                                layer_scale, use_noise, im_channels)

    @staticmethod
    def map_checkpoint_state(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Applied by :func:`dp2.weights.load_generator_state` (DP2's ``ckpt_mapper``)."""
        return map_triagan_checkpoint(state)

    # -- generator contract ---------------------------------------------------------------

    @property
    def num_centers(self) -> int:
        centers = self.style_net.w_centers
        return 0 if centers is None else int(centers.shape[0])

    def map_latent(self, z: torch.Tensor | None, truncation_value: float = 0.0,
                   center_index: torch.Tensor | None = None) -> torch.Tensor:
        """Map z [N, z_channels] to the truncated w [N, w_dim] (towards ``w_avg``, or towards
        ``w_centers[center_index]`` when the checkpoint has centres)."""
        if z is None:
            raise ValueError(f"TriaGAN needs z [N, {self.z_channels}]")
        if center_index is not None:
            return self.style_net.multi_modal_truncate(truncation_value, center_index, z)
        return self.style_net.get_truncated(truncation_value, z)

    def forward(self, img: torch.Tensor, mask: torch.Tensor, latent: torch.Tensor | None = None,
                **conditions) -> torch.Tensor:
        """Anonymize ``img`` ([N, 3, H, W] in [-1, 1]) where ``mask`` ([N, 1, H, W]) is 0.

        Args:
            img: float [N, 3, H, W] in [-1, 1].
            mask: float [N, 1, H, W], 1 = keep.
            latent: w [N, w_dim] from :meth:`map_latent`.
            **conditions: ``maskrcnn_mask``, ``keypoints``, ``joint_map`` (see the class docstring).

        Returns:
            float [N, 3, H, W], not clamped.
        """
        if latent is None:
            raise ValueError(f"TriaGAN needs latent w [N, {self.w_dim}]; use map_latent(z)")
        unknown = set(conditions) - {"maskrcnn_mask", "keypoints", "joint_map"}
        if unknown:
            raise TypeError(f"unexpected conditions {sorted(unknown)}; expected maskrcnn_mask, keypoints, joint_map")
        return self.synthesize(img, mask, latent, **conditions)[0]

    def _inputs(self, img, mask, maskrcnn_mask, keypoints, joint_map) -> torch.Tensor:
        n, _, h, w = img.shape
        if (h, w) != self.imsize:
            raise ValueError(f"expected crops of size {self.imsize}, got {(h, w)}")
        expected = {"mask": mask, "maskrcnn_mask": maskrcnn_mask, "joint_map": joint_map}
        for name, value in expected.items():
            needed = name == "mask" or (name == "maskrcnn_mask" and self.use_maskrcnn_mask) or (
                name == "joint_map" and self.input_joint)
            if needed and value is None:
                raise ValueError(f"TriaGAN needs {name} [N, 1, H, W]")
            if value is not None and tuple(value.shape) != (n, 1, h, w):
                raise ValueError(f"{name} must have shape {[n, 1, h, w]}, got {list(value.shape)}")
        parts = [mask * img, mask, 1 - mask]
        if self.use_maskrcnn_mask:
            m = maskrcnn_mask.to(img.dtype)
            parts += [m, 1 - m]
        if self.input_keypoints:
            if keypoints is None or tuple(keypoints.shape) != (n, self.n_keypoints, 3):
                got = None if keypoints is None else list(keypoints.shape)
                raise ValueError(f"keypoints must have shape {[n, self.n_keypoints, 3]}, got {got}")
            parts.append(keypoint_maps(keypoints, self.imsize).to(img.dtype))
        if self.input_joint:
            jm = joint_map[:, 0].long()
            if not torch.compiler.is_compiling() and bool(((jm < 0) | (jm > N_JOINT_CATEGORIES)).any()):
                raise ValueError(f"joint_map values must lie in 0..{N_JOINT_CATEGORIES}")
            onehot = F.one_hot(jm, N_JOINT_CATEGORIES + 1)[..., 1:]  # [N, H, W, 6], category 0 = none
            parts.append(onehot.permute(0, 3, 1, 2).to(img.dtype))
        return torch.cat(parts, dim=1)

    def synthesize(self, img: torch.Tensor, mask: torch.Tensor, w: torch.Tensor,
                   maskrcnn_mask: torch.Tensor | None = None, keypoints: torch.Tensor | None = None,
                   joint_map: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """DP2's ``G(img=, condition=, mask=, maskrcnn_mask=, keypoints=, joint_map=, w=)``.

        Returns:
            ``(img, unmasked)``: float [N, 3, H, W] each; ``img = mask * img + (1 - mask) *
            unmasked`` (or ``unmasked`` when ``mask_output`` is off).
        """
        if w.ndim != 2 or w.shape != (img.shape[0], self.w_dim):
            raise ValueError(f"w must have shape {[img.shape[0], self.w_dim]}, got {list(w.shape)}")
        x = self._inputs(img, mask, maskrcnn_mask, keypoints, joint_map)
        w = w.to(x.dtype)
        x = self.from_rgb(x)
        x, features = self.encoder(x, w)
        unmasked = self.decoder(x, features, w)
        out = mask * img + (1 - mask) * unmasked if self.mask_output else unmasked
        return out, unmasked

    def extra_repr(self) -> str:
        return (f"imsize={self.imsize}, dim={self.dim}, dim_mults={list(self.dim_mults)}, "
                f"z_channels={self.z_channels}, w_dim={self.w_dim}, input_keypoints={self.input_keypoints}, "
                f"input_joint={self.input_joint}")
