"""Chapter 7's figure of amendment 5's other tables: each claim's paired difference with its 95%
interval, coloured by the effect its verdict states.

The numbers and verdicts come from :func:`cbp.experiments.other_tables.verdict_rows`; this module
only draws them.
"""

from __future__ import annotations

import math
import re
import textwrap
from collections.abc import Sequence
from typing import Any

from matplotlib.lines import Line2D

from cbp.book.plotting import MIN_FONT, PAGE_WIDTH, subplots
from cbp.experiments import claims, other_tables

#: The colour of each effect a verdict states (colour-blind safe): the first arm significantly
#: higher, significantly lower, the same within the tie margin, or not resolved.
EFFECT_COLORS: dict[str, str] = {
    other_tables.HIGHER: "#009E73",
    other_tables.LOWER: "#D55E00",
    other_tables.SAME: "#0072B2",
    claims.NOT_RESOLVED: "#888888",
}


def effect(row: dict[str, Any]) -> str:
    """The effect a row of :func:`~cbp.experiments.other_tables.verdict_rows` states, whatever the
    claim's kind, from its :class:`~cbp.experiments.claims.Verdict`: a tie that holds is "same", any
    significant verdict is higher or lower by the sign of ``d`` (the first arm minus the second),
    anything else is "not resolved"."""
    if row["outcome"] is claims.Verdict.HOLDS and row["tie"]:
        return other_tables.SAME
    if row["outcome"] in (claims.Verdict.HOLDS, claims.Verdict.DOES_NOT_HOLD):
        return other_tables.HIGHER if row["d"] > 0 else other_tables.LOWER
    return claims.NOT_RESOLVED


def _arms_words(arms: str) -> str:
    """``arms`` of a verdict row for a label: a trailing metric name (e.g. "(rare_third_IoU)")
    repeats the claim's words and is dropped; "vs X" (the claim names the first arm) reads "against X"."""
    arms = re.sub(r" [(][A-Za-z0-9_]+[)]$", "", arms)
    return "against " + arms.removeprefix("vs ") if arms.startswith("vs ") else arms


def _draw_claim(ax: Any, yi: int, row: dict[str, Any], clip: float) -> None:
    """One claim's row: its verdict in words when it has no number; a triangle at the panel's edge with
    the value when its mean is beyond ±``clip``; else the mean as a dot and its 95% interval."""
    if math.isnan(row["d"]):
        ax.text(0, yi, row["verdict"], ha="center", va="center", fontsize=MIN_FONT, color="#777777")
        return
    colour = EFFECT_COLORS[effect(row)]
    if abs(row["d"]) > clip:
        edge = math.copysign(clip, row["d"])
        ax.plot(edge, yi, "<" if edge < 0 else ">", color=colour, ms=8, clip_on=False)
        ax.annotate(
            f"{row['d']:+.1f}",
            (edge, yi),
            xytext=(10 if edge < 0 else -10, 0),
            textcoords="offset points",
            ha="left" if edge < 0 else "right",
            va="center",
            fontsize=MIN_FONT,
            color=colour,
        )
        return
    lo, hi = row["ci95"]
    if not math.isnan(lo):
        ax.plot([lo, hi], [yi, yi], color=colour, lw=2.5, alpha=0.7)
    ax.plot(row["d"], yi, "o", color=colour, ms=6)


def _legend_handles() -> list[Line2D]:
    """The four effects a verdict states, in the figure's colours."""
    return [
        Line2D([], [], color=colour, marker="o", lw=2.5, label=words)
        for words, colour in (
            ("first arm significantly higher", EFFECT_COLORS[other_tables.HIGHER]),
            ("first arm significantly lower", EFFECT_COLORS[other_tables.LOWER]),
            ("same (interval within ±0.5, shaded)", EFFECT_COLORS[other_tables.SAME]),
            ("not resolved", EFFECT_COLORS[claims.NOT_RESOLVED]),
        )
    ]


def plot_paired_intervals(
    panels: Sequence[tuple[str, list[dict[str, Any]]]], *, title: str = "", clip: float = 12.0
) -> Any:
    """One panel per table: each claim's mean paired difference (first arm minus second, in points of
    the claim's metric: mIoU, or F1 / IoU for Table 5's mechanism claims) as a dot with its 95%
    interval, coloured by the effect its verdict states (:func:`effect`), and the tie margin (±0.5)
    shaded.

    Args:
        panels: ``(panel title, rows of verdict_rows)`` per table, top to bottom.
        title: the figure's title.
        clip: a panel with a mean beyond ±``clip`` is drawn on [−clip, clip], that mean as a triangle
            at the edge labelled with its value (one collapsed run would otherwise squash the rest).
    """
    labels = [
        [textwrap.fill(f"{r['claim']} ({_arms_words(r['arms'])})", 40) for r in rows] for _, rows in panels
    ]
    lines = [max(sum(label.count("\n") + 1 for label in panel), 1) for panel in labels]  # text lines a panel
    # inches: 0.26 a line of labels, 0.8 a panel's title and axis, 0.8 the legend
    height = 0.26 * sum(lines) + 0.8 * len(panels) + 0.8
    fig, axes = subplots(
        len(panels),
        1,
        width=PAGE_WIDTH,
        panel_height=height / len(panels),
        gridspec_kw={"height_ratios": [n + 3 for n in lines]},
    )
    for ax, (name, rows), panel_labels in zip(axes[:, 0], panels, labels):
        y = list(range(len(rows)))[::-1]
        ax.axvspan(-claims.TIE_MARGIN, claims.TIE_MARGIN, color="#0072B2", alpha=0.12, lw=0)
        ax.axvline(0, color="#333333", lw=0.8)
        clipped = any(abs(r["d"]) > clip for r in rows)  # NaN compares False
        for yi, row in zip(y, rows):
            _draw_claim(ax, yi, row, clip)
        if clipped:
            ax.set_xlim(-clip, clip)
        ax.set_yticks(y, panel_labels)
        ax.set_ylim(-0.7, len(rows) - 0.3)
        ax.grid(axis="y", visible=False)
        ax.set_title(name, loc="left")
    axes[-1, 0].set_xlabel("paired difference, first arm minus second (points); line: 95% interval")
    fig.legend(handles=_legend_handles(), loc="outside lower center", ncol=2, frameon=False)
    if title:
        fig.suptitle(title)
    return fig
