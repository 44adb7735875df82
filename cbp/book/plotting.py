"""Figure style shared by the book's notebooks (matplotlib + seaborn; no library logic here).

Every notebook starts with ``use_style()`` so that figures look the same across pages, draws with
``subplots(...)`` (sized for the page: at most three panels a row, no wider than the text column,
so that the page shows a figure at about its own size and 10-12 pt stays 10-12 pt) and ends a
figure with ``finish(fig)`` (tight layout, optionally saved under a folder, then shown). Colours
for the classifier families compared throughout the book come from ``CLASSIFIER_COLORS`` so a
reader sees "learnable" in the same colour on every page.

seaborn draws what it is the right tool for: the cosine-matrix heatmaps (:func:`similarity_heatmap`)
and the grouped bars of the frequency groups (:func:`cbp.book.figures.plot_frequency_groups`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

#: Width in inches of the book's text column at the figures' resolution ``DPI``; a figure this
#: wide is shown at about 100 % on a 1280 px screen, so its fonts keep their point size.
PAGE_WIDTH: float = 7.0
#: Width in inches of a one-panel figure: narrower than the column, so that a phone (about 350 px
#: of text width) shows it at about three quarters of its size and 10 pt stays legible.
SINGLE_WIDTH: float = 4.8
#: Resolution of a figure's displayed size, in pixels per inch; a notebook's PNG holds twice as many
#: pixels (IPython's "retina" format, set by :func:`use_style`), shown at this size.
DPI: int = 100
#: Smallest font size in points of any text in a figure (tick labels, legends, annotations).
MIN_FONT: float = 10.0
#: Most panels in one row of a figure (a phone shows a figure about 350 px wide).
MAX_COLUMNS: int = 3

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
    # Table 3's two other arms, as light shades of their classifier's family (bar charts, where a
    # line style cannot say "with / without OCCL")
    "learnable_occl": "#F4A582",  # light vermillion: the learnable baseline trained with OCCL
    "cbp_no_occl": "#92C5DE",  # light blue: frozen CBP trained without OCCL
}

#: A qualitative palette for class colours in toy problems (Okabe-Ito order).
CLASS_COLORS: list[str] = [
    "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000",
]  # fmt: skip


def use_style(*, font_size: float = 11.0) -> None:
    """Set the book's matplotlib / seaborn style and pandas' display of tables (call once at the top of a
    notebook): tables show every character of their cells.

    Args:
        font_size: Base font size in points (labels); ticks, legends and annotations use
            ``font_size - 1`` and never less than ``MIN_FONT``, titles ``font_size + 1``.
    """
    small = max(MIN_FONT, font_size - 1)
    sns.set_theme(
        context="notebook",
        style="whitegrid",
        palette=CLASS_COLORS,
        rc={
            "figure.dpi": DPI,
            "savefig.dpi": DPI,
            "figure.figsize": (SINGLE_WIDTH, 3.2),
            "font.size": font_size,
            "axes.titlesize": font_size + 1,
            "axes.labelsize": font_size,
            "xtick.labelsize": small,
            "ytick.labelsize": small,
            "legend.fontsize": small,
            "legend.title_fontsize": small,
            "figure.titlesize": font_size + 1,
            "grid.alpha": 0.4,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "legend.frameon": False,
            "image.cmap": "viridis",
            # Plain-text SVG/PNG output: never fetch fonts from anywhere.
            "svg.fonttype": "none",
        },
    )
    pd.set_option("display.max_colwidth", None)  # a table's text is never cut to "..." on a page
    _retina()


def _retina() -> None:
    """In a notebook, show figures as PNGs of twice the pixels at their own size (IPython's "retina"
    format: the output's width / height metadata keep the displayed size, which the book's pages use),
    so that they stay sharp on high-density screens; nothing outside IPython."""
    try:
        from IPython import get_ipython
        from matplotlib_inline.backend_inline import set_matplotlib_formats
    except ImportError:
        return
    if get_ipython() is not None:
        set_matplotlib_formats("retina")


def subplots(
    nrows: int = 1, ncols: int = 1, *, panel_height: float = 3.2, width: float | None = None, **kwargs
) -> tuple[plt.Figure, np.ndarray]:
    """A figure sized for the page: at most ``MAX_COLUMNS`` panels a row, never wider than the text.

    Args:
        nrows, ncols: Panels down and across.
        panel_height: Height of one row of panels in inches.
        width: Figure width in inches (default: ``SINGLE_WIDTH`` for one panel, ``PAGE_WIDTH`` for more),
            capped at ``PAGE_WIDTH``.
        **kwargs: passed to matplotlib's ``pyplot.subplots`` (``sharex``, ``subplot_kw`` ...).

    Returns:
        The figure and a (nrows, ncols) array of axes.

    Raises:
        ValueError: for more than ``MAX_COLUMNS`` panels a row (split the figure instead).
    """
    if ncols > MAX_COLUMNS:
        raise ValueError(
            f"{ncols} panels a row are unreadable on a phone (at most {MAX_COLUMNS}): "
            "split the figure into several, or use more rows"
        )
    width = min(PAGE_WIDTH, width or (SINGLE_WIDTH if ncols == 1 else PAGE_WIDTH))
    kwargs.setdefault("squeeze", False)
    kwargs.setdefault("layout", "constrained")  # room for titles, labels and shared colour bars
    return plt.subplots(nrows, ncols, figsize=(width, panel_height * nrows), **kwargs)


def one_panel(*, panel_height: float = 3.2, width: float | None = None) -> tuple[plt.Figure, plt.Axes]:
    """A one-panel figure of :func:`subplots` and its axes."""
    fig, axes = subplots(panel_height=panel_height, width=width)
    return fig, axes[0, 0]


def legend_below(
    fig: plt.Figure, *, ncols: int = 3, extra: Sequence[mpl.artist.Artist] = (), **kwargs
) -> mpl.legend.Legend | None:
    """One legend for the whole figure, below its panels, so that it never hides a data point.

    The entries of every axes are collected in order, each label once. The figure needs a constrained
    layout (as :func:`subplots` makes), which keeps room for the legend ("outside lower center").

    Args:
        fig: the figure.
        ncols: most entries a row (fewer when there are fewer entries).
        extra: more labelled handles, after those of the axes (e.g. a proxy for an arrow).
        **kwargs: passed to ``fig.legend`` (``title``, ``markerscale`` ...).

    Returns:
        The legend, or None when no axes has a labelled artist.
    """
    entries: dict[str, mpl.artist.Artist] = {}
    for ax in fig.axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    for handle in extra:
        entries.setdefault(handle.get_label(), handle)
    if not entries:
        return None
    handles, labels = list(entries.values()), list(entries)
    return fig.legend(handles, labels, loc="outside lower center", ncols=min(ncols, len(entries)), **kwargs)


def finish(fig: plt.Figure, name: str | None = None, *, out_dir: str | Path | None = None) -> None:
    """Lay out a figure, optionally save it as ``out_dir/name.png``, then show it.

    Args:
        fig: The figure to finish.
        name: File stem used when ``out_dir`` is given.
        out_dir: Folder for a PNG copy (created if missing); None saves nothing.
    """
    if not fig.get_layout_engine():
        fig.tight_layout()
    if out_dir is not None and name is not None:
        path = Path(out_dir)
        path.mkdir(parents=True, exist_ok=True)
        fig.savefig(path / f"{name}.png", bbox_inches="tight")
    plt.show()


def similarity_heatmap(
    ax: plt.Axes,
    sim: np.ndarray,
    labels: Sequence[str] | None = None,
    *,
    title: str = "",
    vmin: float = -1.0,
    vmax: float = 1.0,
    annotate: bool | None = None,
    colorbar: bool = False,
    cbar_label: str = "cosine similarity",
) -> mpl.collections.QuadMesh:
    """Draw a (N, N) cosine-similarity matrix (seaborn heatmap, diverging map centred on 0).

    Args:
        ax: Axes to draw on.
        sim: (N, N) similarity matrix.
        labels: Optional N tick labels (default: class indices, every tick when N <= 30).
        title: Axes title.
        vmin, vmax: Lower and upper end of the colour scale.
        annotate: Write each value in its cell with one decimal at ``MIN_FONT``; default: only
            when N <= 8, where the numbers fit their cells.
        colorbar, cbar_label: Draw a colour bar beside the axes, with this label.

    Returns:
        The colour mesh, for a shared colour bar (``fig.colorbar(mesh, ax=axes)``).
    """
    sim = np.asarray(sim, dtype=float)
    n = sim.shape[0]
    annotate = n <= 8 if annotate is None else annotate
    ticks = list(labels) if labels is not None else (list(range(n)) if n <= 30 else "auto")
    sns.heatmap(
        sim,
        ax=ax,
        cmap="RdBu_r",
        vmin=vmin,
        vmax=vmax,
        center=0.0 if vmin < 0 < vmax else None,
        square=True,
        annot=np.round(sim, 1) + 0.0 if annotate else False,  # + 0.0: "-0.0" reads "0.0"
        fmt=".1f",
        annot_kws={"fontsize": MIN_FONT},
        xticklabels=ticks,
        yticklabels=ticks,
        cbar=colorbar,
        cbar_kws={"label": cbar_label, "shrink": 0.8},
    )
    ax.set(xlabel="prototype j", ylabel="prototype i", title=title)
    ax.tick_params(axis="y", labelrotation=0)
    return ax.collections[0]


def from_paper(text: str) -> str:
    """Mark a number or series as quoted from the paper (not measured here)."""
    return f"{text} (paper)"


def table(df: pd.DataFrame, precision: int | None = None, na_rep: str | None = None, **columns: str) -> Any:
    """Every table of the book's pages: ``df`` as a pandas Styler with no index and every cell and column
    name HTML-escaped (a claim's "<" or a "|" shows as typed), floats at ``precision`` digits (pandas'
    default if None), missing cells as ``na_rep``, and a format string per named column (``hours="{:.1f}"``)."""
    style = df.style.format(columns or None, precision=precision, na_rep=na_rep, escape="html")
    return style.format_index(escape="html", axis=1).hide(axis="index")
