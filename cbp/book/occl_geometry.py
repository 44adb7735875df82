"""What OCCL's gradients do to the view centroids of one batch (chapter 4, Section 3.3).

Two measurements on a fixed batch of features, labels and prototypes, with OCCL's ``views="batch"``
(first half of the images = view 1, second half = view 2; a fixed split the measurements can name,
passed explicitly) and the classes present in both views:

* :func:`descent_directions`: where one gradient step of a weighted OCCL moves the view-1 centroids,
  compared on the unit sphere (:func:`tangent_cosine`) with the directions towards the class's
  prototype, the same class in the other view and the other classes' category centroids;
* :func:`follow`: the features themselves as free parameters, optimised by Adam under the loss, with
  the cosines between views, between classes and between each class and its prototype logged.

Everything reuses :mod:`cbp.losses` (:class:`cbp.losses.OCCL`, :func:`cbp.losses.view_centroids`,
:func:`cbp.losses.centroids_from_sums`, :func:`cbp.losses.assign_views`); the results are plain
floats in dicts, ready for a table or a plot.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from cbp.losses import OCCL, ViewCentroids, assign_views, centroids_from_sums, resize_labels, view_centroids

__all__ = ["batch_views", "descent_directions", "follow", "tangent_cosine"]


def batch_views(
    features: Tensor, labels: Tensor, num_classes: int
) -> tuple[Tensor, Tensor, ViewCentroids, Tensor]:
    """Labels at the features' resolution, OCCL's ``"batch"`` views, the centroids and the shared classes.

    Args:
        features: (B, C, h, w) feature map.
        labels: (B, H, W) int64 labels, 255 = ignored (resized to (h, w) by nearest, as OCCL does).
        num_classes: N, the number of classes.

    Returns:
        ``small`` (B, h, w) labels, ``view`` (B, h, w) in {0, 1}, the view centroids of ``features``
        (a :class:`cbp.losses.ViewCentroids`) and ``idx`` (K,) int64, the classes present in both views.
    """
    small = resize_labels(labels, tuple(features.shape[-2:]))  # (B, h, w)
    view = assign_views(small, "batch")  # (B, h, w)
    sums, counts = view_centroids(features, small, view, num_classes)  # (2, N, C), (2, N)
    cent = centroids_from_sums(sums, counts)
    idx = torch.nonzero(cent.in_both_views).flatten()  # (K,)
    return small, view, cent, idx


def tangent_cosine(direction: Tensor, at: Tensor, targets: Tensor) -> Tensor:
    """Cosine between a step and the direction towards a target, on the unit sphere at a point.

    The direction from ``u`` towards ``t`` on the sphere is the part of ``t`` tangent at ``u``,
    ``t - (t . u) u``; this returns its cosine with ``direction``: +1 = straight towards the target,
    -1 = straight away, 0 = sideways.

    Args:
        direction: (K, C) unit step directions, one per point.
        at: (K, C) unit points ``u`` on the sphere.
        targets: (K, C) one target per point, or (K, M, C) M targets per point (any norm).

    Returns:
        (K,) or (K, M) cosines.
    """
    t = F.normalize(targets, dim=-1)  # (K, C) or (K, M, C)
    if t.dim() == 2:
        return (direction * F.normalize(t - (t * at).sum(-1, keepdim=True) * at, dim=-1)).sum(-1)  # (K,)
    tangent = t - (t * at[:, None]).sum(-1, keepdim=True) * at[:, None]  # (K, M, C)
    return (direction[:, None] * F.normalize(tangent, dim=-1)).sum(-1)  # (K, M)


def descent_directions(
    features: Tensor, labels: Tensor, prototypes: Tensor, *, tau: float, lam: float, phi: float
) -> dict[str, float]:
    """Where one gradient step of ``lam * centroid + phi * category`` (Eq. 6) moves the view-1 centroids.

    The descent direction ``-dL/dF`` is summed over the pixels of class i in view 1 (the direction in
    which one step moves ``v_i1``) and compared, by :func:`tangent_cosine` at ``v_i1 / |v_i1|``, with
    the directions towards three targets; each cosine is averaged over the classes in both views.

    Args:
        features: (B, C, h, w) feature map (not modified).
        labels: (B, H, W) int64 labels.
        prototypes: (N, C) class prototypes.
        tau: OCCL temperature.
        lam: weight of the centroid loss (Eq. 4).
        phi: weight of the category loss (Eq. 5).

    Returns:
        dict of mean cosines, ``"own_prototype"`` (towards ``w_i``), ``"other_view"`` (towards
        ``v_i2``) and ``"other_classes"`` (towards ``s_j`` for the other classes j present in the
        batch, averaged over all pairs i != j).
    """
    classes = prototypes.shape[0]
    small, view, cent, idx = batch_views(features, labels, classes)
    feats = features.clone().requires_grad_(True)
    occl = OCCL(tau=tau, lam=lam, phi=phi, views="batch")  # the views of batch_views
    occl(feats, labels, prototypes)["loss"].backward()
    g = -feats.grad  # (B, C, h, w) descent direction
    g_sum, _ = view_centroids(g, small, view, classes)  # (2, N, C): summed descent direction per view, class
    d = F.normalize(g_sum[0, idx], dim=1)  # (K, C) view 1, classes in both views
    u = F.normalize(cent.view_centroids[0, idx], dim=1)  # (K, C) where the view-1 centroids point now
    others = torch.nonzero(cent.present).flatten().tolist()  # the M classes present in the batch
    s_others = cent.category_centroids[others][None].expand(len(idx), -1, -1)  # (K, M, C)
    not_self = torch.tensor([[j != i for j in others] for i in idx.tolist()])  # (K, M)
    return {
        "own_prototype": tangent_cosine(d, u, prototypes[idx]).mean().item(),
        "other_view": tangent_cosine(d, u, cent.view_centroids[1, idx]).mean().item(),
        "other_classes": tangent_cosine(d, u, s_others)[not_self].mean().item(),
    }


def _centroid_cosines(features: Tensor, small: Tensor, view: Tensor, idx: Tensor, prototypes: Tensor) -> dict:
    """The mean cosines :func:`follow` logs, of the L2-normalised centroids of the classes ``idx`` (K,)
    present in both views; ``small`` and ``view`` as :func:`batch_views` returns them."""
    with torch.no_grad():
        cent = centroids_from_sums(*view_centroids(features, small, view, prototypes.shape[0]))
        v = F.normalize(cent.view_centroids, dim=2)  # (2, N, C)
        s = F.normalize(cent.category_centroids[idx], dim=1)  # (K, C)
        off = ~torch.eye(len(idx), dtype=torch.bool)  # (K, K)
        return {
            "cos_views": (v[0, idx] * v[1, idx]).sum(1).mean().item(),
            "cos_classes": (s @ s.T)[off].mean().item(),
            "cos_prototype": (s * F.normalize(prototypes[idx], dim=1)).sum(1).mean().item(),
        }


def follow(
    features: Tensor,
    labels: Tensor,
    prototypes: Tensor,
    *,
    tau: float,
    lam: float,
    phi: float,
    steps: int,
    lr: float,
) -> list[dict[str, float]]:
    """Optimise the features themselves (free parameters, Adam) under ``lam * centroid + phi * category``.

    No encoder: each step moves every pixel feature along OCCL's gradient. Before the first step and
    after every step, the centroids of the classes in both views are measured (L2-normalised).

    Args:
        features, labels, prototypes, tau, lam, phi: as for :func:`descent_directions` (``features``
            are the starting features, not modified; the prototypes stay fixed).
        steps: Adam steps.
        lr: Adam learning rate.

    Returns:
        ``steps + 1`` dicts with ``"step"`` and the means over the K classes in both views of
        ``"cos_views"`` = cos(v_i1, v_i2), ``"cos_classes"`` = cos(s_i, s_j) over i != j and
        ``"cos_prototype"`` = cos(s_i, w_i).
    """
    small, view, _, idx = batch_views(features, labels, prototypes.shape[0])
    feats = features.clone().requires_grad_(True)
    occl = OCCL(tau=tau, lam=lam, phi=phi, views="batch")  # the views of batch_views
    opt = torch.optim.Adam([feats], lr=lr)
    log = [{"step": 0} | _centroid_cosines(feats, small, view, idx, prototypes)]
    for step in range(1, steps + 1):
        opt.zero_grad()
        occl(feats, labels, prototypes)["loss"].backward()
        opt.step()
        log.append({"step": step} | _centroid_cosines(feats, small, view, idx, prototypes))
    return log
