"""Full-body anonymization without CSE: Mask R-CNN persons and the FDH no-CSE generator only."""
from dp2.anonymizer import Anonymizer
from dp2.config import LazyCall as L
from dp2.detection.full_body import FullBodyDetector
from dp2.detection.maskrcnn import MaskRCNNPersonDetector
from dp2.generation.build import load_pretrained_generator
from dp2.stages import BodyCropStage

detector = L(FullBodyDetector)(person_detector=L(MaskRCNNPersonDetector)(score_threshold=0.3), target_hw=(288, 160))
anonymizer = L(Anonymizer)(
    detector="${detector}",
    person=L(BodyCropStage)(generator=L(load_pretrained_generator)(kind="fdh_nocse"), batch_size=None),
    device=None,
)
