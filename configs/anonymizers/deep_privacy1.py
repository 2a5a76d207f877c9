"""DeepPrivacy1's generator: DSFD faces + 7 COCO keypoints from torchvision's Keypoint R-CNN.

Unlike DeepPrivacy2, a face without a matching skeleton is still anonymized (keypoints from a
face-box template, logged), and --dst applies.
"""
from dp2.anonymizer import Anonymizer
from dp2.config import LazyCall as L
from dp2.detection.deep_privacy1 import DeepPrivacy1Detector
from dp2.detection.dsfd import DSFDFaceDetector
from dp2.detection.keypoints import KeypointRCNNPersonDetector
from dp2.stages import FaceCropStage

from ..fdf.deep_privacy1 import generator

detector = L(DeepPrivacy1Detector)(
    face_detector=L(DSFDFaceDetector)(score_threshold=0.3, nms_iou_threshold=0.3),
    keypoint_detector=L(KeypointRCNNPersonDetector)(score_threshold=0.3),
    fallback="box_template",
)
anonymizer = L(Anonymizer)(
    detector="${detector}",
    face=L(FaceCropStage)(generator="${generator}", expansion="fdf128", batch_size=None, feather_px=0),
    device=None,
)
