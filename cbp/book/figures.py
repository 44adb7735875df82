"""Figures of the training pages (chapters 5 and 6): loss curves, mIoU curves, per-class IoU, predictions."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cbp.book.analysis_tables import REGIMES, arm_records, frequency_group_table
from cbp.book.plotting import CLASSIFIER_COLORS, MIN_FONT, PAGE_WIDTH, legend_below, one_panel, subplots
from cbp.book.run_data import read_log, read_metrics, validations
from cbp.experiments.study import ARM_LABELS, arm_label


def colorize(label: np.ndarray, palette: np.ndarray, ignore_color: Sequence[int] = (0, 0, 0)) -> np.ndarray:
    """Class map (H, W) int -> RGB uint8 (H, W, 3) with ``palette`` (N, 3); ignored / out-of-range pixels black."""
    palette = np.asarray(palette, dtype=np.uint8)
    table = np.vstack([palette, np.asarray(ignore_color, dtype=np.uint8)[None]])  # (N + 1, 3)
    idx = np.where((label >= 0) & (label < len(palette)), label, len(palette))
    return table[idx]


def _run_color(label: str) -> str:
    """The book's colour of a run, from its :func:`run_name` (CBP runs vs learnable ones)."""
    return CLASSIFIER_COLORS["cbp" if "CBP" in label else "learnable"]


def plot_losses(
    runs: dict[str, str | Path], terms: Sequence[str] = ("loss", "ce", "centroid", "category")
) -> Any:
    """One panel per loss term (two a row), one line per run (``label -> run_dir``); a term a run lacks
    is skipped.

    Returns:
        The matplotlib figure.
    """
    rows = (len(terms) + 1) // 2
    fig, axes = subplots(rows, 2, panel_height=2.9, sharex=True)
    panels = axes.ravel()
    for label, run_dir in runs.items():
        log = read_log(run_dir)
        color = _run_color(label)
        for ax, term in zip(panels, terms):
            if term in log and log[term].abs().sum() > 0:
                ax.plot(log.index, log[term], label=label, color=color)
    names = {"loss": "total loss (Eq. 7)", "ce": "cross-entropy", "centroid": "centroid loss (Eq. 4)"}
    names["category"] = "category loss (Eq. 5)"
    for ax, term in zip(panels, terms):
        ax.set(title=names.get(term, term), ylabel="loss")
    for ax in axes[-1]:
        ax.set_xlabel("iteration")
    for ax in panels[len(terms) :]:
        ax.set_visible(False)
    legend_below(fig, ncols=2)
    fig.supylabel("mean over each logged window", fontsize=MIN_FONT)
    return fig


def plot_miou(runs: dict[str, str | Path]) -> Any:
    """Validation mIoU against iterations (``eval.jsonl`` + the final ``metrics.json``), one line per run."""
    fig, ax = one_panel(panel_height=3.8)
    for label, run_dir in runs.items():
        points = validations(run_dir, read_metrics(run_dir))
        ax.plot(points.index.tolist(), points.tolist(), marker="o", label=label, color=_run_color(label))
    ax.set(xlabel="iteration", ylabel="validation mIoU (%)")
    legend_below(fig, ncols=2)
    return fig


def plot_per_class_iou(tables: dict[str, pd.DataFrame], *, max_classes: int = 30) -> Any:
    """Per-class IoU bars, classes from the most to the least frequent (training pixels), one bar per run.

    Args:
        tables: ``label -> per_class_table(metrics)`` (same classes, same order).
        max_classes: at most this many classes, evenly spread over the frequency order (more class names
            than 30 do not fit a page's width at 10 pt).
    """
    first = next(iter(tables.values()))
    order = first.index.to_numpy()
    if len(order) > max_classes:
        order = order[np.linspace(0, len(order) - 1, max_classes).round().astype(int)]
    width = 0.8 / len(tables)
    x = np.arange(len(order))
    fig, ax = one_panel(width=PAGE_WIDTH, panel_height=4.2)
    for k, (label, table) in enumerate(tables.items()):
        offset = (k - (len(tables) - 1) / 2) * width
        ax.bar(x + offset, table.loc[order, "IoU"], width, label=label, color=_run_color(label))
    ax.set_xticks(x, first.loc[order, "class"], rotation=90)
    shown = "" if len(order) == len(first) else f", {len(order)} of {len(first)} evenly spread"
    order_words = first.attrs.get("order", "by index")
    ax.set_xlabel(f"class, {order_words}{shown}\n(no bar: IoU 0, or absent from validation)")
    ax.set_ylabel("IoU (%)")
    legend_below(fig, ncols=2)
    return fig


def plot_predictions(examples: dict[str, dict[str, Any]]) -> Any:
    """Image | ground truth | one prediction per run, one row per validation image.

    The one figure of the book with more than three panels a row (two runs: four): each panel is a
    64 x 64 thumbnail with no text but its column's title, shown at about its own size on a phone.

    Args:
        examples: ``label -> predict_examples(run_dir, indices)`` (same indices for every run).
    """
    from matplotlib import pyplot as plt

    first = next(iter(examples.values()))
    rows, cols = len(first["images"]), 2 + len(examples)
    side = min(1.75, PAGE_WIDTH / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(side * cols, side * rows + 0.4), squeeze=False)
    for r in range(rows):
        truth = colorize(first["labels"][r], first["palette"])
        panels = [("image", first["images"][r]), ("ground truth", truth)]
        panels += [(label, colorize(ex["preds"][r], ex["palette"])) for label, ex in examples.items()]
        for ax, (title, img) in zip(axes[r], panels):
            ax.imshow(img, interpolation="nearest")
            ax.set(xticks=[], yticks=[])
            ax.grid(False)
            if r == 0:
                ax.set_title(title, fontsize=MIN_FONT)
    return fig


# --------------------------------------------------------------------------------------------
# Chapter 8: figures of the recorded study (read from the frame of analysis_tables.load_results)


def plot_frequency_groups(
    results: pd.DataFrame,
    arms: Sequence[tuple[str, str, str]],
    *,
    title_suffix: str = "",
    regimes: Sequence[str] = REGIMES,
) -> Any:
    """Fig. 5 analogue: mean F1 of each frequency group (rarest first), one bar per arm, one row per regime.

    Bars are seaborn's mean over seeds with the seeds' standard deviation as error bar.

    Args:
        results: :func:`cbp.book.analysis_tables.load_results` of the study.
        arms: ``(arm, label, colour key of CLASSIFIER_COLORS)`` for each bar.
        title_suffix: appended to each panel's title (e.g. what "ours" is).
        regimes: the regimes to draw, one panel each.
    """
    import seaborn as sns

    table = frequency_group_table(results, arms)
    palette = {label: CLASSIFIER_COLORS.get(colour, "#333333") for _, label, colour in arms}
    fig, axes = subplots(len(regimes), 1, width=PAGE_WIDTH, panel_height=3.4, sharey=True)
    for ax, regime in zip(axes[:, 0], regimes):
        part = table[table["regime"] == regime]
        if len(part):
            sns.barplot(part, x="group", y="F1", hue="classifier", palette=palette, errorbar="sd",
                        capsize=0.15, err_kws={"linewidth": 1}, ax=ax, legend=ax is axes[0, 0])  # fmt: skip
        ax.set(xlabel="frequency group (0 = rarest classes)", ylabel="mean F1 (%)")
        ax.set_title(f"{regime}{title_suffix}")
    return fig


def plot_norm_vs_count(results: pd.DataFrame, counts: np.ndarray, arm: str = "linear") -> Any:
    """The learnable classifier's row norms against its classes' training pixels (seed 0), one row per regime.

    Args:
        results: the study's results.
        counts: (N,) training pixels of each class.
        arm: the arm whose classifier rows are shown.
    """
    from cbp.analysis import norm_frequency_correlation

    fig, axes = subplots(len(REGIMES), 1, panel_height=3.3)
    for ax, regime in zip(axes[:, 0], REGIMES):
        recs = arm_records(results, regime, arm)
        if not recs:
            ax.set_visible(False)
            continue
        norms = np.asarray(recs[0]["metrics"]["prototype_norms"], dtype=float)
        c = norm_frequency_correlation(norms, counts)  # the same numbers the study recorded
        ax.scatter(counts, norms, s=16, color=CLASSIFIER_COLORS["learnable"], label="learnable (seed 0)")
        ax.set_xscale("log")
        ax.set(xlabel="training pixels of the class (log scale)", ylabel="norm of the class's row")
        ax.set_title(f"{regime}: Pearson(norm, log count) {c['pearson_log']:.2f}")
        ax.legend(title="CBP rows: all norms = T = 2")
    return fig


def plot_prototype_cosines(
    results: pd.DataFrame, regime: str, arms: Sequence[tuple[str, str]], order: Sequence[int]
) -> Any:
    """Fig. 6 analogue: cosine between every pair of classifier rows (seed 0), two panels a row.

    Args:
        results: the study's results.
        regime: "scratch" or "pretrained".
        arms: ``(arm, title)`` of each panel (arms without a run are left out).
        order: class order of both axes (e.g. the confusable groups first).
    """
    from cbp.book.plotting import similarity_heatmap

    shown = [(a, t) for a, t in arms if arm_records(results, regime, a)]
    rows = (len(shown) + 1) // 2
    fig, axes = subplots(rows, 2, panel_height=3.6)
    im = None
    for ax, (arm, title) in zip(axes.ravel(), shown):
        rec = arm_records(results, regime, arm)[0]
        cos = np.asarray(rec["analysis"]["prototype_cosine"], dtype=float)[np.ix_(order, order)]
        labels = [str(c) if k % 10 == 0 else "" for k, c in enumerate(order)]
        cs = rec["analysis"]["class_separability"]
        im = similarity_heatmap(ax, cos, labels, title=f"{title}\nCS = {cs:.1f}")
        ax.set(xlabel="class j (groups first)", ylabel="class i (groups first)")
    for ax in axes.ravel()[len(shown) :]:
        ax.set_visible(False)
    if im is not None:
        fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8, label="cosine similarity")
    return fig


def _run_words(name: str) -> str:
    """ "pretrained-cbp_occl-s0" -> "CBP + OCCL, seed 0" (a study run's name in words; the page says the regime)."""
    parts = name.split("-")
    if len(parts) != 3 or parts[1] not in ARM_LABELS or not parts[2].startswith("s"):
        return name
    return f"{arm_label(parts[1], short=True)}, seed {parts[2][1:]}"


def plot_similarity_snapshot(snap: Any, class_names: Sequence[str], *, max_classes: int = 3) -> Any:
    """One validation image: image, ground truth, prediction, then cos(pixel embedding, prototype) maps.

    Args:
        snap: the arrays of ``similarity_snapshot.npz`` (``"<run>/image"``, ``"<run>/label"``, ...).
        class_names: names of the classes.
        max_classes: similarity maps shown per run (the first classes of the ground truth).

    Returns:
        The figure: one block of two rows per run (3 panels a row).
    """
    n = len(class_names)
    names = sorted({k.split("/")[0] for k in snap.files})
    label = snap[f"{names[0]}/label"]
    present = [int(c) for c in np.unique(label) if c != 255][:max_classes]
    cols = 3
    per_run = 1 + (len(present) + cols - 1) // cols
    fig, axes = subplots(per_run * len(names), cols, panel_height=2.5)
    im = None
    for i, name in enumerate(names):
        block = axes[i * per_run : (i + 1) * per_run].ravel()
        gt = np.where(label == 255, np.nan, label.astype(float))
        block[0].imshow(snap[f"{name}/image"].transpose(1, 2, 0))
        block[0].set_title(f"{_run_words(name)}\nimage {int(snap[f'{name}/index'])}")
        block[1].imshow(gt, cmap="tab20", vmin=0, vmax=n, interpolation="nearest")
        block[1].set_title("ground truth")
        block[2].imshow(snap[f"{name}/pred"], cmap="tab20", vmin=0, vmax=n, interpolation="nearest")
        block[2].set_title("prediction")
        for j, c in enumerate(present):
            sim = snap[f"{name}/similarity"][c].astype(float)
            im = block[cols + j].imshow(sim, cmap="RdBu_r", vmin=-1, vmax=1)
            block[cols + j].set_title(f"cos(f, w[{class_names[c]}])")
        for ax in block:
            ax.set(xticks=[], yticks=[])
            ax.grid(False)
        for ax in block[cols + len(present) :]:
            ax.set_visible(False)
    if im is not None:
        fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.6, label="cosine (pixel embedding, prototype)")
    return fig
