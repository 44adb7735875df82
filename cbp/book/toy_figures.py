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
from matplotlib.patches import Patch
from scipy import stats

from cbp.book.plotting import (
    CLASS_COLORS,
    CLASSIFIER_COLORS,
    MIN_FONT,
    PAGE_WIDTH,
    legend_below,
    one_panel,
    similarity_heatmap,
    subplots,
)
from cbp.paper import PAPER_NORM_CORRELATION

Run = dict[str, Any]

#: Line style of each head kind, so that two curves on top of each other both stay visible.
HEAD_STYLES: dict[str, dict[str, Any]] = {
    "learnable": {"color": CLASSIFIER_COLORS["learnable"], "ls": "-", "lw": 2.5},
    "cbp": {"color": CLASSIFIER_COLORS["cbp"], "ls": "--", "lw": 2.0},
    "equal": {"color": CLASSIFIER_COLORS["equal"], "ls": ":", "lw": 2.0},
}


def _seed_style(r: int, label: str, faint: float = 0.3) -> dict[str, Any]:
    """Line style of the ``r``-th run of a group: the first darker and labelled, the others faint."""
    return {"alpha": 0.9 if r == 0 else faint, "label": label if r == 0 else None}


def _epochs(run: Run) -> list[int]:
    """The epochs of a chapter 1 run's ``"history"``."""
    return [h["epoch"] for h in run["history"]]


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
    fig, ax = one_panel(panel_height=4.2)
    for ratio in ratios:
        w = torch.tensor([[1.0, 0.0], [0.0, ratio]]) * length  # (2, 2)
        p_a = torch.softmax(f @ w.T, dim=1)[:, 0]  # Eq. 1
        boundary = float(theta[(p_a < 0.5).nonzero()[0]])
        ax.plot(theta, p_a, label=f"{ratio:g}: {boundary:.0f}°")
    ax.axvline(45, color="grey", lw=0.8, ls=":")
    ax.set(xlabel=r"angle between $f$ and $w_a$ (degrees)", ylabel=r"$p(a \mid f)$ (Eq. 1)")
    ax.set_title("A larger norm moves the boundary")
    legend_below(fig, ncols=2, title=r"$\|w_b\| / \|w_a\|$: boundary at")
    return fig


def norm_correlations(runs: Sequence[Run], counts: np.ndarray, first_seed: int = 0) -> pd.DataFrame:
    """Per run: Pearson / Spearman correlation of the final prototype norms and the biases with frequency.

    Args:
        runs: learnable-head runs of :func:`cbp.book.toy.train_minibatch` (one per seed).
        counts: (N,) training samples per class (the same for every run).
        first_seed: seed of ``runs[0]`` (run r has seed ``first_seed + r``).
    """
    log_n, norms = np.log(counts), [run["history"][-1]["norms"] for run in runs]
    return pd.DataFrame(
        {
            "run (seed)": range(first_seed, first_seed + len(runs)),
            "Pearson(norm, log n)": [stats.pearsonr(n, log_n)[0] for n in norms],
            "Spearman(norm, n)": [stats.spearmanr(n, counts)[0] for n in norms],
            "Pearson(bias, log n)": [stats.pearsonr(run["bias"], log_n)[0] for run in runs],
        }
    )


def plot_against_frequency(
    runs: Sequence[Run], counts: np.ndarray, what: str, *, cbp_run: Run | None = None, length: float = 2.0
) -> Any:
    """Final prototype norm (``what="norms"``) or learned bias (``what="bias"``) of every class against
    ``log n_l``, one dot per class and run (seed 0 darker); ``cbp_run``'s norms beside them.
    """
    log_n = np.log(counts)
    colour = CLASSIFIER_COLORS["learnable"]
    fig, ax = one_panel(panel_height=3.8)
    of_norms = what == "norms"
    for r, run in enumerate(runs):
        y = run["history"][-1]["norms"] if of_norms else run["bias"]
        ax.scatter(log_n, y, s=22, color=colour, alpha=0.95 if r == 0 else 0.35)
    ax.scatter([], [], s=22, color=colour, label=f"learnable ({len(runs)} runs)")
    if cbp_run is not None:
        norms = cbp_run["history"][-1]["norms"]
        ax.scatter(log_n, norms, s=22, color=CLASSIFIER_COLORS["cbp"], label=f"CBP (frozen, T = {length:g})")
    ax.set_xlabel(r"$\log n_l$ (training samples of class $l$)")
    ax.set_ylabel(r"prototype norm $\|w_l\|$" if of_norms else r"learned bias $b_l$")
    ax.set_title("Prototype norm vs class frequency" if of_norms else "The bias learns the prior too")
    legend_below(fig, ncols=2)
    return fig


def plot_norm_correlation_over_epochs(
    groups: Mapping[str, tuple[Sequence[Run], str]],
    counts: np.ndarray,
    *,
    paper: float = PAPER_NORM_CORRELATION,
) -> Any:
    """Pearson(norm, log n) after every epoch, one line per run, one colour per group.

    Args:
        groups: name (e.g. "SGD") -> (runs, colour).
        counts: (N,) training samples per class.
        paper: the paper's correlation (Section 4.3), drawn as a dotted line.
    """
    fig, ax = one_panel(panel_height=3.8)
    for name, (runs, colour) in groups.items():
        for r, run in enumerate(runs):
            pearson = [stats.pearsonr(h["norms"], np.log(counts))[0] for h in run["history"]]
            ax.plot(_epochs(run), pearson, color=colour, **_seed_style(r, f"learnable, {name}", 0.35))
    ax.axhline(paper, color=CLASSIFIER_COLORS["paper"], ls=":", label=f"{paper:g} (paper, ADE20K)")
    ax.axhline(0, color="black", lw=0.6)
    ax.set(xlabel="epoch", ylabel=r"Pearson($\|w_l\|$, $\log n_l$)")
    ax.set_title("Norm-frequency correlation in training")
    legend_below(fig, ncols=3)
    return fig


def pair_masks(num_classes: int, pairs: Sequence[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """(N, N) bool masks of the confusable pairs (both orders) and of every other off-diagonal pair."""
    pair = np.zeros((num_classes, num_classes), dtype=bool)
    for a, b in pairs:
        pair[a, b] = pair[b, a] = True
    return pair, ~pair & ~np.eye(num_classes, dtype=bool)


def plot_pair_cosines(runs: Mapping[str, Sequence[Run]], pairs: Sequence[tuple[int, int]]) -> Any:
    """Mean cosine of the confusable pairs (solid) and of the other pairs (dashed) after every epoch."""
    fig, ax = one_panel(panel_height=3.8)
    for kind, group in runs.items():
        pair, other = pair_masks(len(group[0]["history"][0]["norms"]), pairs)
        for r, run in enumerate(group):
            conf = [h["cos"][pair].mean() for h in run["history"]]
            rest = [h["cos"][other].mean() for h in run["history"]]
            colour = CLASSIFIER_COLORS[kind]
            ax.plot(_epochs(run), conf, lw=2, color=colour, **_seed_style(r, f"{kind}: confusable"))
            ax.plot(_epochs(run), rest, lw=1, ls="--", color=colour, **_seed_style(r, f"{kind}: other pairs"))
    ax.set(xlabel="epoch", ylabel=r"mean $\cos(w_i, w_j)$", title="Similarity of prototypes in training")
    legend_below(fig, ncols=2)
    return fig


def plot_separability(runs: Mapping[str, Sequence[Run]]) -> Any:
    """Class separability CS (Eq. 8) of the prototypes after every epoch, one line per run."""
    fig, ax = one_panel(panel_height=3.6)
    for kind, group in runs.items():
        for r, run in enumerate(group):
            cs = [0.5 * (h["cos"].sum() - np.trace(h["cos"])) for h in run["history"]]
            ax.plot(_epochs(run), cs, color=CLASSIFIER_COLORS[kind], **_seed_style(r, kind))
    n = len(next(iter(runs.values()))[0]["history"][0]["norms"])
    ax.set(xlabel="epoch", ylabel="class separability CS (Eq. 8)")
    ax.set_title(f"CS of the prototypes, N = {n} classes")
    legend_below(fig)
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
            row = {"classifier": kind, "cos confusable": cos[pair].mean(), "cos other": cos[other].mean()}
            rows.append(row | {"CS (Eq. 8)": class_separability(run["W"])})
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
        ax.set(xlabel="class j (0 = most frequent)", ylabel="class i")
        ax.tick_params(axis="x", labelrotation=90)
    fig.colorbar(mesh, ax=axes, shrink=0.8, label=r"$\cos(w_i, w_j)$")
    return fig


def plot_recall_vs_frequency(
    runs: Mapping[str, Sequence[Run]], counts: np.ndarray, pairs: Sequence[tuple[int, int]] = ()
) -> Any:
    """Per-class recall on the balanced test set against ``log n_l``, mean ± std over runs, per head.

    Each head is a set of unconnected markers (a line through classes ordered by frequency would only
    zigzag between the classes of the confusable pairs), shifted a little sideways so that equal
    values stay visible: the learnable head as open circles, the others as filled squares and triangles.
    The rare member of each of ``pairs`` (its class with fewer samples) is marked by a grey band.
    """
    fig, ax = one_panel(panel_height=4.0)
    log_n = np.log(counts)
    dodge = 0.015 * (log_n.max() - log_n.min())
    for k, (kind, group) in enumerate(runs.items()):
        rec = np.stack([run["recall"] for run in group])  # (runs, N)
        x = log_n + (k - (len(runs) - 1) / 2) * 2 * dodge
        marker = {"learnable": "o", "cbp": "s"}.get(kind, "^")
        colour, filled = CLASSIFIER_COLORS[kind], kind != "learnable"
        look = {"ms": 6, "mfc": colour, "zorder": 3} if filled else {"ms": 8, "mfc": "none", "zorder": 2}
        ax.errorbar(
            x, rec.mean(0), yerr=rec.std(0), fmt=marker, mew=2, capsize=3, color=colour, label=kind, **look
        )
    band = {"color": "grey", "alpha": 0.2, "lw": 0}
    for a, b in pairs:
        rare = a if counts[a] < counts[b] else b
        ax.axvspan(log_n[rare] - 2.5 * dodge, log_n[rare] + 2.5 * dodge, **band)
    ax.set(xlabel=r"$\log n_l$ (training samples)", ylabel="recall, balanced test (%)")
    ax.set_title(f"Per-class recall, {len(next(iter(runs.values())))} runs (synthetic)")
    extra = [Patch(**band, label="rare member of a confusable pair")] if len(pairs) else []
    legend_below(fig, ncols=2, extra=extra, title="mean ± std over runs, one marker per class")
    return fig


def recall_summary(runs: Mapping[str, Sequence[Run]], tail: int = 4) -> pd.DataFrame:
    """Per head: mAcc (mean, std over runs) and mean recall of the ``tail`` rarest and most frequent classes."""
    macc = [[run["mAcc"] for run in group] for group in runs.values()]
    rec = [np.stack([run["recall"] for run in group]) for group in runs.values()]  # (runs, N), frequent first
    return pd.DataFrame(
        {
            "classifier": list(runs),
            "mAcc (%)": [np.mean(m) for m in macc],
            "mAcc std": [np.std(m) for m in macc],
            f"recall, {tail} rarest (%)": [r[:, -tail:].mean() for r in rec],
            f"recall, {tail} most frequent (%)": [r[:, :tail].mean() for r in rec],
        }
    )


# --------------------------------------------------------------------------------------------
# Chapter 2: three classes in the plane


def plot_2d_sets(dataset: Any, names: Sequence[str], seed: int) -> Any:
    """The training points of each 2-D set (``dataset(name, seed)``), one panel per set; the class
    counts in the titles, the class colours in one legend below."""
    fig, axes = subplots(1, len(names), panel_height=3.6, sharex=True, sharey=True)
    for ax, name in zip(axes[0], names):
        d = dataset(name, seed)
        counts = torch.bincount(d["y"]).tolist()
        for c in range(len(counts)):
            pts = d["x"][d["y"] == c]
            ax.scatter(pts[:, 0], pts[:, 1], s=4, alpha=0.5, color=CLASS_COLORS[c], label=f"class {c}")
        ax.set(title=f"{name}: " + " / ".join(map(str, counts)), xlabel="$x_1$")
    axes[0, 0].set_ylabel("$x_2$")
    legend_below(fig, markerscale=3, title="training points per class in the titles")
    return fig


def summary_2d(runs: Mapping[tuple[str, str, int], Run], first_seed: int = 0) -> pd.DataFrame:
    """mAcc and per-class recall of every 2-D run, mean and std over seeds per (data set, head)."""
    rows = []
    for (name, kind, _), v in runs.items():
        rare = len(v["recall"]) - 1
        recall = {f"recall class {c}" + " (rare)" * (c == rare): x for c, x in enumerate(v["recall"])}
        rows.append({"data": name, "classifier": kind, "mAcc (%)": v["mAcc"]} | recall)
    return pd.DataFrame(rows).groupby(["data", "classifier"], sort=False).agg(["mean", "std"])


def _head_runs(runs: Mapping[tuple[str, str, int], Run], name: str, kind: str) -> list[Run]:
    """The runs of one head on one data set, by seed index."""
    return [runs[key] for key in sorted(k for k in runs if k[0] == name and k[1] == kind)]


def plot_learning_curves(
    runs: Mapping[tuple[str, str, int], Run],
    names: Sequence[str],
    heads: Mapping[str, str],
    *,
    mark: int | None = None,
) -> Any:
    """Test mAcc (left) and recall of the rarest class (right) during training, mean ± std over seeds.

    Args:
        runs: chapter 2's runs (their ``"steps"`` and ``"recall_path"``), keyed ``(name, kind, seed index)``.
        names: the data sets, one row of panels each.
        heads: kind -> its short name (one line each, in the head's colour and line style).
        mark: a step to mark with a vertical line (the step of the early decision regions), or None.
    """
    fig, axes = subplots(len(names), 2, panel_height=2.6, sharex=True, sharey=True)
    for row, name in zip(axes, names):
        for kind, label in heads.items():
            group = _head_runs(runs, name, kind)
            rec, steps = np.stack([run["recall_path"] for run in group]), group[0]["steps"]  # (R, S, N), (S,)
            for ax, y in zip(row, (rec.mean(2), rec[:, :, -1])):  # (R, S) each
                mean, std = y.mean(0), y.std(0)
                ax.plot(steps, mean, label=label, **HEAD_STYLES[kind])
                ax.fill_between(steps, mean - std, mean + std, color=HEAD_STYLES[kind]["color"], alpha=0.15)
        row[0].set_ylabel(f"{name}\ntest (%)")
        for ax, title in zip(row, ("mAcc", "recall, rare class")):
            if mark is not None:
                ax.axvline(mark, color="grey", lw=0.8, ls=":")
            ax.set_title(title)
    for ax in axes[-1]:
        ax.set_xlabel("SGD step")
    legend_below(fig, title=f"head (line: mean, band: ± std over {len(group)} seeds)")
    return fig


def plot_decision_regions(
    rows: Mapping[str, Mapping[str, Run]],
    data: Mapping[str, Any],
    heads: Mapping[str, str],
    *,
    grid_size: int = 160,
    lim: tuple[tuple[float, float], tuple[float, float]] = ((-3.2, 3.2), (-3.0, 4.6)),
) -> Any:
    """The plane coloured by the class each head predicts, the training points on top; one row per stage.

    Args:
        rows: row name (e.g. "after 100 steps") -> kind -> a run of :func:`cbp.book.toy.train_full_batch`.
        data: the training set ``{"x", "y"}`` drawn on top (its class counts go in the legend).
        heads: kind -> its short name (one panel each, at most three).
        grid_size: grid points along each axis.
        lim: the plotted ranges of ``x_1`` and ``x_2``.
    """
    gx, gy = torch.meshgrid(
        torch.linspace(*lim[0], grid_size), torch.linspace(*lim[1], grid_size), indexing="xy"
    )
    grid = torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=1)  # (G, 2)
    counts = torch.bincount(data["y"]).tolist()
    cmap = ListedColormap(CLASS_COLORS[: len(counts)])
    fig, axes = subplots(len(rows), len(heads), panel_height=2.6, sharex=True, sharey=True)
    for row_axes, (when, row) in zip(axes, rows.items()):
        for ax, kind in zip(row_axes, heads):
            with torch.no_grad():
                region = row[kind]["model"](grid).argmax(1).reshape(grid_size, grid_size)
            ax.contourf(gx, gy, region, levels=np.arange(len(counts) + 1) - 0.5, cmap=cmap, alpha=0.25)
            ax.scatter(data["x"][:, 0], data["x"][:, 1], c=data["y"], cmap=cmap, s=3, alpha=0.6)
            rec = row[kind]["recall"]
            ax.set_title(f"{heads[kind]}\nmAcc {row[kind]['mAcc']:.0f} %, rare {rec[-1]:.0f} %")
            ax.grid(False)
        row_axes[0].set_ylabel(f"{when}\n$x_2$")
    for ax in axes[-1]:
        ax.set_xlabel("$x_1$")
    for c, n in enumerate(counts):
        axes[0, 0].scatter([], [], s=30, color=CLASS_COLORS[c], label=f"class {c} (n={n})")
    legend_below(fig, title="colour: predicted class; dots: training points")
    return fig


def plot_prototype_paths(
    runs: Mapping[tuple[str, str, int], Run], name: str, counts: Sequence[int], *, length: float
) -> Any:
    """The learnable head's prototype norms (left) and cosines (right) during training, on one data set.

    Args:
        runs: chapter 2's runs; every seed of ``(name, "learnable", r)`` is drawn (seed 0 darker).
        name: the data set.
        counts: training points per class of that set (legend).
        length: T of the frozen heads (drawn as a reference line).
    """
    fig, axes = subplots(1, 2, panel_height=4.4, sharex=True)
    group = _head_runs(runs, name, "learnable")
    for r, run in enumerate(group):
        W = run["trajectory"]  # (S, N, C)
        unit = F.normalize(W, dim=2)
        cos = unit @ unit.transpose(1, 2)  # (S, N, N)
        for c in range(W.shape[1]):
            style = _seed_style(r, f"$\\|w_{c}\\|$, class {c} (n={counts[c]})")
            axes[0, 0].plot(run["steps"], W[:, c].norm(dim=1), color=CLASS_COLORS[c], **style)
        for (p, q), ls in [((1, 2), "-"), ((0, 1), "--"), ((0, 2), ":")]:
            style = _seed_style(r, f"cos($w_{p}$, $w_{q}$)")
            axes[0, 1].plot(run["steps"], cos[:, p, q], color="black", ls=ls, **style)
    axes[0, 0].axhline(length, color="grey", ls="-.", lw=1.5, label=f"frozen heads: norm T = {length:g}")
    axes[0, 1].axhline(0, color="grey", ls="-.", lw=1.5, label="CBP: cos = 0")
    axes[0, 0].set(ylabel=r"$\|w_l\|$", title="norms", xlabel="SGD step")
    axes[0, 1].set(ylabel=r"$\cos(w_i, w_j)$", title="cosines", xlabel="SGD step")
    legend_below(fig, ncols=2, title=f"learnable head, {name} set, {len(group)} seeds (seed 0 darker)")
    return fig


def plot_feature_space(
    runs: Mapping[str, Run], data: Mapping[str, Any], heads: Mapping[str, str], *, every: int = 5
) -> Any:
    """Test features scaled to unit length (dots) and prototype directions (arrows) in the 3-D feature
    space, one panel per head; the titles give the prototypes' true norms.

    Args:
        runs: kind -> a run of :func:`cbp.book.toy.train_full_batch` (its ``"encoder"`` and ``"head"``).
        data: the data set; its test points are drawn (every ``every``-th one).
        heads: kind -> its short name (one panel each, at most three).
        every: draw one test point in this many.
    """
    from matplotlib import pyplot as plt
    from matplotlib.lines import Line2D

    fig = plt.figure(figsize=(PAGE_WIDTH, 3.4), layout="constrained")
    x, y = data["x_test"][::every], data["y_test"][::every]
    num_classes = int(y.max()) + 1
    for j, kind in enumerate(heads):
        ax = fig.add_subplot(1, len(heads), j + 1, projection="3d")
        with torch.no_grad():
            feats = F.normalize(runs[kind]["encoder"](x), dim=1)  # (M, 3), unit length
        W = runs[kind]["head"].prototypes.detach()  # (N, 3)
        for c in range(num_classes):
            rare = " (rare)" if c == num_classes - 1 else ""
            colour, pts = CLASS_COLORS[c], feats[y == c]
            ax.scatter(*pts.T, color=colour, s=6, alpha=0.5, depthshade=False, label=f"class {c}{rare}")
            ax.quiver(0, 0, 0, *(1.5 * W[c] / W[c].norm()), color=colour, lw=2.5, arrow_length_ratio=0.2)
        norms = " / ".join(f"{float(v):.2f}" for v in W.norm(dim=1))
        ax.set_title(f"{heads[kind]}\nnorms {norms}", fontsize=MIN_FONT + 1)
        lim = (-1.2, 1.2)
        ax.set(xlim=lim, ylim=lim, zlim=lim, xticklabels=[], yticklabels=[], zticklabels=[])
        ax.set_box_aspect((1, 1, 1))
        for axis in "xyz":
            getattr(ax, f"set_{axis}label")(f"$f_{'xyz'.index(axis) + 1}$", labelpad=-12)
    arrow = Line2D([], [], color="black", lw=2.5, label="arrow: prototype direction (class colour)")
    legend_below(fig, ncols=2, extra=[arrow], markerscale=2.5, title="test features, scaled to unit length")
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
        mean, std = agg[(col, "mean")], agg[(col, "std")]
        ax.errorbar(agg.index, mean, yerr=std, fmt="o-", capsize=3, color=CLASSIFIER_COLORS["cbp"])
        ax.set(xscale="log", ylabel=col)
        ax.set_xticks(agg.index, [f"{t:g}" for t in agg.index], minor=False)
        ax.minorticks_off()
    axes[-1, 0].set(yscale="log", xlabel="prototype length T (log scale)")
    axes[0, 0].set_title(f"CBP, long-tailed toy: {seeds} seeds, {steps} SGD steps")
    return fig


def recall_at(run: Run, step: int) -> tuple[float, float]:
    """mAcc and the rarest class's recall (%) of a 2-D run at one of its recorded ``"steps"``.

    Raises:
        KeyError: ``step`` was not recorded (it is not a multiple of the run's ``record_every``).
    """
    where = np.flatnonzero(run["steps"] == step)
    if not len(where):
        raise KeyError(f"step {step} was not recorded: the run recorded steps {run['steps'].tolist()}")
    recall = run["recall_path"][where[0]]  # (N,)
    return float(recall.mean()), float(recall[-1])


def sweep_numbers(run: Run) -> dict[str, float]:
    """The numbers of one 2-D run that the T sweep tabulates: mAcc, rare recall, loss, feature norm."""
    return {
        "mAcc (%)": run["mAcc"],
        "rare recall (%)": run["recall"][2],
        "final train loss": run["loss"],
        "mean |f|": run["feat_norm"],
    }
