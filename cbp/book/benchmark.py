"""The synthetic benchmark page: amendment 6's calibration runs and the set's frequency profile beside ADE20K's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cbp.book.analysis_tables import load_results
from cbp.book.plotting import CLASSIFIER_COLORS, subplots
from cbp.data.classes import ade20k_pixel_counts
from cbp.experiments import verdicts
from cbp.experiments.study import CALIBRATION_CANDIDATES, REGIME6
from cbp.io import read_json
from cbp.paper import PAPER_ARMS, PAPER_RAREST_GROUP_F1


def calibration_folder(candidate: str, results: str | Path = "results") -> Path:
    """``results/ablations-v2-calib-<candidate>``."""
    return Path(results) / f"ablations-v2-calib-{candidate}"


def calibration_table(results: str | Path = "results") -> pd.DataFrame:
    """One row per calibration candidate, in the order they are judged: its knobs and, once recorded, its
    baseline's mIoU, rarest-group F1, frequent-minus-rare gap and the targets it meets.

    Returns:
        Columns candidate, knobs, recorded, mIoU, f1_rarest_group, rare_gap, mIoU_ok, f1_ok, gap_ok, meets,
        regime (the candidate amendment 6 fixed; False everywhere until it is fixed).
    """
    rows = []
    for name, knobs in CALIBRATION_CANDIDATES.items():
        df = verdicts.records(calibration_folder(name, results))
        row: dict[str, Any] = {"candidate": name, "knobs": " ".join(knobs), "recorded": len(df) > 0}
        if len(df):
            row.update(verdicts.calibration_row(df.iloc[0]))
        rows.append(row | {"regime": name == REGIME6})
    return pd.DataFrame(rows)


def pixel_shares(candidate: str, results: str | Path = "results") -> np.ndarray | None:
    """The training pixel share of every class of a candidate's tuning set, most frequent first (None if
    its data step is not recorded)."""
    path = calibration_folder(candidate, results) / "data.json"
    if not path.is_file():
        return None
    counts = np.asarray(read_json(path)["data"]["pixel_counts"], dtype=np.float64)
    return np.sort(counts / counts.sum())[::-1]


def plot_calibration(results: str | Path = "results", candidate: str | None = None) -> Any:
    """Left: the class frequency profile (share of training pixels, classes sorted) of a candidate's set
    against ADE20K's. Right: its baseline's F1 over the paper's 15 frequency groups, rarest first, with
    the paper's rarest-group values (Fig. 5, ADE20K, SegFormer-B0) marked.

    Args:
        candidate: default the fixed regime, else the last recorded candidate.

    Returns:
        The matplotlib figure, or None when no candidate is recorded.
    """
    table = calibration_table(results)
    recorded = table[table.recorded]
    if candidate is None:
        if recorded.empty:
            return None
        candidate = REGIME6 if REGIME6 in set(recorded.candidate) else recorded.candidate.iloc[-1]
    shares = pixel_shares(candidate, results)
    df = load_results(calibration_folder(candidate, results))
    if shares is None or df.empty:
        return None
    ade = np.sort(ade20k_pixel_counts() / ade20k_pixel_counts().sum())[::-1]
    fig, axes = subplots(1, 2, panel_height=3.6)
    left, right = axes[0]
    ranks = np.arange(1, len(ade) + 1)
    left.semilogy(ranks, ade * 100, color=CLASSIFIER_COLORS["paper"], label="ADE20K (training pixels)")
    left.semilogy(np.arange(1, len(shares) + 1), shares * 100, "--", color=CLASSIFIER_COLORS["cbp"],
                  label=f"synthetic, {candidate} (tuning set)")  # fmt: skip
    left.set(xlabel="class rank by training pixels", ylabel="share of pixels (%)", title="frequency profile")
    left.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22))  # below the axes: phone-safe
    groups = np.asarray(df.raw.iloc[0]["analysis"]["f1_groups"], dtype=np.float64)
    right.bar(np.arange(1, len(groups) + 1), groups, color=CLASSIFIER_COLORS["learnable"],
              label=f"baseline, synthetic {candidate} (SYNTHETIC, CPU)")  # fmt: skip
    right.scatter([1], [PAPER_RAREST_GROUP_F1["learnable"]], marker="D", s=40, zorder=3,
                  color=CLASSIFIER_COLORS["paper"], label="paper: learnable, rarest group")  # fmt: skip
    right.set(
        xlabel="frequency group (1 = rarest)", ylabel="F1 (%)", ylim=(0, 100), title="F1 by frequency group"
    )
    right.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22))
    return fig


def target_words() -> str:
    """The calibration targets in words, with the paper's baseline they come from."""
    t = verdicts.CALIBRATION_TARGETS
    return (
        f"mIoU {t['mIoU'][0]} ± {t['mIoU'][1]:g} (the paper's baseline: {PAPER_ARMS['linear'][0]}), rarest-group F1 "
        f"{t['f1_rarest_group'][0]:g} ± {t['f1_rarest_group'][1]:g} (the paper's learnable classifier: "
        f"{PAPER_RAREST_GROUP_F1['learnable']:.1f}), and the rare third's IoU at least {t['rare_gap']:g} points "
        "below the frequent third's"
    )
