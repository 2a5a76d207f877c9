"""Typed values that flow between pipeline stages."""
from .crops import CropBatch, Frame
from .detections import BodyDetections, FaceDetections, PersonDetections
from .detections_set import Detections

__all__ = ["BodyDetections", "CropBatch", "Detections", "FaceDetections", "Frame", "PersonDetections"]
