"""dp2: realistic and classic anonymization of people in images and video (DeepPrivacy2-compatible)."""
__version__ = "0.1.0"

__all__ = ["anonymize_dataset"]


def __getattr__(name: str):
    # Lazy, so that ``import dp2`` needs neither Ray nor the models.
    if name == "anonymize_dataset":
        from .distributed.ray_backend import anonymize_dataset

        return anonymize_dataset
    raise AttributeError(f"module 'dp2' has no attribute {name!r}")
