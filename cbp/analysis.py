"""The paper's analysis metrics (Section 4.3, Tables 6-8, Fig. 5, Fig. 6), used by the study and the book.

Everything here reads per-class results (IoU / F1 vectors), training pixel counts, classifier
weights; nothing trains and nothing reads a run directory (that is
:mod:`cbp.experiments.trained_runs`). The functions are small and numpy-based so
that the book can call them on recorded results:

* prior ambiguity (Fig. 5, Table 7): :func:`norm_frequency_correlation` (prototype norm vs pixel
  count, Pearson and Spearman, raw and log; the paper reports 0.27), :func:`bias_frequency_correlation`,
  :func:`frequency_parts` / :func:`rare_third_iou`, :func:`f1_by_frequency_group` (15 groups);
* correlation ambiguity (Table 6, Fig. 6): :func:`confusable_iou`, :func:`group_cosines`,
  :func:`similarity_matrix`, :func:`pixel_prototype_similarity`, :func:`class_separability` (Eq. 8);
* post-hoc norm equalisation of a learnable classifier (drop the bias, rescale the rows to a common
  norm, re-evaluate): :func:`equalize_linear_classifier` (evaluated on a trained run by
  :func:`cbp.experiments.trained_runs.posthoc_equalisation`);
* masked prototypes of Table 5 (class-mean features of a pretrained encoder):
  :func:`class_mean_features`.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy import stats
from torch import Tensor, nn

from cbp.metrics import frequency_group_f1
from cbp.prototypes import class_separability, cosine_similarity_matrix

__all__ = [
    "bias_frequency_correlation",
    "class_mean_features",
    "class_separability",
    "confusable_iou",
    "correlations",
    "equalize_linear_classifier",
    "f1_by_frequency_group",
    "frequency_parts",
    "group_cosines",
    "norm_frequency_correlation",
    "pixel_prototype_similarity",
    "rare_third_iou",
    "run_analysis",
    "similarity_matrix",
]


def _array(x: Any) -> np.ndarray:
    """float64 numpy array; ``None`` entries (NaN written as null in JSON) become NaN."""
    if isinstance(x, Tensor):
        return x.detach().double().cpu().numpy()
    return np.array([np.nan if v is None else v for v in x] if isinstance(x, list) else x, dtype=np.float64)


def correlations(x: Any, y: Any) -> dict[str, float]:
    """Pearson and Spearman correlation of two (N,) vectors, ignoring pairs with a NaN.

    Returns:
        ``{"pearson": r, "spearman": rho}``; NaN when either vector is constant (e.g. the equal
        norms of CBP) or fewer than 3 finite pairs remain.
    """
    x, y = _array(x), _array(y)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(
            f"correlations needs two (N,) vectors of the same length, got {x.shape} and {y.shape}"
        )
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return {"pearson": float("nan"), "spearman": float("nan")}
    return {
        "pearson": float(stats.pearsonr(x, y).statistic),
        "spearman": float(stats.spearmanr(x, y).statistic),
    }


def norm_frequency_correlation(weight: Any, pixel_counts: Any) -> dict[str, float]:
    """Correlation of the classifier's row norms with the training pixel counts (prior ambiguity).

    The paper (Section 4.3) reports a "relation factor" of 0.27 between the pixel count and the
    L2 norm of learnable prototypes, without saying raw or log; both are given here.

    Args:
        weight: classifier weights / prototypes (N, C) (a (N, C, 1, 1) conv weight is accepted),
            or already the (N,) norms.
        pixel_counts: (N,) training pixel counts.

    Returns:
        ``pearson_raw``, ``spearman_raw`` (norm vs count) and ``pearson_log``, ``spearman_log``
        (norm vs log count; Spearman is the same for both since log is monotone).
    """
    w = _array(weight)
    norms = w if w.ndim == 1 else np.linalg.norm(w.reshape(w.shape[0], -1), axis=1)  # (N,)
    counts = _array(pixel_counts)
    raw = correlations(norms, counts)
    log = correlations(norms, np.log(np.maximum(counts, 1.0)))
    return {
        "pearson_raw": raw["pearson"],
        "spearman_raw": raw["spearman"],
        "pearson_log": log["pearson"],
        "spearman_log": log["spearman"],
    }


def bias_frequency_correlation(bias: Any, pixel_counts: Any) -> dict[str, float]:
    """Correlation of a learnable classifier's bias (N,) with the log training pixel count."""
    counts = _array(pixel_counts)
    return correlations(_array(bias), np.log(np.maximum(counts, 1.0)))


def frequency_parts(pixel_counts: Any, parts: int = 3) -> list[np.ndarray]:
    """Class indices split by training pixel count into ``parts`` contiguous parts, rarest first.

    Classes are sorted ascending by count (ties keep class order) and split with
    ``numpy.array_split`` (the same convention as :func:`cbp.metrics.frequency_group_f1`).
    """
    order = np.argsort(_array(pixel_counts), kind="stable")
    return list(np.array_split(order, parts))


def _nanmean(x: np.ndarray) -> float:
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else float("nan")


def rare_third_iou(iou: Any, pixel_counts: Any) -> float:
    """Mean IoU (NaN-ignoring) of the third of the classes with the fewest training pixels."""
    return _nanmean(_array(iou)[frequency_parts(pixel_counts, 3)[0]])


def confusable_iou(iou: Any, groups: Sequence[Sequence[int]]) -> float:
    """Mean IoU (NaN-ignoring) of the classes that belong to a confusable group (Table 6 analogue)."""
    members = sorted({int(c) for g in groups for c in g})
    if not members:
        return float("nan")
    return _nanmean(_array(iou)[members])


def f1_by_frequency_group(f1: Any, pixel_counts: Any, groups: int = 15) -> list[float]:
    """Fig. 5: mean F1 of classes in ``groups`` groups by training pixel count, rarest first.

    A thin wrapper of :func:`cbp.metrics.frequency_group_f1` that accepts JSON lists (null = NaN).
    """
    return frequency_group_f1(
        torch.as_tensor(_array(f1)), torch.as_tensor(_array(pixel_counts)), groups
    ).tolist()


def similarity_matrix(weight: Any) -> np.ndarray:
    """Cosine similarity between classifier rows (Fig. 6): (N, C) -> (N, N) float64."""
    w = torch.as_tensor(_array(weight))
    return cosine_similarity_matrix(w.reshape(w.shape[0], -1)).numpy()


def group_cosines(weight: Any, groups: Sequence[Sequence[int]]) -> dict[str, float]:
    """Mean cosine between prototypes of the same confusable group vs of different classes.

    Args:
        weight: (N, C) classifier rows.
        groups: confusable groups, lists of class indices.

    Returns:
        ``{"within": mean cosine over pairs inside a group, "between": mean over all other pairs}``.
    """
    cos = similarity_matrix(weight)  # (N, N)
    n = cos.shape[0]
    label = np.full(n, -1)
    for g, members in enumerate(groups):
        label[list(members)] = g
    same = (label[:, None] == label[None, :]) & (label[:, None] >= 0)  # (N, N)
    off = ~np.eye(n, dtype=bool)
    within, between = cos[same & off], cos[~same & off]
    return {
        "within": float(within.mean()) if within.size else float("nan"),
        "between": float(between.mean()) if between.size else float("nan"),
    }


def pixel_prototype_similarity(embedding: Tensor, prototypes: Tensor) -> Tensor:
    """Cosine between every pixel embedding and every prototype (a similarity map per class).

    Args:
        embedding: (C, h, w) or (B, C, h, w) pixel embeddings (``SegOutput.embedding``).
        prototypes: (N, C) classifier rows.

    Returns:
        (N, h, w) or (B, N, h, w) cosine similarities in [-1, 1].
    """
    squeeze = embedding.dim() == 3
    emb = F.normalize(embedding[None] if squeeze else embedding, dim=1)  # (B, C, h, w)
    protos = F.normalize(prototypes.to(emb.dtype), dim=1)  # (N, C)
    sim = torch.einsum("bchw,nc->bnhw", emb, protos)  # (B, N, h, w)
    return sim[0] if squeeze else sim


# --------------------------------------------------------------------------------------------
# Post-hoc equalisation of a learnable classifier


def equalize_linear_classifier(model: nn.Module, length: float | None = None) -> nn.Module:
    """A copy of ``model`` whose linear classifier has no bias and rows of one common norm.

    This removes the two channels through which a learnable classifier can encode class
    frequency (the prior ambiguity of Section 3.2): the bias and the row norms. The common norm
    is the rows' mean norm unless ``length`` is given (it does not change the argmax once the
    bias is gone, only the logits' scale).

    Args:
        model: a Segmentor whose ``.classifier`` has a ``conv`` 1x1 layer with bias (LinearHead).
        length: the common norm (default: mean of the current row norms).

    Returns:
        The modified deep copy.
    """
    clf = getattr(model, "classifier", None)
    conv = getattr(clf, "conv", None)
    if not isinstance(conv, nn.Conv2d):
        raise ValueError(
            f"post-hoc equalisation needs a learnable linear classifier (LinearHead), got {type(clf).__name__}; "
            "CBP prototypes are already equal-norm"
        )
    out = copy.deepcopy(model)
    conv = out.classifier.conv
    with torch.no_grad():
        w = conv.weight  # (N, C, 1, 1)
        norms = w.flatten(1).norm(dim=1)  # (N,)
        target = float(norms.mean()) if length is None else float(length)
        w.mul_((target / norms.clamp_min(1e-12)).view(-1, 1, 1, 1))
        if conv.bias is not None:
            conv.bias.zero_()
    return out


# --------------------------------------------------------------------------------------------
# Masked prototypes (Table 5)


@torch.no_grad()
def class_mean_features(
    encoder: nn.Module, dataset: Any, num_classes: int, *, batch_size: int = 32, ignore_index: int = 255
) -> Tensor:
    """Class-mean features of an encoder over a dataset: the "masked" prototypes of Table 5.

    Every stage output is upsampled (bilinear) to the finest stage's resolution and concatenated
    (for cnn_tiny 32 + 64 + 128 + 192 = 416 channels at 1/4 resolution); labels are
    nearest-resized to that resolution; each class's features are averaged over its pixels in the
    whole dataset, in one segmented reduction (``index_add_``) per batch.

    Args:
        encoder: returns a list of (B, C_i, H / r_i, W / r_i) maps, finest first.
        dataset: yields ``(image float (3, H, W), label int64 (H, W))`` of one size.
        num_classes: N, the number of classes.
        batch_size: images per forward pass.
        ignore_index: label ignored.

    Returns:
        (N, D) float32 class means (a class without pixels gets a zero row).
    """
    from torch.utils.data import DataLoader

    was_training = encoder.training
    encoder.eval()
    sums: Tensor | None = None
    counts = torch.zeros(num_classes, dtype=torch.float64)
    for images, labels in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        feats = encoder(images)
        size = feats[0].shape[-2:]
        f = torch.cat([F.interpolate(x, size=size, mode="bilinear", align_corners=False) for x in feats], 1)
        lab = F.interpolate(labels[:, None].float(), size=size, mode="nearest")[:, 0].long()  # (B, h, w)
        f = f.permute(0, 2, 3, 1).reshape(-1, f.shape[1]).double()  # (B*h*w, D)
        lab = lab.reshape(-1)
        keep = (lab != ignore_index) & (lab >= 0) & (lab < num_classes)
        if sums is None:
            sums = torch.zeros(num_classes, f.shape[1], dtype=torch.float64)
        sums.index_add_(0, lab[keep], f[keep])
        counts += torch.bincount(lab[keep], minlength=num_classes).double()
    encoder.train(was_training)
    if sums is None:
        raise ValueError("class_mean_features got an empty dataset")
    return (sums / counts.clamp_min(1)[:, None]).float()


# --------------------------------------------------------------------------------------------
# Everything a study records for one run


def run_analysis(
    metrics: dict[str, Any],
    *,
    weight: Any,
    bias: Any | None,
    pixel_counts: Any,
    groups: Sequence[Sequence[int]],
    keep_cosine: bool = False,
) -> dict[str, Any]:
    """The analysis record of one run, from its ``metrics.json`` and its classifier.

    Args:
        metrics: the engine's metrics (``IoU``, ``F1`` lists, percent, null for absent classes).
        weight: (N, C) classifier rows (prototypes).
        bias: (N,) bias of a linear classifier or None.
        pixel_counts: (N,) training pixel counts.
        groups: confusable groups.
        keep_cosine: also store the (N, N) prototype cosine matrix (rounded to 4 decimals).
    """
    parts = frequency_parts(pixel_counts, 3)
    iou = _array(metrics["IoU"])
    out: dict[str, Any] = {
        "rare_third_IoU": _nanmean(iou[parts[0]]),
        "mid_third_IoU": _nanmean(iou[parts[1]]),
        "frequent_third_IoU": _nanmean(iou[parts[2]]),
        "confusable_IoU": confusable_iou(iou, groups),
        "f1_groups": f1_by_frequency_group(metrics["F1"], pixel_counts, min(15, len(iou))),
        "norm_correlation": norm_frequency_correlation(weight, pixel_counts),
        "class_separability": class_separability(torch.as_tensor(_array(weight))),
        "group_cosine": group_cosines(weight, groups),
    }
    if bias is not None:
        out["bias_correlation"] = bias_frequency_correlation(bias, pixel_counts)
    if keep_cosine:
        out["prototype_cosine"] = np.round(similarity_matrix(weight), 4).tolist()
    return out
