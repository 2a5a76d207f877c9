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
"""
__version__ = "0.1.0"

__all__ = ["anonymize_dataset"]


def __getattr__(name: str):
    # Lazy, so that ``import dp2`` needs neither Ray nor the models.
    if name == "anonymize_dataset":
        from .distributed.ray_backend import anonymize_dataset

        return anonymize_dataset
    raise AttributeError(f"module 'dp2' has no attribute {name!r}")
