"""dp2: realistic and classic anonymization of people in images and video (DeepPrivacy2-compatible)."""
__version__ = "0.1.0"
