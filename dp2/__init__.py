"""dp2: realistic and classic anonymization of people in images and video (DeepPrivacy2-compatible).

Layers, lowest first. A module imports its own layer and those below, never one above (README,
"Architecture"; enforced by tests/test_import_cycles.py):

    structures, ops        typed values (Detections, CropBatch, Frame); pure tensor functions
    io                     media and files, weights, configs (dp2.io, dp2.weights, dp2.config, ...)
    detection              detectors, generators, tracking (dp2.detection, dp2.generation, dp2.tracking)
    stages, anonymizer     crop -> generate -> paste for one kind; detect -> stages
    runner                 the one frame loop for images, video and webcam
    run                    a run from a config plus options (dp2.run, dp2.dataset)
    cli, api, distributed  the command, the Python API, Ray; only ``python -m dp2`` imports dp2.cli

The Python API (:mod:`dp2.api`)::

    import dp2
    anonymizer = dp2.load("traditional/face/gaussian", device="cpu")
    result = anonymizer(image)              # NumPy, PIL or torch in, the same kind out
    for frame in anonymizer.stream(frames): # a video's frames, with tracking and gap filling
        ...
    anonymizer.anonymize_file("clip.mp4", "clip_anonymized.mp4")

``import dp2`` is light: the names below load their modules on first use.
"""
__version__ = "0.1.0"

__all__ = ["ExportError", "Pipeline", "Result", "RunOptions", "anonymize_dataset", "anonymize_file",
           "anonymize_folder", "load"]

_API = {"ExportError", "Pipeline", "Result", "anonymize_file", "anonymize_folder", "load"}


def __getattr__(name: str):
    # Lazy, so that ``import dp2`` needs neither Ray nor the models.
    if name == "anonymize_dataset":
        from .distributed.ray_backend import anonymize_dataset

        return anonymize_dataset
    if name in _API:
        from . import api

        return getattr(api, name)
    if name == "RunOptions":
        from .options import RunOptions

        return RunOptions
    raise AttributeError(f"module 'dp2' has no attribute {name!r}")
