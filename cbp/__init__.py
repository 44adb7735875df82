"""cbp: frozen Category-Basis Prototypes (CBP) and the Online Centroid Contrastive Loss (OCCL).

Reproduces Chen et al., "Frozen is better than learning: A new design of prototype-based
classifier for semantic segmentation", Pattern Recognition 2024.

Where each equation of the paper lives:

* Eq. 1-2 (pixel logits f . w): :mod:`cbp.heads`
* Algorithm 1 (Kaiming -> Gram-Schmidt -> equalise) and Eq. 8 (class separability): :mod:`cbp.prototypes`
* Eq. 3-6 (view centroids, centroid loss, category loss, OCCL): :mod:`cbp.losses`
* Eq. 7 (total loss): :mod:`cbp.engine.loss`
* mIoU / mAcc / F1 and Fig. 5's frequency groups: :mod:`cbp.metrics`

Architecture: four layers (the fourth in two parts), and imports run one way only, from a higher layer to a lower one
(``tests/test_architecture.py`` fails on an import against this rule, function-level ones included):

1. the method, pure (torch, numpy, scipy only): :mod:`cbp.prototypes`, :mod:`cbp.heads`,
   :mod:`cbp.losses`, :mod:`cbp.metrics`, :mod:`cbp.analysis`, the paper's numbers
   :mod:`cbp.paper`, and three primitives, :mod:`cbp.distributed` (no-op-in-one-process
   collectives), :mod:`cbp.io` (atomic JSON, JSON lines) and :mod:`cbp.cli` (exit codes, the
   one-line argument parser of every command);
2. :mod:`cbp.models` (encoders, decoders, segmentors), :mod:`cbp.data` (datasets, transforms) and
   :mod:`cbp.adapt` (CBP and OCCL put into a transformers / smp / torchvision model);
3. :mod:`cbp.engine` (config, build, train, evaluate, checkpoint, ...), started by the thin entry
   modules :mod:`cbp.train` and :mod:`cbp.evaluate`;
4. :mod:`cbp.experiments` (the reproduction study), then :mod:`cbp.book` (helpers of the book's
   pages), which may import the study.
"""

from cbp import metrics
from cbp.heads import CBPHead, LinearHead
from cbp.losses import OCCL
from cbp.prototypes import category_basis_prototypes, class_separability

__version__ = "0.1.0"

__all__ = [
    "CBPHead",
    "LinearHead",
    "OCCL",
    "category_basis_prototypes",
    "class_separability",
    "metrics",
]
