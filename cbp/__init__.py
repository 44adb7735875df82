"""cbp: frozen Category-Basis Prototypes (CBP) and the Online Centroid Contrastive Loss (OCCL).

Reproduces Chen et al., "Frozen is better than learning: A new design of prototype-based
classifier for semantic segmentation", Pattern Recognition 2024.

Where each equation of the paper lives:

* Eq. 1-2 (pixel logits f . w): :mod:`cbp.heads`
* Algorithm 1 (Kaiming -> Gram-Schmidt -> equalise) and Eq. 8 (class separability): :mod:`cbp.prototypes`
* Eq. 3-6 (view centroids, centroid loss, category loss, OCCL): :mod:`cbp.losses`
* Eq. 7 (total loss): :mod:`cbp.train`
* mIoU / mAcc / F1 and Fig. 5's frequency groups: :mod:`cbp.metrics`
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
