"""Build the released generators by name, optionally with their official weights.

``kind`` is one of ``fdf256``, ``fdf128``, ``fdh_cse``, ``fdh_nocse``, ``deep_privacy1``, ``triagan``.
``mini=True`` gives the reduced-width variants used by the conformance data
(StyleGAN: ``cnum / 8``, ``z_channels = w_dim = 128``; DP1: channel map from width 32;
TriA-GAN: ``dim 16``, ``w_dim 64``, ``z_channels 16``).
"""
from __future__ import annotations

import logging
import os
from typing import Any

from ..weights import (DP1_WEIGHTS, FDF128_WEIGHTS, FDF256_WEIGHTS, FDH_CSE_WEIGHTS,
                       FDH_NOCSE_WEIGHTS, TRIAGAN_WEIGHTS, WeightsError, WeightSpec, load_checkpoint,
                       load_generator_state, resolve_weights)
from .base import Generator
from .deep_privacy1 import MSGGenerator
from .stylegan_unet import StyleGANUnet
from .triagan import TriaGAN, triagan_kwargs

__all__ = ["GENERATOR_KINDS", "build_generator", "generator_kwargs", "load_pretrained_generator"]

_STYLEGAN_KWARGS: dict[str, dict[str, Any]] = {
    "fdf256": dict(imsize=(256, 256), cnum=64, max_cnum_mul=8, input_cse=False, cse_nc=None,
                   fix_errors=True),
    "fdf128": dict(imsize=(128, 128), cnum=128, max_cnum_mul=4, input_cse=False, cse_nc=None,
                   fix_errors=True),
    "fdh_cse": dict(imsize=(288, 160), cnum=64, max_cnum_mul=8, input_cse=True, cse_nc=16,
                    fix_errors=True),
    "fdh_nocse": dict(imsize=(288, 160), cnum=64, max_cnum_mul=8, input_cse=False, cse_nc=16,
                      fix_errors=False),
}
_WEIGHTS: dict[str, WeightSpec] = {
    "fdf256": FDF256_WEIGHTS, "fdf128": FDF128_WEIGHTS, "fdh_cse": FDH_CSE_WEIGHTS,
    "fdh_nocse": FDH_NOCSE_WEIGHTS, "deep_privacy1": DP1_WEIGHTS, "triagan": TRIAGAN_WEIGHTS,
}
GENERATOR_KINDS = tuple(_WEIGHTS)
logger = logging.getLogger(__name__)
_DP1_MINI_CHANNELS = {4: 32, 8: 32, 16: 32, 32: 32, 64: 16, 128: 8}


def _check_kind(kind: str) -> None:
    if kind not in _WEIGHTS:
        raise ValueError(f"unknown generator kind {kind!r}; expected one of {list(GENERATOR_KINDS)}")


def generator_kwargs(kind: str, *, mini: bool = False) -> dict[str, Any]:
    """Constructor keyword arguments of a released generator (or its mini variant)."""
    _check_kind(kind)
    if kind == "deep_privacy1":
        return {"channels": dict(_DP1_MINI_CHANNELS)} if mini else {}
    if kind == "triagan":
        return triagan_kwargs(mini=mini)
    kwargs = dict(_STYLEGAN_KWARGS[kind])
    if mini:
        kwargs.update(cnum=kwargs["cnum"] // 8, z_channels=128, w_dim=128)
    return kwargs


def build_generator(kind: str, *, mini: bool = False, **overrides: Any) -> Generator:
    """Build a randomly initialised generator of the given kind, in eval mode.

    Args:
        kind: one of :data:`GENERATOR_KINDS`.
        mini: build the reduced-width conformance variant.
        **overrides: constructor keyword arguments that replace the defaults.
    """
    kwargs = generator_kwargs(kind, mini=mini)
    kwargs.update(overrides)
    if kind == "deep_privacy1":
        G = MSGGenerator(**kwargs)
    elif kind == "triagan":
        G = TriaGAN(**kwargs)
    else:
        G = StyleGANUnet(**kwargs)
    return G.eval()


def load_pretrained_generator(kind: str, *, weights_dir: str | os.PathLike | None = None,
                              download: bool = True, progress: bool = True,
                              optional: bool = False) -> Generator | None:
    """Build a released generator and load its official checkpoint (see :mod:`dp2.weights`).

    Args:
        optional: return None (with a warning) instead of raising when the weights cannot be
            found or downloaded; the caller then falls back to a classic filter.
    """
    G = build_generator(kind)
    try:
        path = resolve_weights(_WEIGHTS[kind], weights_dir=weights_dir, download=download,
                               progress=progress)
    except WeightsError as err:
        if not optional:
            raise
        logger.warning("%s generator unavailable (%s)", kind, str(err).splitlines()[0])
        return None
    load_generator_state(G, load_checkpoint(path))
    return G.eval().requires_grad_(False)
