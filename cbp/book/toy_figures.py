"""Figures and summary tables of the toy chapters (1 and 2), drawn from the runs of :mod:`cbp.book.toy`.

Chapter 1 trains, per head kind, a list of runs of :func:`cbp.book.toy.train_minibatch` (one per seed,
same long-tailed class counts); chapter 2 trains :func:`cbp.book.toy.train_full_batch` runs keyed by
``(data set name, head kind, seed index)``. The functions here turn those runs into the pages'
figures (one idea a figure, at most three panels a row, sized by :func:`cbp.book.plotting.subplots`)
and tables; they compute nothing the runs did not record, except correlations and means.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from matplotlib.colors import ListedColormap
from scipy import stats

from cbp.book.plotting import CLASS_COLORS, CLASSIFIER_COLORS, similarity_heatmap, subplots

Run = dict[str, Any]


# --------------------------------------------------------------------------------------------
# Chapter 1: the long-tailed clusters


def plot_norm_prior(ratios: Sequence[float] = (1.0, 1.5, 2.0, 3.0), length: float = 2.0) -> Any:
    """p(a | f) of Eq. 1 for two orthogonal prototypes and a unit feature at an angle from ``w_a``.

    Args:
        ratios: values of ``|w_b| / |w_a|``, one curve each.
        length: ``|w_a|``.

    Returns:
        The figure; each curve's legend entry gives the angle where ``p(a | f)`` falls below 1/2.
    """
    theta = torch.linspace(0, 90, 361)  # degrees from w_a
    rad = torch.deg2rad(theta)
    f = torch.stack([torch.cos(rad), torch.sin(rad)], dim=1)  # (K, 2), |f| = 1
    fig, axes = subplots()
    ax = axes[0, 0]
    for ratio in ratios:
        w = torch.tensor([[1.0, 0.0], [0.0, ratio]]) * length  # (2, 2)
        p_a = torch.softmax(f @ w.T, dim=1)[:, 0]  # Eq. 1
        boundary = float(theta[(p_a < 0.5).nonzero()[0]])
        ax.plot(theta, p_a, label=f"{ratio:g}: {boundary:.0f}°")
    ax.axvline(45, color="grey", lw=0.8, ls=":")
    ax.set_xlabel(r"angle between $f$ and $w_a$ (degrees)")
    ax.set_ylabel(r"$p(a \mid f)$ (Eq. 1)")
    ax.set_title("A larger norm moves the boundary")
    ax.legend(loc="upper right", title=r"$\|w_b\| / \|w_a\|$: boundary at")
    return fig


def norm_correlations(runs: Sequence[Run], counts: np.ndarray, first_seed: int = 0) -> pd.DataFrame:
    """Per run: Pearson / Spearman correlation of the final prototype norms and the biases with frequency.

    Args:
        runs: learnable-head runs of :func:`cbp.book.toy.train_minibatch` (one per seed).
        counts: (N,) training samples per class (the same for every run).
        first_seed: seed of ``runs[0]`` (run r has seed ``first_seed + r``).
    """
    log_n = np.log(counts)
    rows = []
    for r, run in enumerate(runs):
        norms = run["history"][-1]["norms"]
        rows.append(
            {
                "run (seed)": first_seed + r,
                "Pearson(norm, log n)": stats.pearsonr(norms, log_n)[0],
                "Spearman(norm, n)": stats.spearmanr(norms, counts)[0],
                "Pearson(bias, log n)": stats.pearsonr(run["bias"], log_n)[0],
            }
        )
    return pd.DataFrame(rows)


def plot_against_frequency(
    runs: Sequence[Run], counts: np.ndarray, what: str, *, cbp_run: Run | None = None, length: float = 2.0
) -> Any:
    """Final prototype norm (``what="norms"``) or learned bias (``what="bias"``) of every class against
    ``log n_l``, one dot per class and run (seed 0 darker); ``cbp_run``'s norms beside them.
    """
    log_n = np.log(counts)
    colour = CLASSIFIER_COLORS["learnable"]
    fig, axes = subplots()
    ax = axes[0, 0]
    for r, run in enumerate(runs):
        y = run["history"][-1]["norms"] if what == "norms" else run["bias"]
        ax.scatter(log_n, y, s=22, color=colour, alpha=0.95 if r == 0 else 0.35)
    ax.scatter([], [], s=22, color=colour, label=f"learnable ({len(runs)} runs)")
    if cbp_run is not None:
        norms = cbp_run["history"][-1]["norms"]
        ax.scatter(log_n, norms, s=22, color=CLASSIFIER_COLORS["cbp"], label=f"CBP (frozen, T = {length:g})")
    ax.set_xlabel(r"$\log n_l$ (training samples of class $l$)")
    if what == "norms":
        ax.set_ylabel(r"prototype norm $\|w_l\|$")
        ax.set_title("Prototype norm vs class frequency")
    else:
        ax.set_ylabel(r"learned bias $b_l$")
        ax.set_title("The bias learns the prior too")
    ax.legend()
    return fig


def plot_norm_correlation_over_epochs(
    groups: Mapping[str, tuple[Sequence[Run], str]], counts: np.ndarray, *, paper: float = 0.27
) -> Any:
    """Pearson(norm, log n) after every epoch, one line per run, one colour per group.

    Args:
        groups: name (e.g. "SGD") -> (runs, colour).
        counts: (N,) training samples per class.
        paper: the paper's correlation (Section 4.3), drawn as a dotted line.
    """
    fig, axes = subplots()
    ax = axes[0, 0]
    for name, (runs, colour) in groups.items():
        for r, run in enumerate(runs):
            pearson = [stats.pearsonr(h["norms"], np.log(counts))[0] for h in run["history"]]
            epochs = [h["epoch"] for h in run["history"]]
            label = f"learnable, {name}" if r == 0 else None
            ax.plot(epochs, pearson, color=colour, alpha=0.9 if r == 0 else 0.35, label=label)
    ax.axhline(paper, color=CLASSIFIER_COLORS["paper"], ls=":", label=f"{paper:g} (paper, ADE20K)")
    ax.axhline(0, color="black", lw=0.6)
    ax.set_xlabel("epoch")
    ax.set_ylabel(r"Pearson($\|w_l\|$, $\log n_l$)")
    ax.set_title("Norm-frequency correlation in training")
    ax.legend()
    return fig


def pair_masks(num_classes: int, pairs: Sequence[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """(N, N) bool masks of the confusable pairs (both orders) and of every other off-diagonal pair."""
    pair = np.zeros((num_classes, num_classes), dtype=bool)
    for a, b in pairs:
        pair[a, b] = pair[b, a] = True
    return pair, ~pair & ~np.eye(num_classes, dtype=bool)


def plot_pair_cosines(runs: Mapping[str, Sequence[Run]], pairs: Sequence[tuple[int, int]]) -> Any:
    """Mean cosine of the confusable pairs (solid) and of the other pairs (dashed) after every epoch."""
    fig, axes = subplots()
    ax = axes[0, 0]
    for kind, group in runs.items():
        pair, other = pair_masks(len(group[0]["history"][0]["norms"]), pairs)
        for r, run in enumerate(group):
            ep = [h["epoch"] for h in run["history"]]
            kw = {"color": CLASSIFIER_COLORS[kind], "alpha": 0.9 if r == 0 else 0.3}
            conf = [h["cos"][pair].mean() for h in run["history"]]
            rest = [h["cos"][other].mean() for h in run["history"]]
            ax.plot(ep, conf, lw=2, label=f"{kind}: confusable" if r == 0 else None, **kw)
            ax.plot(ep, rest, lw=1, ls="--", label=f"{kind}: other pairs" if r == 0 else None, **kw)
    ax.set_xlabel("epoch")
    ax.set_ylabel(r"mean $\cos(w_i, w_j)$")
    ax.set_title("Similarity of prototypes in training")
    ax.legend()
    return fig


def plot_separability(runs: Mapping[str, Sequence[Run]]) -> Any:
    """Class separability CS (Eq. 8) of the prototypes after every epoch, one line per run."""
    fig, axes = subplots()
    ax = axes[0, 0]
    for kind, group in runs.items():
        for r, run in enumerate(group):
            ep = [h["epoch"] for h in run["history"]]
            cs = [0.5 * (h["cos"].sum() - np.trace(h["cos"])) for h in run["history"]]
            ax.plot(
                ep,
                cs,
                color=CLASSIFIER_COLORS[kind],
                alpha=0.9 if r == 0 else 0.3,
                label=kind if r == 0 else None,
            )
    n = len(next(iter(runs.values()))[0]["history"][0]["norms"])
    ax.set_xlabel("epoch")
    ax.set_ylabel("class separability CS (Eq. 8)")
    ax.set_title(f"CS of the prototypes, N = {n} classes")
    ax.legend()
    return fig


def final_geometry(
    runs: Mapping[str, Sequence[Run]], pairs: Sequence[tuple[int, int]], *, decimals: int = 2
) -> pd.DataFrame:
    """Mean and std over runs of the final cosines (confusable / other pairs) and of CS (Eq. 8), per head,
    rounded to ``decimals``."""
    from cbp import class_separability

    rows = []
    for kind, group in runs.items():
        pair, other = pair_masks(len(group[0]["history"][0]["norms"]), pairs)
        for run in group:
            cos = run["history"][-1]["cos"]
            cs = class_separability(run["W"])
            rows.append(
                {
                    "classifier": kind,
                    "cos confusable": cos[pair].mean(),
                    "cos other": cos[other].mean(),
                    "CS (Eq. 8)": cs,
                }
            )
    table = pd.DataFrame(rows).groupby("classifier", sort=False).agg(["mean", "std"])
    return table.round(decimals) + 0.0  # + 0.0: no "-0.00"


def plot_cosine_maps(runs: Mapping[str, Run], pairs: Sequence[tuple[int, int]]) -> Any:
    """Final cosine matrix of one run per head, side by side (classes by frequency, * = in a pair)."""
    titles = {"learnable": "learnable (1x1 conv)", "cbp": "CBP (frozen)"}
    fig, axes = subplots(1, len(runs), panel_height=3.7)
    n = len(next(iter(runs.values()))["history"][-1]["norms"])
    labels = [f"{c}{'*' if any(c in p for p in pairs) else ''}" for c in range(n)]
    mesh = None
    for ax, (kind, run) in zip(axes[0], runs.items()):
        mesh = similarity_heatmap(ax, run["history"][-1]["cos"], labels, title=titles.get(kind, kind))
        ax.set_xlabel("class j (0 = most frequent)")
        ax.set_ylabel("class i")
        ax.tick_params(axis="x", labelrotation=90)
    fig.colorbar(mesh, ax=axes, shrink=0.8, label=r"$\cos(w_i, w_j)$")
    return fig


def plot_recall_vs_frequency(runs: Mapping[str, Sequence[Run]], counts: np.ndarray) -> Any:
    """Per-class recall on the balanced test set against ``log n_l``, mean ± std over runs, per head."""
    fig, axes = subplots()
    ax = axes[0, 0]
    for kind, group in runs.items():
        rec = np.stack([run["recall"] for run in group])  # (runs, N)
        ax.errorbar(
            np.log(counts),
            rec.mean(0),
            yerr=rec.std(0),
            fmt="o-",
            capsize=3,
            color=CLASSIFIER_COLORS[kind],
            label=kind,
        )
    ax.set_xlabel(r"$\log n_l$ (training samples)")
    ax.set_ylabel("recall, balanced test (%)")
    ax.set_title(f"Per-class recall, {len(next(iter(runs.values())))} runs (synthetic)")
    ax.legend()
    return fig


def recall_summary(runs: Mapping[str, Sequence[Run]], tail: int = 4) -> pd.DataFrame:
    """Per head: mAcc (mean, std over runs) and mean recall of the ``tail`` rarest and most frequent classes."""
    rows = []
    for kind, group in runs.items():
        rec = np.stack([run["recall"] for run in group])  # (runs, N), classes by decreasing frequency
        macc = [run["mAcc"] for run in group]
        rows.append(
            {
                "classifier": kind,
                "mAcc (%)": np.mean(macc),
                "mAcc std": np.std(macc),
                f"recall, {tail} rarest (%)": rec[:, -tail:].mean(),
                f"recall, {tail} most frequent (%)": rec[:, :tail].mean(),
            }
        )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------
# Chapter 2: three classes in the plane


def plot_2d_sets(dataset: Any, names: Sequence[str], seed: int) -> Any:
    """The training points of each 2-D set (``dataset(name, seed)``), one panel per set."""
    fig, axes = subplots(1, len(names), panel_height=3.4, sharex=True, sharey=True)
    for ax, name in zip(axes[0], names):
        d = dataset(name, seed)
        for c in range(int(d["y"].max()) + 1):
            pts = d["x"][d["y"] == c]
            ax.scatter(
                pts[:, 0], pts[:, 1], s=4, alpha=0.5, color=CLASS_COLORS[c], label=f"{c} (n={len(pts)})"
            )
        ax.set_title(f"{name} training set")
        ax.set_xlabel("$x_1$")
        ax.legend(markerscale=3, loc="best", title="class", handletextpad=0.1)
    axes[0, 0].set_ylabel("$x_2$")
    return fig


def summary_2d(runs: Mapping[tuple[str, str, int], Run], first_seed: int = 0) -> pd.DataFrame:
    """mAcc and per-class recall of every 2-D run, mean and std over seeds per (data set, head)."""
    table = pd.DataFrame(
        [
            {"data": name, "classifier": kind, "mAcc (%)": v["mAcc"]}
            | {
                f"recall class {c}" + (" (rare)" if c == len(v["recall"]) - 1 else ""): x
                for c, x in enumerate(v["recall"])
            }
            for (name, kind, _), v in runs.items()
        ]
    )
    return table.groupby(["data", "classifier"], sort=False).agg(["mean", "std"])


def plot_decision_regions(
    runs: Mapping[tuple[str, str, int], Run],
    data: Mapping[str, Any],
    name: str,
    heads: Mapping[str, str],
    *,
    grid_size: int = 160,
    lim: tuple[tuple[float, float], tuple[float, float]] = ((-3.2, 3.2), (-3.0, 4.6)),
) -> Any:
    """The plane coloured by the class each head predicts (seed index 0) with the training points on top.

    Args:
        runs: chapter 2's runs, keyed ``(name, kind, seed index)``.
        data: the training set ``{"x", "y"}`` drawn on top.
        name: which data set's runs.
        heads: kind -> its short name (one panel each, at most three).
        grid_size: grid points along each axis.
        lim: the plotted ranges of ``x_1`` and ``x_2``.
    """
    gx, gy = torch.meshgrid(
        torch.linspace(*lim[0], grid_size), torch.linspace(*lim[1], grid_size), indexing="xy"
    )
    grid = torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=1)  # (G, 2)
    cmap = ListedColormap(CLASS_COLORS[:3])
    fig, axes = subplots(1, len(heads), panel_height=3.0, sharex=True, sharey=True)
    for ax, kind in zip(axes[0], heads):
        run = runs[(name, kind, 0)]
        with torch.no_grad():
            region = run["model"](grid).argmax(1).reshape(grid_size, grid_size)
        ax.contourf(gx, gy, region, levels=[-0.5, 0.5, 1.5, 2.5], cmap=cmap, alpha=0.25)
        ax.scatter(data["x"][:, 0], data["x"][:, 1], c=data["y"], cmap=cmap, s=3, alpha=0.6)
        ax.set_title(f"{heads[kind]}\nmAcc {run['mAcc']:.1f} %\nrare recall {run['recall'][2]:.1f} %")
        ax.set_xlabel("$x_1$")
        ax.grid(False)
    axes[0, 0].set_ylabel("$x_2$")
    return fig


def plot_prototype_paths(
    runs: Mapping[tuple[str, str, int], Run],
    name: str,
    counts: Sequence[int],
    *,
    length: float,
    every: int = 10,
) -> Any:
    """The learnable head's prototype norms (left) and cosines (right) during training, on one data set.

    Args:
        runs: chapter 2's runs; every seed of ``(name, "learnable", r)`` is drawn (seed 0 darker).
        name: the data set.
        counts: training points per class of that set (legend).
        length: T of the frozen heads (drawn as a reference line).
        every: steps between two recorded prototypes.
    """
    fig, axes = subplots(1, 2, panel_height=3.3, sharex=True)
    seeds = sorted(r for (n, k, r) in runs if n == name and k == "learnable")
    for r in seeds:
        W = runs[(name, "learnable", r)]["trajectory"]  # (S, N, C)
        steps = np.arange(W.shape[0]) * every
        unit = F.normalize(W, dim=2)
        cos = unit @ unit.transpose(1, 2)  # (S, N, N)
        a = 0.9 if r == 0 else 0.3
        for c in range(W.shape[1]):
            label = f"class {c} (n={counts[c]})" if r == 0 else None
            axes[0, 0].plot(steps, W[:, c].norm(dim=1), color=CLASS_COLORS[c], alpha=a, label=label)
        for (p, q), ls in [((1, 2), "-"), ((0, 1), "--"), ((0, 2), ":")]:
            label = f"cos(w{p}, w{q})" if r == 0 else None
            axes[0, 1].plot(steps, cos[:, p, q], color="black", ls=ls, alpha=a, label=label)
    axes[0, 0].axhline(length, color=CLASSIFIER_COLORS["cbp"], lw=1, label=f"frozen: T = {length:g}")
    axes[0, 1].axhline(0, color=CLASSIFIER_COLORS["cbp"], lw=1, label="CBP: cos = 0")
    axes[0, 0].set_ylabel(r"$\|w_l\|$")
    axes[0, 1].set_ylabel(r"$\cos(w_i, w_j)$")
    axes[0, 0].set_title(f"norms ({len(seeds)} runs)")
    axes[0, 1].set_title("cosines")
    for ax in axes[0]:
        ax.set_xlabel("SGD step")
        ax.legend()
    fig.suptitle(f"Learnable prototypes, {name} set")
    return fig


def plot_feature_space(
    runs: Mapping[tuple[str, str, int], Run], data: Mapping[str, Any], name: str, heads: Mapping[str, str]
) -> Any:
    """Test features (dots) and prototypes (arrows, scaled to one length) of each head in the 3-D
    feature space, seed index 0; the titles give the prototypes' true norms."""
    from matplotlib import pyplot as plt

    fig = plt.figure(figsize=(7.0, 3.0), layout="constrained")
    for j, kind in enumerate(heads):
        run = runs[(name, kind, 0)]
        ax = fig.add_subplot(1, len(heads), j + 1, projection="3d")
        with torch.no_grad():
            feats = run["encoder"](data["x_test"])  # (M, 3)
        feats = feats / feats.norm(dim=1).max()
        sub = torch.arange(0, len(feats), 7)
        ax.scatter(*feats[sub].T, c=[CLASS_COLORS[c] for c in data["y_test"][sub]], s=5, alpha=0.6)
        W = run["head"].prototypes.detach()
        for c in range(W.shape[0]):
            ax.quiver(0, 0, 0, *(W[c] / W[c].norm() * 1.2), color=CLASS_COLORS[c], lw=2.5)
        norms = " / ".join(f"{float(v):.2f}" for v in W.norm(dim=1))
        ax.set_title(f"{heads[kind]}\nnorms {norms}")
        ax.set(
            xlim=(-1.3, 1.3),
            ylim=(-1.3, 1.3),
            zlim=(-1.3, 1.3),
            xticklabels=[],
            yticklabels=[],
            zticklabels=[],
        )
        ax.set_box_aspect((1, 1, 1))
        ax.set_xlabel("$f_1$", labelpad=-10)
        ax.set_ylabel("$f_2$", labelpad=-10)
        ax.set_zlabel("$f_3$", labelpad=-10)
    return fig


def plot_length_sweep(agg: pd.DataFrame, *, steps: int, seeds: int) -> Any:
    """mAcc, final training loss and mean feature norm of CBP against T (mean ± std over seeds), stacked.

    Args:
        agg: ``T`` -> columns ``(name, "mean")`` / ``(name, "std")`` (a ``groupby("T").agg(["mean", "std"])``).
        steps, seeds: for the title.
    """
    cols = ["mAcc (%)", "final train loss", "mean |f|"]
    fig, axes = subplots(len(cols), 1, panel_height=2.2, sharex=True)
    for ax, col in zip(axes[:, 0], cols):
        ax.errorbar(
            agg.index,
            agg[(col, "mean")],
            yerr=agg[(col, "std")],
            fmt="o-",
            capsize=3,
            color=CLASSIFIER_COLORS["cbp"],
        )
        ax.set_xscale("log")
        ax.set_ylabel(col)
    axes[-1, 0].set_yscale("log")
    axes[-1, 0].set_xlabel("prototype length T (log scale)")
    axes[0, 0].set_title(f"CBP, long-tailed toy: {seeds} seeds, {steps} SGD steps")
    return fig


def sweep_numbers(run: Run) -> dict[str, float]:
    """The numbers of one 2-D run that the T sweep tabulates: mAcc, rare recall, loss, feature norm."""
    return {
        "mAcc (%)": run["mAcc"],
        "rare recall (%)": run["recall"][2],
        "final train loss": run["loss"],
        "mean |f|": run["feat_norm"],
    }
