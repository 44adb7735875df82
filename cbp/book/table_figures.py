"""Chapter 7's figure of amendment 5's other tables: each claim's paired difference with its 95%
interval, coloured by its verdict.

The numbers and verdicts come from :func:`cbp.experiments.other_tables.verdict_rows`; this module
only draws them.
"""

from __future__ import annotations

import math
import re
import textwrap
from collections.abc import Sequence
from typing import Any

from cbp.book.plotting import MIN_FONT, PAGE_WIDTH, subplots
from cbp.experiments import claims, other_tables

#: A verdict's colour (colour-blind safe): the paper's direction / higher, against it / lower,
#: the same within the tie margin, and not resolved.
VERDICT_COLORS: dict[str, str] = {
    claims.HOLDS: "#009E73",
    other_tables.HIGHER: "#009E73",
    claims.FAILS: "#D55E00",
    other_tables.LOWER: "#D55E00",
    other_tables.SAME: "#0072B2",
    claims.NOT_RESOLVED: "#888888",
}


def verdict_color(verdict: str) -> str:
    """The colour of a verdict of :func:`~cbp.experiments.other_tables.verdict_rows` (a "does not
    hold (...)" reads as "does not hold")."""
    for key, colour in VERDICT_COLORS.items():
        if verdict == key or verdict.startswith(key + " "):
            return colour
    return VERDICT_COLORS[claims.NOT_RESOLVED]


def plot_paired_intervals(panels: Sequence[tuple[str, list[dict[str, Any]]]], *, title: str = "") -> Any:
    """One panel per table: each claim's mean paired difference (first arm minus second, points) as a
    dot with its 95% interval, coloured by its verdict, and the tie margin (±0.5) shaded.

    Args:
        panels: ``(panel title, rows of verdict_rows)`` per table, top to bottom.
        title: the figure's title.
    """
    # the claim and its arms; a trailing metric name (e.g. "(rare_third_IoU)") repeats the claim's words
    labels = [
        [textwrap.fill(f"{r['claim']} ({re.sub(r' [(][A-Za-z0-9_]+[)]$', '', r['arms'])})", 40) for r in rows]
        for _, rows in panels
    ]
    lines = [max(sum(label.count("\n") + 1 for label in panel), 1) for panel in labels]  # text lines a panel
    height = (
        0.26 * sum(lines) + 0.8 * len(panels) + 0.8
    )  # inches: a line of labels, a title and axis per panel
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
        for yi, row in zip(y, rows):
            if math.isnan(row["d"]):
                ax.text(0, yi, row["verdict"], ha="center", va="center", fontsize=MIN_FONT, color="#777777")
                continue
            colour = verdict_color(row["verdict"])
            lo, hi = row["ci95"]
            if not math.isnan(lo):
                ax.plot([lo, hi], [yi, yi], color=colour, lw=2.5, alpha=0.7)
            ax.plot(row["d"], yi, "o", color=colour, ms=6)
        ax.set_yticks(y, panel_labels)
        ax.set_ylim(-0.7, len(rows) - 0.3)
        ax.grid(axis="y", visible=False)
        ax.set_title(name, loc="left")
    axes[-1, 0].set_xlabel("paired difference, first arm minus second (points); line: 95% interval")
    handles = [
        axes[0, 0].plot([], [], "o-", color=c, label=v)[0]
        for v, c in (
            ("holds / higher", VERDICT_COLORS[claims.HOLDS]),
            ("does not hold / lower", VERDICT_COLORS[claims.FAILS]),
            ("same (within ±0.5, shaded)", VERDICT_COLORS[other_tables.SAME]),
            ("not resolved", VERDICT_COLORS[claims.NOT_RESOLVED]),
        )
    ]
    fig.legend(handles=handles, loc="outside lower center", ncol=2, frameon=False)
    if title:
        fig.suptitle(title)
    return fig
