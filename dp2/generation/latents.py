"""DeepPrivacy2's latent sampling protocol, without touching numpy's global RNG.

DP2 seeds numpy's global RNG once (``np.random.seed(seed)``) and draws one
``np.random.randint(0, 2**32)`` per anonymised instance, in anonymisation order. That number
is the instance's latent seed: ``z = RandomState(seed).normal(size=(1, z_channels))`` cast to
float32. Multi-modal truncation picks the cluster centre ``seed % n_centers``.

:class:`LatentSampler` owns a private ``numpy.random.RandomState`` seeded the same way, so it
reproduces DP2's numbers exactly without global state. Draws use ``dtype=np.int64``: numpy's
default integer is 32-bit on Windows with numpy < 2, where DP2's own call fails with
"high is out of bounds for int32"; on Linux the default is int64, which this matches.
"""
from __future__ import annotations

import numpy as np
import torch

__all__ = ["LatentSampler", "z_from_seed"]

_SEED_HIGH = 2**32


class LatentSampler:
    """Stream of per-instance latent seeds, equal to DP2's global-numpy draws.

    Args:
        seed: the run's seed (DP2 ``--seed``), an int in ``[0, 2**32)``; None draws fresh
            OS entropy (not reproducible).

    >>> sampler = LatentSampler(0)
    >>> sampler.next_seed(), sampler.next_seed()
    (2357136044, 2546248239)
    >>> z = sampler.next_z(4)
    >>> z.shape, z.dtype
    (torch.Size([1, 4]), torch.float32)
    """

    def __init__(self, seed: int | None) -> None:
        self.seed = seed
        self._rng = np.random.RandomState(seed)

    def next_seed(self) -> int:
        """The next latent seed, an int in ``[0, 2**32)`` (one DP2 ``randint(0, 2**32)`` draw)."""
        return int(self._rng.randint(0, _SEED_HIGH, dtype=np.int64))

    def next_z(self, z_channels: int) -> torch.Tensor:
        """``z_from_seed(self.next_seed(), z_channels)``: float32 [1, z_channels]."""
        return z_from_seed(self.next_seed(), z_channels)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(seed={self.seed})"


def z_from_seed(seed: int, z_channels: int) -> torch.Tensor:
    """The latent DP2 derives from one seed.

    Args:
        seed: int in ``[0, 2**32)`` (from :meth:`LatentSampler.next_seed` or a tracker).
        z_channels: latent length (512 for the official StyleGAN and DP1 generators).

    Returns:
        float32 [1, z_channels] on the CPU: ``RandomState(seed).normal(size=(1, z_channels))``
        drawn in float64 and cast to float32.

    >>> z_from_seed(1234567, 3)
    tensor([[-0.5146, -0.4496,  1.7346]])
    """
    z = np.random.RandomState(int(seed)).normal(size=(1, int(z_channels)))
    return torch.from_numpy(z.astype(np.float32))
