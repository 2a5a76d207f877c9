"""FDH body generator without CSE (DeepPrivacy2 configs/fdh/styleganL_nocse.py).

Its official URL is dead (DP2 issue #25); place the file by hand, it is verified by md5.
"""
from dp2.config import LazyCall as L
from dp2.generation.build import load_pretrained_generator

generator = L(load_pretrained_generator)(kind="fdh_nocse")
