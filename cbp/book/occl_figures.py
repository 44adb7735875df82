"""Figures and tables of chapter 4 (OCCL on one batch): the batch and its views, the classes in each
view, the cosines of the view centroids, the feature paths of :func:`cbp.book.occl_geometry.follow`
and the effect of normalising before the dot products.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor

from cbp.book.plotting import PAGE_WIDTH, legend_below, one_panel, similarity_heatmap, subplots
from cbp.losses import OCCL, ViewCentroids


def plot_batch(images: Tensor, labels: Tensor, palette: np.ndarray, *, per_row: int = 4) -> Any:
    """Each image of the batch above its label map, ``per_row`` images a row; first half = view 1.

    Args:
        images: (B, 3, H, W) uint8.
        labels: (B, H, W) int64 (values >= len(palette), e.g. 255, drawn in the last colour).
        palette: (N, 3) floats in [0, 1].
        per_row: images a row (each takes two panels down: image, label).
    """
    from matplotlib import pyplot as plt

    b = len(images)
    rows = (b + per_row - 1) // per_row
    side = PAGE_WIDTH / per_row
    fig, axes = plt.subplots(2 * rows, per_row, figsize=(PAGE_WIDTH, 2 * rows * side * 0.95), squeeze=False)
    for i in range(b):
        top, col = 2 * (i // per_row), i % per_row
        axes[top, col].imshow(images[i].permute(1, 2, 0))
        axes[top, col].set_title(f"view {1 + 2 * i // b}, image {i}")
        axes[top + 1, col].imshow(palette[labels[i].clamp(max=len(palette) - 1)])
    for ax in axes.ravel():
        ax.set(xticks=[], yticks=[])
        ax.grid(False)
    for r in range(rows):
        axes[2 * r, 0].set_ylabel("image")
        axes[2 * r + 1, 0].set_ylabel("label")
    fig.tight_layout()
    return fig


def view_table(cent: ViewCentroids, names: Sequence[str]) -> pd.DataFrame:
    """Labelled pixels of each class present in the batch, per view, and which views it is in."""
    counts = cent.counts.int().numpy()  # (2, N)
    present = cent.present_in_view.numpy()  # (2, N)
    table = pd.DataFrame({"class": list(names), "pixels view 1": counts[0], "pixels view 2": counts[1]})
    table["in"] = np.select(
        [present.all(0), present[0], present[1]], ["both views", "view 1 only", "view 2 only"], "absent"
    )
    return table[table["in"] != "absent"].set_index("class")


def plot_view_cosines(cent: ViewCentroids, idx: Tensor, names: Sequence[str]) -> Any:
    """cos(view-1 centroid of class i, view-2 centroid of class j) for the classes in both views."""
    v1 = F.normalize(cent.view_centroids[0, idx], dim=1)  # (K, C)
    v2 = F.normalize(cent.view_centroids[1, idx], dim=1)  # (K, C)
    fig, ax = one_panel(panel_height=4.2)
    cos, labels = (v1 @ v2.T).numpy(), [names[i] for i in idx]  # (K, K), K names
    similarity_heatmap(ax, cos, labels, vmin=0.0, vmax=1.0, colorbar=True, cbar_label="cosine")
    ax.set_title("Centroid cosines, untrained encoder")
    ax.set(xlabel="view-2 centroid of class j", ylabel="view-1 centroid of class i")
    ax.tick_params(axis="x", labelrotation=90)
    return fig


def plot_follow(runs: Mapping[str, pd.DataFrame]) -> Any:
    """One panel per logged cosine (stacked), one line per loss: the paths of ``follow`` over Adam steps."""
    columns = list(next(iter(runs.values())).columns)
    fig, axes = subplots(len(columns), 1, panel_height=2.3, sharex=True)
    for ax, col in zip(axes[:, 0], columns):
        for (name, log), ls in zip(runs.items(), ["-", "--", ":"]):
            ax.plot(log.index, log[col], ls=ls, lw=2, label=name)
        ax.set(title=col, ylabel="mean cosine")
    axes[-1, 0].set_xlabel("Adam step on the free features")
    legend_below(fig, ncols=1, title="loss")
    return fig


def normalisation_table(
    features: Tensor,
    labels: Tensor,
    prototypes: Tensor,
    cent: ViewCentroids,
    *,
    tau: float,
    lam: float,
    phi: float,
    scales: Sequence[float] = (0.1, 1.0, 10.0),
) -> pd.DataFrame:
    """OCCL's two losses and its gradient norm with and without normalisation, for scaled features."""
    rows = []
    norm = float(cent.view_centroids[cent.present_in_view].norm(dim=1).mean())
    for normalize in [True, False]:
        for scale in scales:
            feats = (features * scale).requires_grad_(True)
            occl = OCCL(tau=tau, lam=lam, phi=phi, normalize=normalize, views="batch")  # as ``cent``
            res = occl(feats, labels, prototypes)
            res["loss"].backward()
            rows.append(
                {
                    "normalize": normalize,
                    "feature scale": scale,
                    "mean |v| (view centroids)": norm * scale,
                    "centroid loss": res["centroid"].item(),
                    "category loss": res["category"].item(),
                    "grad norm": feats.grad.norm().item(),
                    "finite": bool(torch.isfinite(res["loss"])),
                }
            )
    return pd.DataFrame(rows).set_index(["normalize", "feature scale"])
