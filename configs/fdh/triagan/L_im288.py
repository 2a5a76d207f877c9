"""TriA-GAN body generator, 288x160, with its official checkpoint (DeepPrivacy2 configs/fdh/triagan/L_im288.py).

Takes persons with keypoints (FB_triagan's detector); given persons without keypoints (e.g. as
``--person-generator`` of FB_cse.py), it generates them with every keypoint marked invisible.
"""
from dp2.config import LazyCall as L
from dp2.generation.build import load_pretrained_generator

generator = L(load_pretrained_generator)(kind="triagan")
