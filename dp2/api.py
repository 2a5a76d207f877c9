"""A small Python API over the same machinery the CLI uses.

Example:
    >>> import numpy as np
    >>> from dp2.api import build_anonymizer, anonymize_array  # doctest: +SKIP
    >>> anonymizer = build_anonymizer("traditional/face/gaussian")  # doctest: +SKIP
    >>> out = anonymize_array(anonymizer, np.zeros((64, 64, 3), np.uint8))  # doctest: +SKIP
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch
from omegaconf import DictConfig

from .anonymizer import Anonymizer, SynthesisOptions
from .config import ConfigError, apply_overrides, instantiate, load_config
from .config_names import ConfigNameError, resolve_config
from .generation.latents import LatentSampler

__all__ = ["load_anonymizer_config", "build_anonymizer", "anonymize_array", "anonymize_arrays"]


def load_anonymizer_config(config_path: str | Path, overrides: Sequence[str] = ()) -> DictConfig:
    """Load a config, apply ``key=value`` overrides, and check it defines ``anonymizer``.

    Args:
        config_path: a config file, or a bundled config by name (``"face"``,
            ``"traditional/face/gaussian"``, DeepPrivacy2's ``"configs/anonymizers/face.py"``;
            see :func:`dp2.config_names.resolve_config`).

    Raises:
        ConfigError: unknown name, or a broken config.
    """
    try:
        config_path = resolve_config(config_path)
    except ConfigNameError as e:
        raise ConfigError(str(e)) from e
    cfg = load_config(config_path)
    if "anonymizer" not in cfg:
        raise ConfigError(f"{config_path}: defines no 'anonymizer' (expected anonymizer = LazyCall(Anonymizer)(...))")
    return apply_overrides(cfg, overrides)


def build_anonymizer(config: str | Path | DictConfig, overrides: Sequence[str] = ()) -> Anonymizer:
    """Build the anonymizer of a config file (or an already loaded config)."""
    cfg = config if isinstance(config, DictConfig) else load_anonymizer_config(config, overrides)
    anonymizer = instantiate(cfg.anonymizer, key_path="anonymizer")
    if not isinstance(anonymizer, Anonymizer):
        raise ConfigError(f"'anonymizer' built a {type(anonymizer).__name__}, expected dp2.anonymizer.Anonymizer")
    return anonymizer


def _to_tensor(array: np.ndarray) -> torch.Tensor:
    if not isinstance(array, np.ndarray) or array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        shape = getattr(array, "shape", None)
        raise ValueError(f"expected an RGB uint8 array [H, W, 3], got {getattr(array, 'dtype', type(array))} {shape}")
    return torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1).contiguous()


def anonymize_arrays(anonymizer: Anonymizer, frames: Iterable[np.ndarray], *, seed: int = 0,
                     options: SynthesisOptions = SynthesisOptions()) -> Iterator[np.ndarray]:
    """Anonymize RGB uint8 [H, W, 3] frames one by one (a video, a batch of photos)."""
    sampler = LatentSampler(seed)
    for array in frames:
        out = anonymizer.anonymize(_to_tensor(array), next_seed=sampler.next_seed, options=options)
        yield out.permute(1, 2, 0).numpy()


def anonymize_array(anonymizer: Anonymizer, image: np.ndarray, *, seed: int = 0,
                    options: SynthesisOptions = SynthesisOptions()) -> np.ndarray:
    """Anonymize one RGB uint8 [H, W, 3] image; returns a new array."""
    return next(anonymize_arrays(anonymizer, [image], seed=seed, options=options))
