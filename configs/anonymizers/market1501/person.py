"""DeepPrivacy2's market1501/person.py: FB_cse_mask_face with the thresholds DP2 used for the
Market-1501 person re-identification crops (persons 0.1, faces 0.5, CSE 0.3) and no face generator.

Faces left outside every person (rare in person crops) get the anonymizer's fallback blur; DP2 left
them as they were.
"""
from ..FB_cse_mask_face import anonymizer, detector  # noqa: F401

detector.person_detector.score_threshold = 0.1
detector.face_detector.score_threshold = 0.5
detector.cse_detector.score_threshold = 0.3
anonymizer.face = None
