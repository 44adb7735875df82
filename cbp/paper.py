"""Numbers quoted from the paper (never measured here): the settings the engine's presets and the
library's defaults take (:data:`PAPER_HPARAMS`, :data:`PAPER_TAU`, :data:`PAPER_ABLATION`, the
iteration counts), and the results of the book's side-by-side tables. This is the one place they are
written; :mod:`cbp.engine.config` imports them.

Table 1 of the paper (ADE20K and COCO-Stuff-10K, baseline vs CBP + OCCL) gives each model's
absolute mIoU; the book quotes the *gain* of CBP + OCCL over each model's own baseline that the
text of Section 4.2 states, in mIoU points (:data:`PAPER_TABLE1_GAINS`), and sends the reader to
Table 1 for the absolute values. The ablation tables
(Section 4.3, SegFormer-B0, ADE20K, 40K iterations) give absolute values; they live in
:data:`PAPER_ARMS` (the study's arm names as keys).

Setting of every Table 1 number: ImageNet-1K pretrained backbone, batch 16 on 8 GPUs (2 images
each), crop 512 x 512, 160K iterations on ADE20K and 80K on COCO-Stuff-10K, single-scale test.
"""

from __future__ import annotations

from typing import NamedTuple

#: The paper's model (Table 1 row) of each recipe, as the text names it; a backbone's recipe is
#: :attr:`cbp.models.BackboneSpec.paper_model`.
PAPER_MODEL: dict[str, str] = {
    "fcn": "FCN (ResNet-50)",
    "convnext": "UPerNet (ConvNeXt-B)",
    "swin": "UPerNet (Swin-B)",
    "segformer": "SegFormer (MiT variant not stated in the text)",
}

#: (dataset, paper model) -> mIoU gain of CBP + OCCL over the learnable baseline, Section 4.2 text.
PAPER_TABLE1_GAINS: dict[tuple[str, str], float] = {
    ("ade20k", "fcn"): 1.3,
    ("ade20k", "convnext"): 0.7,
    ("ade20k", "swin"): 0.7,
    ("ade20k", "segformer"): 1.0,
    ("cocostuff10k", "fcn"): 0.5,
    ("cocostuff10k", "convnext"): 1.1,
    ("cocostuff10k", "swin"): 0.6,
    ("cocostuff10k", "segformer"): 1.5,
}

#: Training iterations of Table 1 per dataset.
PAPER_ITERS: dict[str, int] = {"ade20k": 160_000, "cocostuff10k": 80_000}


class Hparams(NamedTuple):
    """OCCL's weights and the prototypes' norm of one setting of the paper."""

    lam: float  # lambda, weight of the centroid loss (Eq. 4)
    phi: float  # weight of the category loss (Eq. 5)
    length: float  # T, the common L2 norm of the prototypes (Algorithm 1)


#: (dataset, paper model) -> lambda, phi, T of Section 4 (the presets of :mod:`cbp.engine.config`).
#: COCO-Stuff-10K Swin's T = 2 is not stated in the text (the project's choice).
PAPER_HPARAMS: dict[tuple[str, str], Hparams] = {
    ("ade20k", "fcn"): Hparams(0.4, 0.1, 2.0),
    ("ade20k", "convnext"): Hparams(1.0, 0.2, 2.0),
    ("ade20k", "swin"): Hparams(1.0, 0.2, 1.0),
    ("ade20k", "segformer"): Hparams(1.0, 0.1, 1.0),
    ("cocostuff10k", "fcn"): Hparams(1.0, 0.3, 0.3),
    ("cocostuff10k", "convnext"): Hparams(1.0, 0.3, 3.0),
    ("cocostuff10k", "swin"): Hparams(1.0, 0.3, 2.0),
    ("cocostuff10k", "segformer"): Hparams(1.0, 0.1, 1.0),
}

#: Temperature tau of every dot product of OCCL (Eq. 4-5), in every setting.
PAPER_TAU = 0.07

#: Section 4.3's setting (the ablations and the analysis: SegFormer-B0, ADE20K): lambda, phi, T and
#: iterations. The library's defaults (:class:`cbp.OCCL`, :class:`cbp.CBPHead`,
#: :func:`cbp.models.create_model`) and the engine config's are this setting.
PAPER_ABLATION = Hparams(lam=1.0, phi=0.3, length=2.0)
PAPER_ABLATION_ITERS = 40_000

#: The multiple of the encoder's learning rate at which the decoder and the classifier train, in the
#: paper's SegFormer recipe, which is mmsegmentation's.
PAPER_HEAD_LR_MULT = 10

#: Training images and classes of each dataset of Table 1, as Section 4.1 gives them.
DATASET_SIZES: dict[str, tuple[str, int]] = {"ade20k": ("20K", 150), "cocostuff10k": ("9K", 171)}

#: Display name of each dataset.
DATASET_NAMES: dict[str, str] = {
    "ade20k": "ADE20K",
    "cocostuff10k": "COCO-Stuff-10K",
    "synthetic": "SYNTHETIC",
}

#: Tables 3-5 of the paper, arm -> (mIoU, mAcc), None = not given; SegFormer-B0, ADE20K, 40K iterations.
PAPER_ARMS: dict[str, tuple[float | None, float | None]] = {
    "linear": (33.4, 44.4),
    "cbp": (33.5, 44.4),
    "linear_occl": (34.3, 45.8),
    "cbp_occl": (35.1, 48.1),
    "gradient": (34.6, 46.1),
    "ema": (29.9, 41.8),
    "penalty": (None, None),  # "lower than both Frozen and Gradient"
    "orthogonal": (33.3, 44.6),
    "equal": (35.0, 47.8),
    "masked": (30.3, 41.7),
    "masked_orthogonal": (35.1, 48.0),
    "text": (33.2, 45.2),
    "length1": (None, None),
    "length3": (None, None),
    "length4": (None, None),
    "length5": (None, None),
}


#: Setting of every number of Section 4.3 (the ablations and the analysis).
PAPER_ABLATION_LABEL = "paper (ADE20K, SegFormer-B0, 40K iters, GPU)"

#: Table 8 of the paper, classifier -> (class separability CS of Eq. 8, mIoU).
PAPER_TABLE8: dict[str, tuple[float, float]] = {
    "cbp": (0.0, 35.1),
    "equal": (6.2, 35.0),
    "learnable": (75.8, 34.6),
}

#: The "relation factor" of Section 4.3 between a class's training pixel count and the L2 norm of its
#: learnable prototype (the text does not say whether the count is raw or log).
PAPER_NORM_CORRELATION = 0.27

#: F1 of the rarest of 15 frequency groups (Fig. 5); the text gives CBP's 32.0 and its margins
#: (+7.7 over no equalisation, +2.5 over the learnable classifier).
PAPER_RAREST_GROUP_F1: dict[str, float] = {
    "cbp": 32.0,
    "no_equalisation": 32.0 - 7.7,
    "learnable": 32.0 - 2.5,
}

#: IoU change of three classes when equalisation is removed (Table 7).
PAPER_TABLE7_DELTA: dict[str, float] = {"flag": -7.3, "radiator": -5.3, "wall": 0.0}


def table1_setting(dataset: str) -> str:
    """E.g. ``"paper: ADE20K, 160K iters, batch 16 on 8 GPUs, ImageNet-pretrained"``."""
    iters = PAPER_ITERS[dataset] // 1000
    return f"paper: {DATASET_NAMES[dataset]}, {iters}K iters, batch 16 on 8 GPUs, ImageNet-pretrained"
