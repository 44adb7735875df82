"""Figure style shared by the book's notebooks (matplotlib only; no library logic here).

Every notebook starts with ``use_style()`` so that figures look the same across pages, and ends a
figure with ``finish(fig)`` (tight layout, optionally saved under a folder, then shown). Colours
for the classifier families compared throughout the book come from ``CLASSIFIER_COLORS`` so a
reader sees "learnable" in the same colour on every page.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np

#: One colour per classifier family used across the book (colour-blind safe, Okabe-Ito).
CLASSIFIER_COLORS: dict[str, str] = {
    "learnable": "#D55E00",  # vermillion: the 1x1-conv baseline (prototypes learned)
    "cbp": "#0072B2",  # blue: frozen, orthogonal, equal-norm prototypes (the paper)
    "equal": "#009E73",  # green: equal norm only (no Gram-Schmidt)
    "orthogonal": "#CC79A7",  # purple: orthogonal only (no equalisation)
    "gradient": "#E69F00",  # orange: CBP init, then learned
    "ema": "#56B4E9",  # sky blue: CBP init, then EMA of category centroids
    "penalty": "#F0E442",  # yellow: learned + re-equalised + orthogonality penalty
    "paper": "#555555",  # grey: numbers quoted from the paper
}

#: A qualitative palette for class colours in toy problems (Okabe-Ito order).
CLASS_COLORS: list[str] = [
    "#0072B2",
    "#D55E00",
    "#009E73",
    "#CC79A7",
    "#E69F00",
    "#56B4E9",
    "#F0E442",
    "#000000",
]


def use_style(*, dpi: int = 110, font_size: float = 10.0) -> None:
    """Set the book's matplotlib style (call once at the top of a notebook).

    Args:
        dpi: Figure resolution in the rendered book (PNG outputs).
        font_size: Base font size in points.
    """
    mpl.rcParams.update(
        {
            "figure.dpi": dpi,
            "savefig.dpi": dpi,
            "figure.figsize": (6.4, 4.0),
            "font.size": font_size,
            "axes.titlesize": font_size + 1,
            "axes.labelsize": font_size,
            "axes.grid": True,
            "grid.alpha": 0.3,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "legend.frameon": False,
            "legend.fontsize": font_size - 1,
            "image.cmap": "viridis",
            "axes.prop_cycle": mpl.cycler(color=CLASS_COLORS),
            # Plain-text SVG/PNG output: never fetch fonts from anywhere.
            "svg.fonttype": "none",
        }
    )


def finish(fig: plt.Figure, name: str | None = None, *, out_dir: str | Path | None = None) -> None:
    """Lay out a figure, optionally save it as ``out_dir/name.png``, then show it.

    Args:
        fig: The figure to finish.
        name: File stem used when ``out_dir`` is given.
        out_dir: Folder for a PNG copy (created if missing); None saves nothing.
    """
    fig.tight_layout()
    if out_dir is not None and name is not None:
        path = Path(out_dir)
        path.mkdir(parents=True, exist_ok=True)
        fig.savefig(path / f"{name}.png", bbox_inches="tight")
    plt.show()


def seed_strip(
    ax: plt.Axes,
    values: dict[str, np.ndarray],
    *,
    colors: dict[str, str] | None = None,
    ylabel: str = "validation mIoU (%)",
    title: str = "",
) -> None:
    """Every seed as a dot and the mean as a bar, one column per label (arms of a table).

    Args:
        ax: Axes to draw on.
        values: label -> (seeds,) values; empty arrays are left out.
        colors: label -> colour (default dark grey).
        ylabel, title: axis label and title.
    """
    colors = colors or {}
    shown = [(k, np.asarray(v, dtype=float)) for k, v in values.items() if np.asarray(v).size]
    for i, (label, v) in enumerate(shown):
        colour = colors.get(label, "#333333")
        ax.bar(i, np.nanmean(v), color=colour, alpha=0.35, width=0.6)
        ax.plot(i + np.linspace(-0.1, 0.1, v.size), v, "o", color=colour, ms=4)
    ax.set_xticks(range(len(shown)), [k for k, _ in shown], rotation=20)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if shown:
        allv = np.concatenate([v for _, v in shown])
        lo, hi = np.nanmin(allv), np.nanmax(allv)
        ax.set_ylim(lo - 0.3 * (hi - lo + 1), hi + 0.3 * (hi - lo + 1))


def effect_plot(
    ax: plt.Axes,
    labels: list[str],
    d: np.ndarray,
    two_s: np.ndarray,
    *,
    xlabel: str = "d (mIoU points)",
    xlim: tuple[float, float] | None = None,
) -> None:
    """Mean differences with their ±2s band (the study's decision rule), one row per comparison.

    Args:
        ax: Axes to draw on.
        labels: one label per row, top to bottom.
        d: (K,) mean differences; NaN rows are drawn as "missing".
        two_s: (K,) twice the pooled seed std; NaN = no band (one seed).
        xlabel: x-axis label.
        xlim: x range; a mean outside it is drawn at the edge as a triangle labelled with its value.
    """
    d, two_s = np.asarray(d, dtype=float), np.asarray(two_s, dtype=float)
    y = np.arange(len(labels))[::-1]
    for yi, di, si in zip(y, d, two_s):
        if np.isnan(di):
            ax.text(0, yi, "missing", ha="center", va="center", fontsize=8, color="#777777")
            continue
        clear = not np.isnan(si) and abs(di) > si
        colour = ("#2a9d8f" if di > 0 else "#e76f51") if clear else "#888888"
        if xlim is not None and not xlim[0] <= di <= xlim[1]:
            edge = xlim[0] if di < xlim[0] else xlim[1]
            ax.plot(edge, yi, "<" if di < xlim[0] else ">", color=colour, ms=8, clip_on=False)
            ax.annotate(
                f"{di:+.1f}",
                (edge, yi),
                xytext=(8 if di < xlim[0] else -8, 5),
                textcoords="offset points",
                ha="left" if di < xlim[0] else "right",
                fontsize=8,
            )
            continue
        if not np.isnan(si):
            ax.plot([di - si, di + si], [yi, yi], color=colour, lw=2, alpha=0.6)
        ax.plot(di, yi, "o", color=colour, ms=6)
    if xlim is not None:
        ax.set_xlim(*xlim)
    ax.axvline(0, color="#333333", lw=0.8)
    ax.set_yticks(y, labels)
    ax.set_xlabel(xlabel)


def similarity_heatmap(
    ax: plt.Axes,
    sim: np.ndarray,
    labels: Sequence[str] | None = None,
    *,
    title: str = "",
    vmin: float = -1.0,
    vmax: float = 1.0,
    annotate: bool = False,
) -> mpl.image.AxesImage:
    """Draw a (N, N) cosine-similarity matrix with a diverging colour map centred on 0.

    Args:
        ax: Axes to draw on.
        sim: (N, N) similarity matrix.
        labels: Optional N tick labels.
        title: Axes title.
        vmin: Lower end of the colour scale.
        vmax: Upper end of the colour scale.
        annotate: Write each value in its cell (only sensible for N <= 12).

    Returns:
        The image, for a colour bar.
    """
    im = ax.imshow(sim, cmap="RdBu_r", vmin=vmin, vmax=vmax)
    n = sim.shape[0]
    if labels is not None:
        ax.set_xticks(range(n), labels, rotation=90)
        ax.set_yticks(range(n), labels)
    ax.set_xlabel("prototype j")
    ax.set_ylabel("prototype i")
    ax.grid(False)
    ax.set_title(title)
    if annotate:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, f"{sim[i, j]:.2f}", ha="center", va="center", fontsize=7)
    return im


def paper_label(text: str) -> str:
    """Mark a number or series as quoted from the paper (not measured here)."""
    return f"{text} (paper)"
