"""Video building blocks: box tracking with per-track latent seeds, shot cuts, temporal gap filling."""
from .shot_cut import ShotCutDetector
from .temporal_fill import FilledFrame, TemporalFiller
from .tracker import BoxTracker, TrackSeeds

__all__ = ["BoxTracker", "FilledFrame", "ShotCutDetector", "TemporalFiller", "TrackSeeds"]
