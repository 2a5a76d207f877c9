"""FDF128 face generator with its official checkpoint (DeepPrivacy2 configs/fdf/stylegan_fdf128.py)."""
from dp2.config import LazyCall as L
from dp2.generation.build import load_pretrained_generator

generator = L(load_pretrained_generator)(kind="fdf128")
