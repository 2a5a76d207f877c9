from ..base import anonymizer, detector

detector.score_threshold = 0.7
anonymizer.name = "variant"
_private = {"ignored": True}
