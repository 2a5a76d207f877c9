"""DeepPrivacy2's StyleGAN-UNet generator (FDF256, FDF128, FDH with and without CSE).

A U-Net of residual blocks: the encoder turns ``cat(condition, mask[, embedding,
E_mask])`` into a pyramid of features, the decoder is modulated by one latent ``w``
(from the mapping network ``style_net``) and adds the encoder features through 1x1
``unet_block{i}`` convs. Module and parameter names equal the official checkpoints'.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from .base import Generator
from .layers import Conv2d, FullyConnectedLayer, ResidualBlock

__all__ = ["MappingNetwork", "StyleGANUnet"]


def _normalize_2nd_moment(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()


class MappingNetwork(nn.Module):
    """The z -> w mapping network (DP2's ``SG2StyleNet``) with truncation helpers.

    ``w = fc1(fc0(z / rms(z)))``, two lrelu layers with learning-rate multiplier 0.01.
    Buffers: ``w_avg`` [w_dim] (the mean w, the truncation centre) and, when a
    checkpoint provides them, ``w_centers`` [n_centers, w_dim] for multi-modal
    truncation (registered by :meth:`set_w_centers`).
    """

    def __init__(self,
                 z_dim: int = 512,             # Input latent size.
                 w_dim: int = 512,             # Output latent size.
                 num_layers: int = 2,          # Number of FC layers.
                 lr_multiplier: float = 0.01,  # Learning-rate multiplier of the FC layers.
                 ) -> None:
        super().__init__()
        self.z_dim = z_dim
        self.w_dim = w_dim
        self.num_layers = num_layers
        for i in range(num_layers):
            in_features = z_dim if i == 0 else w_dim
            setattr(self, f"fc{i}", FullyConnectedLayer(in_features, w_dim, activation="lrelu",
                                                        lr_multiplier=lr_multiplier))
        self.register_buffer("w_avg", torch.zeros([w_dim]))
        self.w_centers: torch.Tensor | None = None

    def set_w_centers(self, w_centers: torch.Tensor) -> None:
        """Register the multi-modal truncation centres ``[n_centers, w_dim]`` as a buffer."""
        if w_centers.ndim != 2 or w_centers.shape[1] != self.w_dim:
            raise ValueError(f"w_centers must have shape [n_centers, {self.w_dim}], "
                             f"got {list(w_centers.shape)}")
        w_centers = w_centers.detach().to(device=self.w_avg.device, dtype=torch.float32)
        if "w_centers" in self._buffers:
            del self._buffers["w_centers"]
        elif hasattr(self, "w_centers"):
            delattr(self, "w_centers")
        self.register_buffer("w_centers", w_centers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"z must have shape [N, {self.z_dim}], got {list(z.shape)}")
        x = _normalize_2nd_moment(z.to(torch.float32))
        for i in range(self.num_layers):
            x = getattr(self, f"fc{i}")(x)
        return x

    @staticmethod
    def _clamp_t(truncation_value: float) -> float:
        return max(min(float(truncation_value), 1.0), 0.0)

    def get_truncated(self, truncation_value: float, z: torch.Tensor) -> torch.Tensor:
        """``w_avg.lerp(mapping(z), t)`` with t clamped into [0, 1]; returns [N, w_dim]."""
        w = self(z)
        return self.w_avg.to(w.dtype).lerp(w, self._clamp_t(truncation_value))

    def multi_modal_truncate(self, truncation_value: float,
                             w_indices: torch.Tensor | Sequence[int],
                             z: torch.Tensor) -> torch.Tensor:
        """``w_centers[w_indices].lerp(mapping(z), t)``, t clamped into [0, 1]."""
        if self.w_centers is None:
            raise RuntimeError("multi-modal truncation needs w_centers; this checkpoint has none")
        w = self(z)
        idx = torch.as_tensor(w_indices, dtype=torch.long, device=self.w_centers.device).reshape(-1)
        if idx.numel() != w.shape[0]:
            raise ValueError(f"need one centre index per sample: {w.shape[0]} samples, "
                             f"{idx.numel()} indices")
        w0 = self.w_centers[idx].to(device=w.device, dtype=w.dtype)
        return w0.lerp(w, self._clamp_t(truncation_value))

    def extra_repr(self) -> str:
        n_centers = 0 if self.w_centers is None else self.w_centers.shape[0]
        return (f"z_dim={self.z_dim}, w_dim={self.w_dim}, num_layers={self.num_layers}, "
                f"n_centers={n_centers}")


class StyleGANUnet(Generator):
    """DeepPrivacy2's StyleGAN-UNet.

    Official configurations (imsize, cnum, max_cnum_mul, input_cse, fix_errors):
    FDF256 ((256, 256), 64, 8, False, True), FDF128 ((128, 128), 128, 4, False, True),
    FDH-CSE ((288, 160), 64, 8, True, True), FDH no-CSE ((288, 160), 64, 8, False, False).

    The latent handed to :meth:`forward` is ``w`` [N, w_dim], produced by
    :meth:`map_latent` (truncation) from z [N, z_channels].
    """

    def __init__(self, *,
                 imsize: Sequence[int],           # Crop size (H, W).
                 im_channels: int = 3,            # Image channels.
                 min_fmap_resolution: int = 8,    # Larger side of the lowest U-Net level.
                 cnum: int = 64,                  # Base channel count.
                 max_cnum_mul: int = 8,           # Channel cap as a multiple of cnum.
                 n_middle_blocks: int = 0,        # Extra residual blocks at the lowest level.
                 z_channels: int = 512,           # Latent z size.
                 mask_output: bool = True,        # Paste the known pixels back into the output.
                 conv_clamp: float | None = 256,  # Clamp of the convs (scaled by their gain).
                 input_cse: bool = False,         # Take a CSE embedding + E_mask as input.
                 scale_grad: bool = True,         # Training-only option; ignored.
                 cse_nc: int | None = None,       # Channels of the CSE embedding.
                 w_dim: int = 512,                # Latent w size.
                 n_keypoints: int | None = None,  # Unused by the released models.
                 input_keypoints: bool = False,   # Unused by the released models.
                 input_keypoint_indices: Sequence[int] = (),  # Unused by the released models.
                 fix_errors: bool = True,         # False reproduces the FDH no-CSE gains.
                 ) -> None:
        super().__init__()
        if input_keypoints:
            raise NotImplementedError("input_keypoints=True is not used by any released model")
        if input_cse and not cse_nc:
            raise ValueError("input_cse=True needs cse_nc > 0")
        self.imsize = (int(imsize[0]), int(imsize[1]))
        self.im_channels = im_channels
        self.cnum = cnum
        self.max_cnum_mul = max_cnum_mul
        self.z_channels = z_channels
        self.w_dim = w_dim
        self.mask_output = mask_output
        self.input_cse = input_cse
        self.cse_nc = cse_nc
        self.fix_errors = fix_errors
        self.n_levels = int(math.log2(max(self.imsize)) - math.log2(min_fmap_resolution)) + 1
        n = self.n_levels

        def channels(level: int) -> int:
            # Level i has feature maps at max(imsize) / 2**i.
            return cnum * min(2 ** level, max_cnum_mul)

        self.style_net = MappingNetwork(z_dim=z_channels, w_dim=w_dim)
        in_ch = im_channels + 1 + (cse_nc + 1 if input_cse else 0)
        self.from_rgb = Conv2d(in_ch, channels(0), kernel_size=1)  # no clamp (as DP2)
        self.encoder = nn.ModuleList([
            ResidualBlock(channels(i), channels(i + 1), down=2 if i > 0 else 1,
                          conv_clamp=conv_clamp, residual_gain=math.sqrt(1 / 2),
                          fix_errors=fix_errors)
            for i in range(n)])
        unet_gain = math.sqrt(1 / 3) if fix_errors else math.sqrt(1 / 2)
        for j in range(1, n):
            c = channels(n - j)
            setattr(self, f"unet_block{j}", Conv2d(c, c, kernel_size=1, norm=True,
                                                    conv_clamp=conv_clamp, gain=unet_gain))
        self.middle_blocks = nn.ModuleList([
            ResidualBlock(channels(n), channels(n), w_dim=w_dim, norm=True, conv_clamp=conv_clamp,
                          residual_gain=math.sqrt(1 / 2), fix_errors=fix_errors)
            for _ in range(n_middle_blocks)])
        self.decoder = nn.ModuleList([
            ResidualBlock(channels(n - j), channels(n - 1 - j), w_dim=w_dim, norm=True,
                          up=2 if j < n - 1 else 1, conv_clamp=conv_clamp,
                          residual_gain=math.sqrt(1 / 3), fix_errors=fix_errors)
            for j in range(n)])
        self.to_rgb = Conv2d(channels(0), im_channels, kernel_size=1, activation="linear",
                             conv_clamp=conv_clamp)

    # -- generator contract ---------------------------------------------------------------

    @property
    def num_centers(self) -> int:
        centers = self.style_net.w_centers
        return 0 if centers is None else int(centers.shape[0])

    def map_latent(self, z: torch.Tensor | None, truncation_value: float = 0.0,
                   center_index: torch.Tensor | None = None) -> torch.Tensor:
        """Map z [N, z_channels] to the truncated w [N, w_dim].

        With ``center_index`` ([N] long, already reduced modulo the number of centres)
        the truncation pulls towards ``w_centers[center_index]`` instead of ``w_avg``.
        """
        if z is None:
            raise ValueError(f"StyleGANUnet needs z [N, {self.z_channels}]")
        if center_index is not None:
            return self.style_net.multi_modal_truncate(truncation_value, center_index, z)
        return self.style_net.get_truncated(truncation_value, z)

    def forward(self, img: torch.Tensor, mask: torch.Tensor, latent: torch.Tensor | None = None,
                **conditions) -> torch.Tensor:
        """Anonymise ``img`` ([N,3,H,W] in [-1,1]) where ``mask`` ([N,1,H,W]) is 0.

        Args:
            img: float [N, 3, H, W] in [-1, 1].
            mask: float [N, 1, H, W], 1 = keep.
            latent: w [N, w_dim] from :meth:`map_latent`.
            **conditions: ``embedding`` [N, cse_nc, H, W] and ``E_mask`` [N, 1, H, W]
                for the CSE model; anything else is rejected.

        Returns:
            float [N, 3, H, W], not clamped.
        """
        if latent is None:
            raise ValueError(f"StyleGANUnet needs latent w [N, {self.w_dim}]; use map_latent(z)")
        unknown = set(conditions) - {"embedding", "E_mask"}
        if unknown:
            raise TypeError(f"unexpected conditions {sorted(unknown)}; expected embedding, E_mask")
        return self.synthesize(img * mask, mask, latent, **conditions)

    def synthesize(self, condition: torch.Tensor, mask: torch.Tensor, w: torch.Tensor,
                   embedding: torch.Tensor | None = None,
                   E_mask: torch.Tensor | None = None) -> torch.Tensor:
        """DP2's ``G(condition, mask, w=w[, embedding, E_mask])["img"]``.

        Args:
            condition: float [N, 3, H, W], ``img * mask``.
            mask: float [N, 1, H, W], 1 = keep.
            w: float [N, w_dim]; one w modulates every decoder layer.
            embedding: float [N, cse_nc, H, W] (CSE model only).
            E_mask: float [N, 1, H, W] (CSE model only).

        Returns:
            float [N, 3, H, W].
        """
        n, _, h, wd = condition.shape
        if (h, wd) != self.imsize:
            raise ValueError(f"expected crops of size {self.imsize}, got {(h, wd)}")
        if mask.shape != (n, 1, h, wd):
            raise ValueError(f"mask must have shape {[n, 1, h, wd]}, got {list(mask.shape)}")
        if w.ndim != 2 or w.shape != (n, self.w_dim):
            raise ValueError(f"w must have shape {[n, self.w_dim]}, got {list(w.shape)}")
        if self.input_cse:
            if embedding is None or E_mask is None:
                raise ValueError("the CSE generator needs embedding and E_mask")
            if embedding.shape != (n, self.cse_nc, h, wd) or E_mask.shape != (n, 1, h, wd):
                raise ValueError(f"embedding/E_mask must have shapes {[n, self.cse_nc, h, wd]} / "
                                 f"{[n, 1, h, wd]}, got {list(embedding.shape)} / {list(E_mask.shape)}")
            x = torch.cat((condition, mask, embedding, E_mask), dim=1)
        else:
            x = torch.cat((condition, mask), dim=1)
        w = w.to(x.dtype)
        x = self.from_rgb(x)
        features = []
        for i, block in enumerate(self.encoder):
            x = block(x)
            if i != len(self.encoder) - 1:
                features.append(x)
        for block in self.middle_blocks:
            x = block(x, w=w)
        for j, block in enumerate(self.decoder):
            if j != 0:
                x = x + getattr(self, f"unet_block{j}")(features[-j])
            x = block(x, w=w)
        x = self.to_rgb(x)
        if self.mask_output:
            x = condition * mask + (1 - mask) * x
        return x

    def extra_repr(self) -> str:
        return (f"imsize={self.imsize}, cnum={self.cnum}, max_cnum_mul={self.max_cnum_mul}, "
                f"n_levels={self.n_levels}, z_channels={self.z_channels}, w_dim={self.w_dim}, "
                f"input_cse={self.input_cse}, fix_errors={self.fix_errors}")
