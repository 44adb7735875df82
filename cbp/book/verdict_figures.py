"""The current study's forest plot: every claim's paired difference with the interval its verdict uses."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from cbp.book.plotting import PAGE_WIDTH, one_panel
from cbp.experiments.study import arm_label
from cbp.experiments.verdicts import TIE_MARGIN, Verdict

#: One colour per verdict, from the Okabe-Ito palette; the colour never contradicts the drawn interval.
VERDICT_COLORS: dict[Verdict, str] = {
    Verdict.HOLDS: "#009E73",
    Verdict.DOES_NOT_HOLD: "#D55E00",
    Verdict.NOT_RESOLVED: "#777777",
    Verdict.NO_RECORD: "#BBBBBB",
}
#: A Holm family's name on the forest plot (a family not named here shows its own name, e.g. "mechanism").
FAMILY_TITLES = {
    "T3": "Table 3",
    "T4": "Table 4",
    "T5": "Table 5",
    "T3 at CBP + OCCL's lr": "lr-swap control",
}


def plot_forest(out: pd.DataFrame, title: str) -> object:
    """Every claim as one row: its mean paired difference (dot), the interval its verdict uses, coloured
    by the verdict, and small ticks at ± the smallest effect the design resolves (planned, item 6).

    A difference claim draws its Holm interval (``lo_holm``, ``hi_holm`` of
    :func:`cbp.experiments.verdicts.holm_intervals`), which excludes 0 exactly when the claim is
    significant; a tie claim draws its unadjusted 95 % interval (thick; the tie holds when it lies inside
    the shaded ± band) over its Holm interval (thin).

    Args:
        out: ``holm_intervals(compare(...))``, one row per claim, in the order to draw (top first).
        title: the figure's title (say SYNTHETIC, the model, the length, the seeds).

    Returns:
        The matplotlib figure.
    """
    n = len(out)
    fig, ax = one_panel(width=PAGE_WIDTH, panel_height=0.42 * n + 1.6)  # the labels need the width
    y = np.arange(n)[::-1]  # first claim on top
    ax.axvspan(-TIE_MARGIN, TIE_MARGIN, color="#DDDDDD", zorder=0)
    ax.axvline(0.0, color="black", lw=0.8, zorder=1)
    for yi, row in zip(y, out.itertuples(index=False)):
        colour = VERDICT_COLORS[row.verdict]
        if math.isfinite(row.lo_holm):
            ax.hlines(yi, row.lo_holm, row.hi_holm, color=colour, lw=1.2 if row.kind == "tie" else 2.5)
        if row.kind == "tie" and math.isfinite(row.lo):
            ax.hlines(yi, row.lo, row.hi, color=colour, lw=4.0)
        if math.isfinite(row.mean):
            ax.plot(row.mean, yi, "o", color=colour, ms=6, zorder=3)
        if math.isfinite(row.planned_effect):
            ax.plot([-row.planned_effect, row.planned_effect], [yi, yi], "|", color="black", ms=9)
    labels = [f"{FAMILY_TITLES.get(f, f)}: {t}" for f, t in zip(out.family, out.text)]
    ax.set_yticks(y, labels)
    ax.set(xlabel="paired difference, first arm minus second (points)", title=title)
    handles = [Line2D([], [], color=c, lw=2.5, label=v.value) for v, c in VERDICT_COLORS.items()]
    tick = Line2D([], [], color="black", ls="", marker="|", ms=9, label="± smallest resolvable effect")
    handles.append(tick)
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2, frameon=False)
    return fig


def plot_curves(df: pd.DataFrame, arms: tuple[str, ...], title: str) -> object:
    """Learning curves of the runs that record them (seeds 0-2): each arm's seed-mean validation mIoU
    against iteration, a band of ± one seed std.

    Args:
        df: :func:`cbp.experiments.verdicts.records` (its ``curve`` column: ``[{"iter", "mIoU"}, ...]``).
        arms: the arms to draw, in legend order.
        title: the figure's title.
    """
    fig, ax = one_panel(panel_height=3.4)
    for arm in arms:
        curves = [pd.DataFrame(c).set_index("iter")["mIoU"] for c in df[df.arm == arm].curve if c]
        if not curves:
            continue
        table = pd.concat(curves, axis=1)  # (evaluations, seeds)
        mean, std = table.mean(axis=1), table.std(axis=1, ddof=1)
        n = table.shape[1]
        label = f"{arm_label(arm, short=True)} ({n} seed{'s' * (n != 1)})"
        ax.plot(mean.index, mean, label=label)
        ax.fill_between(mean.index, mean - std, mean + std, alpha=0.2)
    ax.set(xlabel="iteration", ylabel="val mIoU (%)", title=title)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, frameon=False)
    return fig
