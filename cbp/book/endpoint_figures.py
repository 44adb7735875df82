"""Chapter 7's figures of amendment 5's end points: learning curves with seed bands and plateaus.

The numbers come from :mod:`cbp.experiments.endpoints`; this module only draws them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cbp.book.plotting import CLASSIFIER_COLORS, subplots
from cbp.experiments import endpoints
from cbp.experiments.study import TABLE3_ARMS
from cbp.experiments.tables import short_label

#: Each end-point arm's colour key in :data:`cbp.book.plotting.CLASSIFIER_COLORS` and line style:
#: the colour is the classifier family, a dashed line means trained with OCCL.
ARM_STYLE: dict[str, tuple[str, str]] = {
    "linear": ("learnable", "-"),
    "linear_occl": ("learnable", "--"),
    "cbp": ("cbp", "-"),
    "cbp_occl": ("cbp", "--"),
    "gradient": ("gradient", "--"),
    "ema": ("ema", "--"),
    "penalty": ("penalty", "--"),
}

#: The two panels: Table 3's arms, and Table 4's update strategies beside the frozen CBP + OCCL.
PANELS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Table 3: the two modules", TABLE3_ARMS),
    ("Table 4: how the prototypes are updated", ("cbp_occl", "gradient", "ema", "penalty")),
)


def _draw_arm(ax: Any, results: dict[str, Any], regime: str, arm: str) -> bool:
    """One arm's seed-mean curve, its ± one seed std band and its plateau's ring; False if it has no run."""
    iters, values, seeds = endpoints.curves(results, regime, arm)
    if not seeds:
        return False
    colour, style = ARM_STYLE.get(arm, ("paper", "-"))
    c = CLASSIFIER_COLORS[colour]
    mean = values.mean(axis=0)
    label = f"{short_label(arm)} ({len(seeds)} seed{'s' if len(seeds) > 1 else ''})"
    ax.plot(iters, mean, style, color=c, label=label, linewidth=1.8)
    if len(seeds) > 1:
        std = values.std(axis=0, ddof=1)
        ax.fill_between(iters, mean - std, mean + std, color=c, alpha=0.2, linewidth=0)
        i = endpoints.plateau_index(values)
        if i is not None and i < len(iters) - 1:  # not reached: no ring
            ax.plot(iters[i], mean[i], "o", color=c, markersize=7, markeredgecolor="black")
    return True


def plot_learning_curves(
    results: dict[str, Any],
    *,
    title: str,
    regime: str = "pretrained",
    panels: Sequence[tuple[str, Sequence[str]]] = PANELS,
    ylim: tuple[float, float] | None = None,
) -> Any:
    """Validation mIoU against iterations, one line per arm (its seed mean) with a band of ± one seed
    std, and a ringed dot at the arm's plateau (:func:`cbp.experiments.endpoints.plateau`; none when
    the plateau is not reached before the last evaluation); one panel per table, stacked. Arms
    without a recorded run are named in the panel instead of drawn.

    Args:
        results: the end points' results (``claims.load_results``).
        title: the figure's title.
        regime: the regime whose runs are drawn.
        panels: (panel title, arms) pairs.
        ylim: the mIoU axis range (default: matplotlib's).
    """
    fig, axes = subplots(len(panels), 1, panel_height=3.4)
    for ax, (panel_title, arms) in zip(axes[:, 0], panels):
        missing = []
        for arm in arms:
            if not _draw_arm(ax, results, regime, arm):
                missing.append(short_label(arm))
        ax.set_title(panel_title)
        ax.set_xlabel("iteration")
        ax.set_ylabel("val mIoU (%)")
        if ylim is not None:
            ax.set_ylim(*ylim)
        if missing:
            ax.text(
                0.98,
                0.04,
                "not run yet: " + ", ".join(missing),
                transform=ax.transAxes,
                ha="right",
                va="bottom",
                fontsize=10,
                color="#555555",
            )
        if not ax.lines:  # nothing recorded for this panel yet
            ax.set_xticks([])
            ax.set_yticks([])
        elif ax.get_legend_handles_labels()[0]:
            ax.legend(loc="lower right" if not missing else "center right", fontsize=10)
    fig.suptitle(title)
    return fig
