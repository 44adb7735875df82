"""An independent, deliberately naive reference for the Online Centroid Contrastive Loss (OCCL).

Written from the book's "Reading the paper" page (Eq. 3-6 as this project reads them), not from ``cbp/losses.py``:
a Python loop over classes and views, float64 by default, one ``torch.mean`` per class mask. It is
slow on purpose; the tests compare ``cbp.OCCL`` (value and autograd gradient) against it, and
``benchmarks/occl_speed.py`` times it as the "naive per-class loop".

Reading implemented here ("Reading the paper"):

* Labels are resized to the feature size by nearest neighbour (``F.interpolate(mode="nearest")``,
  i.e. source index ``floor(i * h / H)``); pixels equal to ``ignore_index`` count nowhere.
* Views ``"batch"``: view 1 = images ``[0, B/2)``, view 2 = images ``[B/2, B)``.
* View centroid ``v_{l,x}`` = mean unnormalised feature of class ``l`` in view ``x`` (Eq. 3).
* Category centroid ``s_l`` = ``(v_{l,1} + v_{l,2}) / 2`` when ``l`` is in both views, else the one
  view centroid it has.
* Every vector (view centroid, category centroid, prototype) is L2-normalised just before each dot
  product when ``normalize`` is on.
* Centroid loss (Eq. 4 read as InfoNCE): for each class ``i`` in both views and each view ``x``,
  ``-log(e^{v_i1.v_i2/tau} / (e^{v_i1.v_i2/tau} + sum_{j != i, j present} e^{v_ix.sg(s_j)/tau}))``;
  ``L_v(x)`` = mean over those classes; ``centroid = (L_v(1) + L_v(2)) / 2``; exactly 0 when no class
  is in both views.
* Category loss (Eq. 5 with the typo read away): for each class ``i`` present in view ``x``,
  cross-entropy of the logits ``v_ix . w_j / tau`` over all ``N`` prototypes with target ``i``;
  ``L_c(x)`` = mean over the classes present in view ``x`` (0 for a view with no labelled pixel);
  ``category = (L_c(1) + L_c(2)) / 2``.
* ``loss = lam * centroid + phi * category`` (Eq. 6).
* The prototypes are keys only: no gradient reaches them through the category loss, whatever the
  classifier (the paper calls the keys frozen; protocol amendment 5).

Alternative readings (options of ``cbp.OCCL``): ``class_reduction="sum"`` replaces each per-view
mean over classes by a sum; ``category_form="printed"`` replaces the category cross-entropy by
``-log(e^{a_i} / sum_j e^{a_j})`` with ``a_j = v_jx . w_j / tau`` over the classes j present in view x.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def resize_labels_nearest(labels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Nearest-neighbour resize of integer labels by explicit index arithmetic.

    Args:
        labels: (B, h, w) int64.
        size: target (H, W).

    Returns:
        (B, H, W) int64, ``out[b, i, j] = labels[b, floor(i * h / H), floor(j * w / W)]``.
    """
    h, w = labels.shape[-2:]
    H, W = size
    rows = [min(math.floor(i * h / H), h - 1) for i in range(H)]
    cols = [min(math.floor(j * w / W), w - 1) for j in range(W)]
    return labels[:, rows][:, :, cols]


def _unit(v: torch.Tensor, normalize: bool) -> torch.Tensor:
    return v / v.norm() if normalize else v


def reference_occl(
    features: torch.Tensor,
    labels: torch.Tensor,
    prototypes: torch.Tensor,
    *,
    tau: float = 0.07,
    lam: float = 1.0,
    phi: float = 0.3,
    normalize: bool = True,
    ignore_index: int = 255,
    view_of_image: list[int] | None = None,
    class_reduction: str = "mean",
    category_form: str = "prototypes",
    dtype: torch.dtype = torch.float64,
) -> dict[str, torch.Tensor]:
    """OCCL by loops over classes and views (slow, float64, for tests only).

    Args:
        features: (B, C, H, W) float; gradients flow back to it (cast to ``dtype`` inside).
        labels: (B, h, w) int64 with values in [0, N) or ``ignore_index``.
        prototypes: (N, C) float.
        tau, lam, phi, normalize, ignore_index: as ``cbp.OCCL``.
        view_of_image: view (0 or 1) of each image; default "batch" views (first half vs second half).
        class_reduction: "mean" or "sum" over classes within a view.
        category_form: "prototypes" (cross-entropy over all prototypes) or "printed".
        dtype: computation dtype (float64 for the tests, float32 for the benchmark).

    Returns:
        dict with scalar "loss", "centroid", "category", "category_centroids" (N, C) (zero rows for
        absent classes) and "present" (N,) bool.
    """
    B, C, H, W = features.shape
    N = prototypes.shape[0]
    if view_of_image is None:
        view_of_image = [0] * (B // 2) + [1] * (B - B // 2)
    feats = features.to(dtype)
    protos = prototypes.detach().to(dtype)  # the keys are frozen (amendment 5): no gradient to them
    lab = resize_labels_nearest(labels, (H, W))  # (B, H, W)

    # View centroids (Eq. 3), one boolean mask per (class, view).
    view_centroids: list[dict[int, torch.Tensor]] = [{}, {}]
    for x in (0, 1):
        images = [b for b in range(B) if view_of_image[b] == x]
        if not images:
            continue
        f_x = feats[images].permute(0, 2, 3, 1).reshape(-1, C)  # (P, C)
        y_x = lab[images].reshape(-1)  # (P,)
        for cls in range(N):
            mask = y_x == cls
            if int(mask.sum()) > 0:
                view_centroids[x][cls] = f_x[mask].mean(dim=0)

    present = sorted(set(view_centroids[0]) | set(view_centroids[1]))
    both = [c for c in present if c in view_centroids[0] and c in view_centroids[1]]

    category_centroids: dict[int, torch.Tensor] = {}
    for cls in present:
        if cls in both:
            category_centroids[cls] = (view_centroids[0][cls] + view_centroids[1][cls]) / 2
        else:
            category_centroids[cls] = view_centroids[0].get(cls, view_centroids[1].get(cls))

    zero = feats.sum() * 0.0  # keeps the graph connected, value exactly 0

    def reduce(terms: list[torch.Tensor]) -> torch.Tensor:
        stacked = torch.stack(terms)
        return stacked.sum() if class_reduction == "sum" else stacked.mean()

    # Centroid loss (Eq. 4, read as InfoNCE with stop-gradient on the category centroids).
    centroid_terms = [zero, zero]
    for x in (0, 1):
        terms = []
        for i in both:
            v1 = _unit(view_centroids[0][i], normalize)
            v2 = _unit(view_centroids[1][i], normalize)
            vx = _unit(view_centroids[x][i], normalize)
            positive = torch.dot(v1, v2) / tau
            logits = [positive]
            for j in present:
                if j == i:
                    continue
                s_j = _unit(category_centroids[j].detach(), normalize)
                logits.append(torch.dot(vx, s_j) / tau)
            terms.append(-(positive - torch.logsumexp(torch.stack(logits), dim=0)))
        if terms:
            centroid_terms[x] = reduce(terms)
    centroid = (centroid_terms[0] + centroid_terms[1]) / 2

    # Category loss (Eq. 5): cross-entropy over all N prototypes, target = the class itself.
    category_terms = [zero, zero]
    for x in (0, 1):
        terms = []
        classes_x = sorted(view_centroids[x])
        for i in classes_x:
            vx = _unit(view_centroids[x][i], normalize)
            if category_form == "printed":
                own = {
                    j: torch.dot(_unit(view_centroids[x][j], normalize), _unit(protos[j], normalize)) / tau
                    for j in classes_x
                }
                denominator = sum(torch.exp(a) for a in own.values())
                terms.append(-torch.log(torch.exp(own[i]) / denominator))
            else:
                logits = torch.stack([torch.dot(vx, _unit(protos[j], normalize)) / tau for j in range(N)])
                terms.append(F.cross_entropy(logits[None], torch.tensor([i])))
        if terms:
            category_terms[x] = reduce(terms)
    category = (category_terms[0] + category_terms[1]) / 2

    cc = torch.zeros(N, C, dtype=dtype)
    present_mask = torch.zeros(N, dtype=torch.bool)
    for cls in present:
        cc[cls] = category_centroids[cls].detach()
        present_mask[cls] = True
    return {
        "loss": lam * centroid + phi * category,
        "centroid": centroid,
        "category": category,
        "category_centroids": cc,
        "present": present_mask,
    }
