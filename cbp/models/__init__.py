"""Segmentation models: timm / smp encoders, mmseg-style decoders, the CBP or linear classifier.

``create_model(backbone, num_classes, ...)`` builds a :class:`Segmentor`; ``BACKBONES`` lists the
names (an unknown one is a ``KeyError`` listing them).
"""

from .builder import BACKBONES, BackboneSpec, create_model, load_encoder_checkpoint
from .decoders import FCNHead, SegformerHead, UPerHead
from .encoders import SmpEncoder, TimmEncoder, TinyCNN
from .segmentor import AuxHead, Segmentor, SegOutput

__all__ = [
    "BACKBONES",
    "AuxHead",
    "BackboneSpec",
    "FCNHead",
    "SegOutput",
    "SegformerHead",
    "Segmentor",
    "SmpEncoder",
    "TimmEncoder",
    "TinyCNN",
    "UPerHead",
    "create_model",
    "load_encoder_checkpoint",
]
