"""DeepPrivacy2's face detector: DSFD (ResNet-152), threshold 0.3, NMS 0.3, full resolution."""
from dp2.config import LazyCall as L
from dp2.detection.dsfd import DSFDFaceDetector

detector = L(DSFDFaceDetector)(score_threshold=0.3, nms_iou_threshold=0.3)
