"""Figures and tables of chapter 3 (Algorithm 1 step by step, the class separability of Eq. 8 over
random draws, prototypes from correlated class embeddings).

Every prototype set comes from :func:`cbp.category_basis_prototypes` (or the steps of Algorithm 1 in
:mod:`cbp.prototypes`); the functions here only measure and draw them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from cbp.book.plotting import CLASSIFIER_COLORS, from_paper, legend_below, similarity_heatmap, subplots
from cbp.prototypes import category_basis_prototypes, class_separability, cosine_similarity_matrix


def plot_stages(stages: Mapping[str, Tensor]) -> Any:
    """Cosine matrix of each stage of Algorithm 1 (``name -> (N, C)`` prototypes), every value written."""
    fig, axes = subplots(1, len(stages), panel_height=2.7)
    for ax, (name, W) in zip(axes[0], stages.items()):
        similarity_heatmap(ax, cosine_similarity_matrix(W).numpy(), title=name, annotate=True)
        ax.set(xlabel="j", ylabel="i")
    return fig


def stage_norms(stages: Mapping[str, Tensor]) -> pd.DataFrame:
    """Row norms of each stage (rows: stages, columns: classes)."""
    n = len(next(iter(stages.values())))
    table = pd.DataFrame({name: W.norm(dim=1).numpy() for name, W in stages.items()}, index=range(n))
    return table.T.rename_axis("row norms").rename_axis("class", axis=1)


def _draws(num_classes: int, channels: int, length: float, init: str, draws: int) -> list[Tensor]:
    """``draws`` (N, C) prototype sets of one data-free initialisation, seeds 0 .. draws - 1."""
    return [category_basis_prototypes(num_classes, channels, length, seed=s, init=init) for s in range(draws)]


def separability_draws(
    num_classes: int, channels: int, length: float, inits: Sequence[str], draws: int
) -> dict[str, np.ndarray]:
    """CS (Eq. 8) of ``draws`` prototype sets (seeds 0 .. draws - 1) of each data-free initialisation."""
    return {
        init: np.array([class_separability(W) for W in _draws(num_classes, channels, length, init, draws)])
        for init in inits
    }


def separability_table(
    cs: Mapping[str, np.ndarray], names: Mapping[str, str], *, decimals: int = 2
) -> pd.DataFrame:
    """Mean, std and mean absolute value of CS over the draws, one row per initialisation (rounded)."""
    numbers = ["CS mean", "CS std", "|CS| mean"]
    rows = [(names[init], init, x.mean(), x.std(), np.abs(x).mean()) for init, x in cs.items()]
    table = pd.DataFrame(rows, columns=["prototypes", "init", *numbers]).set_index("prototypes")
    table[numbers] = table[numbers].round(decimals) + 0.0  # + 0.0: no "-0.00"
    return table


#: Names of the classifiers of the paper's Table 8 (keys of :data:`cbp.paper.PAPER_TABLE8`).
TABLE8_NAMES: dict[str, str] = {
    "cbp": "CBP (frozen, orthogonal + equal)",
    "equal": "Equal (no orthogonalisation)",
    "learnable": "Learnable (1x1 conv)",
}


def paper_table8() -> pd.DataFrame:
    """The paper's Table 8 (CS and mIoU, ADE20K) from :mod:`cbp.paper`, columns labelled "(paper)"."""
    from cbp.paper import PAPER_TABLE8

    return pd.DataFrame(
        [(TABLE8_NAMES[k], cs, miou) for k, (cs, miou) in PAPER_TABLE8.items()],
        columns=["classifier", from_paper("CS"), from_paper("mIoU")],
    ).set_index("classifier")


def plot_separability_histogram(
    cs: Mapping[str, np.ndarray], *, num_classes: int, channels: int, paper_equal: float
) -> Any:
    """Histogram of CS over the draws for equal-norm-only and Kaiming rows, CBP's 0 and the paper's "Equal"."""
    fig, axes = subplots(panel_height=4.0)
    ax = axes[0, 0]
    bins = np.linspace(-25, 25, 41)
    equal = f"equal-norm only, {len(cs['equal'])} seeds"
    ax.hist(cs["equal"], bins=bins, color=CLASSIFIER_COLORS["equal"], alpha=0.7, label=equal)
    ax.hist(cs["random"], bins=bins, histtype="step", color="black", label="Kaiming rows (same seeds)")
    ax.axvline(0, color=CLASSIFIER_COLORS["cbp"], lw=2.5, label="CBP: 0 for every seed")
    paper = from_paper(f"Equal: {paper_equal:g}")
    ax.axvline(paper_equal, color=CLASSIFIER_COLORS["paper"], ls="--", label=paper)
    ax.set(xlabel="class separability CS (Eq. 8)", ylabel="number of seeds")
    ax.set_title(f"CS of {num_classes} prototypes in {channels} dimensions")
    legend_below(fig, ncols=2)
    return fig


def abs_separability(
    num_classes: int, channels: int, length: float, inits: Sequence[str], draws: int = 10
) -> dict[str, float]:
    """Mean over ``draws`` seeds of ``0.5 * sum_{i != j} |cos(w_i, w_j)|`` for each initialisation."""
    out = {}
    for init in inits:
        cos = [cosine_similarity_matrix(W) for W in _draws(num_classes, channels, length, init, draws)]
        out[init] = float(np.mean([0.5 * float((c - torch.eye(num_classes)).abs().sum()) for c in cos]))
    return out


def grouped_embeddings(
    num_classes: int, channels: int, seed: int, group_size: int = 5
) -> tuple[Tensor, Tensor]:
    """Synthetic correlated class embeddings: a shared direction + one per group of related classes + noise.

    Returns:
        (N, C) float32 embeddings and (N,) group index of each class.
    """
    g = torch.Generator().manual_seed(seed)
    groups = torch.arange(num_classes) // group_size
    shared = torch.randn(channels, generator=g)  # common to every class (as post-ReLU means are)
    group_dirs = torch.randn(int(groups.max()) + 1, channels, generator=g)
    noise = torch.randn(num_classes, channels, generator=g)
    return shared + group_dirs[groups] + 0.7 * noise, groups


def embedding_inits(
    emb: Tensor, groups: Tensor, *, length: float, seed: int, inits: Sequence[str], decimals: int = 2
) -> pd.DataFrame:
    """CS, mean cosine of related classes and the norm range of the prototypes of each initialisation
    (rounded to ``decimals``)."""
    n, c = emb.shape
    same = (groups[:, None] == groups[None, :]) & ~torch.eye(n, dtype=torch.bool)
    rows = []
    for init in inits:
        kw = {"embeddings": emb} if init.startswith("masked") else {}
        W = category_basis_prototypes(n, c, length, seed=seed, init=init, **kw)
        norms = W.norm(dim=1)
        rows.append(
            {
                "init": init,
                "CS (Eq. 8)": class_separability(W),
                "mean cos, related": float(cosine_similarity_matrix(W)[same].mean()),
                "norm min": float(norms.min()),
                "norm max": float(norms.max()),
            }
        )
    return pd.DataFrame(rows).set_index("init").round(decimals) + 0.0  # + 0.0: no "-0.00"


def plot_embedding_inits(emb: Tensor, *, length: float, seed: int, shown: int = 25) -> Any:
    """Cosines of the first ``shown`` prototypes built from ``emb`` as they are and orthogonalised."""
    n, c = emb.shape
    fig, axes = subplots(1, 2, panel_height=3.6)
    mesh = None
    for ax, init in zip(axes[0], ["masked", "masked+orthogonal"]):
        W = category_basis_prototypes(n, c, length, seed=seed, init=init, embeddings=emb)
        cos = cosine_similarity_matrix(W)[:shown, :shown].numpy()
        labels = [str(k) if k % 5 == 0 else "" for k in range(shown)]
        mesh = similarity_heatmap(ax, cos, labels, title=f"init={init!r}")
    fig.colorbar(mesh, ax=axes, shrink=0.8, label=r"$\cos(w_i, w_j)$")
    fig.suptitle(f"First {shown} classes (groups of 5 related classes)")
    return fig
