"""Full-body anonymization guided by CSE surface embeddings (DeepPrivacy2's FB_cse.py).

Persons without a CSE match get the no-CSE generator when its weights are there, otherwise a
Gaussian blur over their dilated mask (DeepPrivacy2 left them un-anonymized).
"""
from dp2.anonymizer import Anonymizer
from dp2.config import LazyCall as L
from dp2.generation.build import load_pretrained_generator
from dp2.generation.classic import GaussianBlur
from dp2.stages import BodyCropStage

from ..detectors.full_body import detector

anonymizer = L(Anonymizer)(
    detector="${detector}",
    cse_person=L(BodyCropStage)(generator=L(load_pretrained_generator)(kind="fdh_cse"), batch_size=None),
    person=L(BodyCropStage)(
        generator=L(load_pretrained_generator)(kind="fdh_nocse", optional=True),
        fallback=L(GaussianBlur)(sigma_fraction=0.05),
        batch_size=None,
    ),
    device=None,
)
