"""The one generator contract shared by GANs and classic filters.

Every generator is an ``nn.Module`` with

* ``z_channels``: length of the latent z it consumes (0 = no latent, classic filters);
* ``imsize``: ``(H, W)`` crop size it expects, or ``None`` when any size works;
* ``map_latent(z, truncation_value, center_index)``: turns a sampled z ``[N, z_channels]``
  into whatever ``forward`` takes as ``latent`` (StyleGAN: truncated w; DP1: z);
* ``forward(img, mask, latent=None, **conditions) -> Tensor``:
  ``img`` float32 [N, 3, H, W] in [-1, 1], ``mask`` float32 [N, 1, H, W] with
  1 = keep / 0 = synthesise; returns float [N, 3, H, W] in about [-1, 1]
  (callers clamp). Pixels where ``mask == 1`` must come back unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["Generator", "SynthesisOptions"]


@dataclass(frozen=True)
class SynthesisOptions:
    """Per-run choices that affect generative stages.

    Attributes:
        truncation_value: ``-t``: 0 = average identity (DP2's default), 1 = untruncated.
        multi_modal_truncation: ``--mt``: truncate towards a cluster centre instead of ``w_avg``.
        amp: autocast the generator on CUDA (fp16); no effect on CPU. Used when ``precision`` is None.
        precision: ``--precision``: ``"fp32"`` (DeepPrivacy2's pixels), ``"bf16"`` or ``"fp16"``
            (autocast, channels_last); None = the ``amp`` rule (see
            :func:`dp2.generation.compile.resolve_precision`).
        compile: ``--compile``: run generators compiled by ``torch.compile`` (inductor, fp32 math;
            within 1 uint8 level of eager); falls back to eager with one warning.
        compile_in_background: with ``compile``, compile in a background thread while the
            generator keeps running eagerly, then switch (``--webcam``: no frozen frames).
    """

    truncation_value: float = 0.0
    multi_modal_truncation: bool = False
    amp: bool = True
    precision: str | None = None
    compile: bool = False
    compile_in_background: bool = False




class Generator(nn.Module):
    z_channels: int = 0
    imsize: tuple[int, int] | None = None

    @property
    def has_latent(self) -> bool:
        return self.z_channels > 0

    @property
    def supports_multi_modal_truncation(self) -> bool:
        return self.num_centers > 0

    @property
    def num_centers(self) -> int:
        """Number of multi-modal truncation centres (0 = none)."""
        return 0

    #: True when ``forward`` needs ``keypoints`` [N, 7, 3] (DeepPrivacy1).
    needs_keypoints: bool = False

    def map_latent(self, z: torch.Tensor | None, truncation_value: float = 0.0,
                   center_index: torch.Tensor | None = None) -> torch.Tensor | None:
        return z

    def forward(self, img: torch.Tensor, mask: torch.Tensor, latent: torch.Tensor | None = None,
                **conditions) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError
