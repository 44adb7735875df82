"""Figures of the training pages (chapters 5 and 6): loss curves, mIoU curves, per-class IoU, predictions."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cbp.book.plotting import CLASSIFIER_COLORS
from cbp.book.run_data import read_log, read_metrics


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
    """One panel per loss term, one line per run (``label -> run_dir``); a term a run lacks is skipped.

    Returns:
        The matplotlib figure.
    """
    from matplotlib import pyplot as plt

    fig, axes = plt.subplots(1, len(terms), figsize=(3.2 * len(terms), 3.0), squeeze=False)
    for label, run_dir in runs.items():
        log = read_log(run_dir)
        color = _run_color(label)
        for ax, term in zip(axes[0], terms):
            if term in log and log[term].abs().sum() > 0:
                ax.plot(log.index, log[term], label=label, color=color)
    names = {"loss": "total loss (Eq. 7)", "ce": "cross-entropy", "centroid": "centroid loss (Eq. 4)"}
    names["category"] = "category loss (Eq. 5)"
    for ax, term in zip(axes[0], terms):
        ax.set_title(names.get(term, term))
        ax.set_xlabel("iteration")
        ax.set_ylabel("loss (mean over logged window)")
    axes[0][0].legend()
    return fig


def plot_miou(runs: dict[str, str | Path]) -> Any:
    """Validation mIoU against iterations (``eval.jsonl`` + the final ``metrics.json``), one line per run."""
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(5.0, 3.2))
    for label, run_dir in runs.items():
        metrics = read_metrics(run_dir)
        points = {metrics["iters"]: metrics["mIoU"]}
        if (Path(run_dir) / "eval.jsonl").is_file():
            points = {**read_log(run_dir, "eval.jsonl")["mIoU"].to_dict(), **points}
        color = _run_color(label)
        ax.plot(list(points), list(points.values()), marker="o", label=label, color=color)
    ax.set_xlabel("iteration")
    ax.set_ylabel("validation mIoU (%)")
    ax.legend()
    return fig


def plot_per_class_iou(tables: dict[str, pd.DataFrame], *, max_classes: int = 60) -> Any:
    """Per-class IoU bars, classes from the most to the least frequent (training pixels), one bar per run.

    Args:
        tables: ``label -> per_class_table(metrics)`` (same classes, same order).
        max_classes: at most this many classes, evenly spread over the frequency order (150 / 171 bars
            are unreadable on a page).
    """
    from matplotlib import pyplot as plt

    first = next(iter(tables.values()))
    order = first.index.to_numpy()
    if len(order) > max_classes:
        order = order[np.linspace(0, len(order) - 1, max_classes).round().astype(int)]
    width = 0.8 / len(tables)
    x = np.arange(len(order))
    fig, ax = plt.subplots(figsize=(min(16.0, 2.0 + 0.22 * len(order)), 3.6))
    for k, (label, table) in enumerate(tables.items()):
        color = _run_color(label)
        ax.bar(
            x + (k - (len(tables) - 1) / 2) * width, table.loc[order, "IoU"], width, label=label, color=color
        )
    ax.set_xticks(x, first.loc[order, "class"], rotation=90, fontsize=7)
    ax.set_xlabel(f"class, {first.attrs.get('order', 'by index')} (no bar: IoU 0, or absent from validation)")
    ax.set_ylabel("IoU (%)")
    ax.legend()
    return fig


def plot_predictions(examples: dict[str, dict[str, Any]]) -> Any:
    """Image | ground truth | one prediction per run, one row per validation image.

    Args:
        examples: ``label -> predict_examples(run_dir, indices)`` (same indices for every run).
    """
    from matplotlib import pyplot as plt

    first = next(iter(examples.values()))
    rows, cols = len(first["images"]), 2 + len(examples)
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.2 * rows), squeeze=False)
    for r in range(rows):
        panels = [
            ("image", first["images"][r]),
            ("ground truth", colorize(first["labels"][r], first["palette"])),
        ]
        panels += [(label, colorize(ex["preds"][r], ex["palette"])) for label, ex in examples.items()]
        for ax, (title, img) in zip(axes[r], panels):
            ax.imshow(img, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
            if r == 0:
                ax.set_title(title, fontsize=9)
    return fig
