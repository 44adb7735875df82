"""The total loss, Eq. 7: ``CE(logits, y) + aux_weight CE(aux_logits, y) + OCCL (Eq. 6) + penalty``.

Each term is switchable: ``loss.ce``, ``model.aux_head``, ``loss.occl`` (:class:`cbp.losses.OCCL`,
Eq. 3-6) and the classifier's orthogonality penalty (``model.update=penalty``,
:meth:`cbp.heads.CBPHead.penalty`). OCCL reads the decoder's embedding ``SegOutput.embedding`` and
the classifier's prototypes. A classifier that follows the category centroids (``model.update=ema``)
is handed each forward pass's centroids (:meth:`cbp.heads.CBPHead.observe`): OCCL's when it runs,
else those of the batch's two halves (:func:`batch_centroids`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cbp.engine.config import Config
from cbp.losses import OCCL, assign_views, centroids_from_sums, resize_labels, view_centroids
from cbp.models import SegOutput

__all__ = ["LOSS_TERMS", "batch_centroids", "compute_loss"]

#: The terms of Eq. 7 that the engine logs, in the order of its log records.
LOSS_TERMS = ("loss", "ce", "aux", "centroid", "category", "penalty")


def compute_loss(
    model: nn.Module, out: SegOutput, labels: Tensor, cfg: Config, occl: OCCL | None
) -> tuple[Tensor, dict[str, Tensor]]:
    """Total loss (Eq. 7) and its detached terms for one forward pass.

    Hands the classifier the batch's category centroids when it follows them (``observes_centroids``).

    Args:
        model: the unwrapped Segmentor (for ``.classifier``).
        out: ``SegOutput`` with ``logits`` (B, N, H, W) (input or decoder resolution), ``embedding``
            (B, C, h, w), ``aux_logits`` (B, N, h', w') or None.
        labels: (B, H, W) int64 at input resolution.
        cfg: the run's config (``loss`` section).
        occl: OCCL, or None when ``loss.occl`` is off.

    Returns:
        (the total loss, a scalar with its graph; the terms of :data:`LOSS_TERMS`, detached float32).
    """
    lc = cfg.loss
    zero = out.embedding.new_zeros((), dtype=torch.float32)
    terms = {k: zero for k in LOSS_TERMS}
    total = zero
    if lc.ce:
        total = total + _cross_entropy(out, labels, cfg, terms)
    classifier = model.classifier
    if occl is not None:
        occl_out = occl(out.embedding, labels, classifier.prototypes)
        terms["centroid"], terms["category"] = occl_out["centroid"], occl_out["category"]
        total = total + occl_out["loss"]
        if classifier.observes_centroids:
            classifier.observe(occl_out["category_centroids"], occl_out["present"])
    elif classifier.observes_centroids:
        classifier.observe(*batch_centroids(out.embedding.float(), labels, classifier.num_classes, cfg))
    penalty = classifier.penalty()
    if penalty.requires_grad:
        terms["penalty"] = penalty
        total = total + penalty
    terms["loss"] = total
    return total, {k: v.detach().float() for k, v in terms.items()}


def _cross_entropy(out: SegOutput, labels: Tensor, cfg: Config, terms: dict[str, Tensor]) -> Tensor:
    """``CE(logits, y) + aux_weight CE(aux_logits, y)`` at ``loss.ce_resolution``; sets ``terms["ce"]``
    and ``terms["aux"]``.

    Args:
        out: logits (B, N, H', W') and aux_logits (B, N, h', w') or None.
        labels: (B, H, W) int64 at input resolution.
    """
    lc = cfg.loss
    if lc.ce_resolution == "feature":
        target = resize_labels(labels, tuple(out.logits.shape[-2:]))  # (B, h, w), nearest
    else:
        target = labels
    logits = out.logits
    if tuple(logits.shape[-2:]) != tuple(target.shape[-2:]):
        logits = F.interpolate(logits, size=target.shape[-2:], mode="bilinear", align_corners=False)
    ce = F.cross_entropy(logits.float(), target, ignore_index=lc.ignore_index)
    terms["ce"] = ce
    if out.aux_logits is None:
        return ce
    aux_logits = F.interpolate(out.aux_logits, size=target.shape[-2:], mode="bilinear", align_corners=False)
    aux = F.cross_entropy(aux_logits.float(), target, ignore_index=lc.ignore_index)
    terms["aux"] = aux
    return ce + lc.aux_weight * aux


def batch_centroids(
    embedding: Tensor, labels: Tensor, num_classes: int, cfg: Config
) -> tuple[Tensor, Tensor]:
    """Category centroids (N, C) and presence (N,) of a batch, for the EMA update when OCCL is off.

    Args:
        embedding: (B, C, h, w) decoder embedding (detached here).
        labels: (B, H, W) int64 at input resolution.
        num_classes: N.
    """
    labels = resize_labels(labels, tuple(embedding.shape[-2:]))  # (B, h, w)
    views = "random" if embedding.shape[0] < 2 or embedding.shape[0] % 2 else "batch"
    view = assign_views(labels, views, ignore_index=cfg.loss.ignore_index)
    sums, counts = view_centroids(
        embedding.detach(), labels, view, num_classes, ignore_index=cfg.loss.ignore_index
    )
    c = centroids_from_sums(sums, counts)
    return c.category_centroids, c.present
