"""What the network-backed detectors share: device choice, input checks, lazily loaded weights."""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from ..weights import WeightSpec, resolve_weights

__all__ = ["DEVICE_ENV_VAR", "LazyModelDetector", "check_image", "resolve_device"]

#: Default device for every model of a run (the CLI's ``--device`` sets it).
DEVICE_ENV_VAR = "DP2_DEVICE"


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``device`` as a ``torch.device``; None picks ``$DP2_DEVICE`` (set by ``--device``), else CUDA
    when available, else the CPU.

    Raises:
        ValueError: ``device`` names a backend that is not available (CUDA or MPS).
    """
    if device is None:
        device = os.environ.get(DEVICE_ENV_VAR) or None
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device} requested but CUDA is not available")
    if device.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ValueError(f"device {device} requested but MPS is not available")
    return device


def check_image(image) -> None:
    """Raise unless ``image`` is a uint8 ``[3, H, W]`` tensor (H or W may be 0)."""
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"image must be a torch.Tensor (uint8 [3, H, W] RGB), got {type(image).__name__}")
    if image.dtype != torch.uint8:
        raise ValueError(f"image must be uint8 [3, H, W] RGB, got dtype {image.dtype}")
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"image must have shape [3, H, W] (RGB, channels first), got {list(image.shape)}")


class LazyModelDetector:
    """Base of detectors whose network is built and loaded on first use (config loading stays cheap).

    Subclasses set ``weight_spec`` and implement :meth:`_load_model`; ``score_threshold`` is a
    validated public attribute (the CLI's ``--dst`` sets it).

    Args:
        score_threshold: in [0, 1].
        weights_dir: folder searched first for the weights (else ``$DP2_WEIGHTS_DIR``, the torch hub cache).
        weights_path: an explicit weights file (skips the lookup and the hash check).
        download: allow downloading missing weights.
        device: ``cpu``, ``cuda``, ``mps``; None = CUDA if available.
    """

    weight_spec: WeightSpec

    def __init__(self, *, score_threshold: float, weights_dir: str | os.PathLike | None = None,
                 weights_path: str | os.PathLike | None = None, download: bool = True,
                 device: str | torch.device | None = None) -> None:
        self._model: nn.Module | None = None
        self.score_threshold = score_threshold
        self.weights_dir = weights_dir
        self.weights_path = Path(weights_path) if weights_path is not None else None
        self.download = bool(download)
        self.device = resolve_device(device)

    @property
    def score_threshold(self) -> float:
        return self._score_threshold

    @score_threshold.setter
    def score_threshold(self, value: float) -> None:
        if not 0.0 <= float(value) <= 1.0:
            raise ValueError(f"score_threshold must be in [0, 1], got {value}")
        self._score_threshold = float(value)

    @property
    def model(self) -> nn.Module:
        """The network with its weights (built and loaded on first access)."""
        if self._model is None:
            self._model = self._load_model()
        return self._model

    def weights_file(self) -> Path:
        """The weights to load: ``weights_path`` or the verified file found by the weights manager."""
        if self.weights_path is not None:
            return self.weights_path
        return resolve_weights(self.weight_spec, weights_dir=self.weights_dir, download=self.download)

    def _load_model(self) -> nn.Module:  # pragma: no cover - interface
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(score_threshold={self.score_threshold}, device={str(self.device)!r})"
