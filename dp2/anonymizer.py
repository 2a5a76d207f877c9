"""detect -> crop -> generate -> paste. Takes tensors, returns tensors; no paths, no printing."""
from __future__ import annotations

import logging
from typing import Callable, Protocol, Sequence

import torch

from .generation.base import Generator, SynthesisOptions
from .generation.classic import GaussianBlur
from .structures import Detections, FaceDetections

__all__ = ["Anonymizer", "SynthesisOptions", "Stage"]  # SynthesisOptions re-exported

logger = logging.getLogger(__name__)


class Stage(Protocol):
    """Anonymizes one kind of detection in an image."""

    generator: Generator

    def anonymize(self, image: torch.Tensor, instances, *, next_seed: Callable[[], int],
                  options: SynthesisOptions, seeds: Sequence[int] | None = None) -> torch.Tensor: ...


class Anonymizer:
    """Runs a detector and one stage per detection kind.

    Every detection is anonymized: a kind the detector reports but no stage was configured for
    is blurred by ``fallback`` (with a warning), never left as is.

    Args:
        detector: callable ``image uint8 [3, H, W] -> Detections | FaceDetections``.
        face: stage for faces, or None.
        person: stage for persons without CSE, or None.
        cse_person: stage for persons with a CSE embedding, or None.
        fallback: classic filter for kinds without a stage (default: Gaussian blur).
        device: where generators run (``"cpu"``, ``"cuda"``, ``"mps"``); None = ``$DP2_DEVICE``,
            else CUDA when available, else the CPU.
    """

    def __init__(self, *, detector: Callable, face: Stage | None = None, person: Stage | None = None,
                 cse_person: Stage | None = None, fallback: Generator | None = None,
                 device: str | torch.device | None = None) -> None:
        self.detector = detector
        self.stages: dict[str, Stage] = {k: v for k, v in (("faces", face), ("persons", person),
                                                            ("cse_persons", cse_person)) if v is not None}
        if not self.stages:
            raise ValueError("Anonymizer needs at least one stage (face=, person= or cse_person=)")
        self.fallback = fallback if fallback is not None else GaussianBlur()
        self._fallback_stages: dict[str, Stage] = {}
        from .detection.base import resolve_device

        self.device = resolve_device(device)
        for stage in self.stages.values():
            stage.generator.to(self.device)

    @property
    def generators(self) -> dict[str, Generator]:
        return {kind: stage.generator for kind, stage in self.stages.items()}

    @property
    def needs_torch_threads(self) -> bool:
        """Whether torch does heavy work in this pipeline: a generator with weights, or a detector
        that is not marked ``uses_torch_compute = False`` (CenterFace runs on onnxruntime)."""
        heavy_generator = any(next(iter(g.parameters()), None) is not None for g in self.generators.values())
        return heavy_generator or getattr(self.detector, "uses_torch_compute", True)

    @property
    def uses_latent(self) -> bool:
        return any(g.has_latent for g in self.generators.values())

    @property
    def supports_multi_modal_truncation(self) -> bool:
        return any(g.supports_multi_modal_truncation for g in self.generators.values())

    @torch.inference_mode()
    def detect(self, image: torch.Tensor, *, fast: bool = False) -> Detections:
        """Detections for a uint8 [3, H, W] RGB image.

        Args:
            fast: use the detector's cheaper mode where it has one (``detect_fast``, e.g. CenterFace
                without its small-face pass); videos use it between full passes.
        """
        _check_image(image)
        detect_fast = getattr(self.detector, "detect_fast", None) if fast else None
        found = detect_fast(image) if detect_fast is not None else self.detector(image)
        if isinstance(found, FaceDetections):
            found = Detections(image_size_hw=found.image_size_hw, faces=found)
        if not isinstance(found, Detections):
            raise TypeError(f"detector returned {type(found).__name__}, expected Detections or FaceDetections")
        return found

    @torch.inference_mode()
    def anonymize(self, image: torch.Tensor, detections: Detections | None = None, *,
                  next_seed: Callable[[], int] | None = None,
                  options: SynthesisOptions = SynthesisOptions(),
                  seeds: dict[str, Sequence[int]] | None = None) -> torch.Tensor:
        """Anonymize every detection of a uint8 [3, H, W] RGB image; returns a new tensor.

        Args:
            image: uint8 [3, H, W].
            detections: precomputed detections (from a cache, a file, or :meth:`detect`).
            next_seed: returns one latent seed per generated instance (DP2's RNG protocol).
            options: truncation, multi-modal truncation, AMP.
            seeds: per kind, one latent seed per instance in detection order (tracked identities);
                kinds not given draw from ``next_seed``.
        """
        _check_image(image)
        if detections is None:
            detections = self.detect(image)
        if tuple(detections.image_size_hw) != tuple(image.shape[1:]):
            raise ValueError(f"detections are for an image of size {detections.image_size_hw}, "
                             f"got an image of size {tuple(image.shape[1:])}")
        if next_seed is None:
            next_seed = _default_seeds()
        out = image.to(self.device)
        for kind, instances in detections.items():
            if len(instances) == 0:
                continue
            stage = self.stages.get(kind) or self._fallback_stage(kind)
            out = stage.anonymize(out, instances.to(out.device), next_seed=next_seed, options=options,
                                  seeds=None if seeds is None else seeds.get(kind))
        return out.cpu()


    def _fallback_stage(self, kind: str) -> Stage:
        if kind not in self._fallback_stages:
            from .stages import MaskFilterStage, RegionFilterStage

            logger.warning("no stage configured for %s: anonymizing them with %s", kind, type(self.fallback).__name__)
            stage = RegionFilterStage(generator=self.fallback) if kind == "faces" else MaskFilterStage(generator=self.fallback)
            self._fallback_stages[kind] = stage
        return self._fallback_stages[kind]


def _default_seeds() -> Callable[[], int]:
    import numpy as np

    rng = np.random.RandomState(0)
    return lambda: int(rng.randint(0, 2**32, dtype=np.int64))


def _check_image(image: torch.Tensor) -> None:
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"image must be a torch.Tensor, got {type(image).__name__}")
    if image.dtype != torch.uint8 or image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"image must be uint8 [3, H, W], got {image.dtype} {list(image.shape)}")
