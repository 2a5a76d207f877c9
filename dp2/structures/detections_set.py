"""All detections of one image, by kind, in anonymization order."""
from __future__ import annotations

from dataclasses import dataclass

from .detections import BodyDetections, FaceDetections

__all__ = ["Detections"]


@dataclass(frozen=True)
class Detections:
    """What a detector found in one image.

    Kinds are anonymized in field order (faces, then persons without CSE, then persons with
    CSE), matching DeepPrivacy2's "later detections overwrite earlier ones".

    Attributes:
        image_size_hw: (H, W) of the image the detections refer to.
        faces: face boxes, or None when the detector does not look for faces.
        persons: people without a CSE embedding, or None when the detector does not look for them.
        cse_persons: people with a CSE embedding, or None.
    """

    image_size_hw: tuple[int, int]
    faces: FaceDetections | None = None
    persons: BodyDetections | None = None
    cse_persons: BodyDetections | None = None

    KINDS = ("faces", "persons", "cse_persons")

    def items(self):
        """(kind, instances) pairs for the kinds present, in anonymization order."""
        for kind in self.KINDS:
            value = getattr(self, kind)
            if value is not None:
                yield kind, value

    def count(self) -> dict[str, int]:
        return {kind: len(value) for kind, value in self.items()}

    def __len__(self) -> int:
        return sum(len(v) for _, v in self.items())

    def to_dict(self) -> dict:
        """The ``--export-detections`` record: ``{"size_hw": [H, W], "faces": [{"box", "score",
        "landmarks"?}, ...]}`` plus ``persons`` / ``cse_persons`` boxes (see :mod:`dp2.structures.serialize`)."""
        from .serialize import detections_to_dict

        return detections_to_dict(self)

    @classmethod
    def from_dict(cls, record: dict, size_hw: tuple[int, int] | None = None) -> "Detections":
        """Detections from a record (:meth:`to_dict`, or an item of an ``--export-detections`` file),
        checked as untrusted input; faces only (person masks are not stored).

        Raises:
            ValueError: the record is malformed, or made for another ``size_hw``.
        """
        from .serialize import detections_from_dict

        return detections_from_dict(record, size_hw, extra_keys=("source", "frame", "time_s"))
