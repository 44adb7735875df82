"""cbp: frozen Category-Basis Prototypes (CBP) and the Online Centroid Contrastive Loss (OCCL).

Reproduces Chen et al., "Frozen is better than learning: A new design of prototype-based
classifier for semantic segmentation", Pattern Recognition 2024.
"""

__version__ = "0.1.0"
