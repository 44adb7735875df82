"""Tables of chapter 8 (the analysis of the recorded study): rarest-group F1, norm and bias
correlations, the confusable groups (Table 6 analogue), the rarest and most frequent classes
(Table 7 analogue), class separability (Table 8 analogue) and post-hoc equalisation.

Each function reads the dict of :func:`cbp.experiments.claims.load_results` and returns a
:class:`pandas.DataFrame` ready to display; "mean ± std" cells come from
:func:`cbp.experiments.claims.fmt`. Nothing is recomputed from checkpoints.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from cbp.analysis import frequency_parts
from cbp.experiments import claims, tables
from cbp.experiments.study import arm_label

REGIMES: tuple[str, ...] = ("scratch", "pretrained")


def _has(results: dict[str, Any], regime: str, arm: str) -> bool:
    return bool(results["by_arm"].get(regime, {}).get(arm))


def rarest_group_f1(results: dict[str, Any], arms: Sequence[tuple[str, str, str]]) -> pd.DataFrame:
    """F1 of the rarest frequency group, mean ± std over seeds, per regime and arm (``(arm, label, _)``)."""
    rows = []
    for regime in REGIMES:
        for arm, label, _ in arms:
            f1 = tables.per_seed(results, regime, arm, "f1_groups")  # (seeds, groups)
            if f1.size:
                rows.append({"regime": regime, "classifier": label, "rarest group F1": claims.fmt(f1[:, 0])})
    return pd.DataFrame(rows).set_index(["regime", "classifier"])


def norm_correlations(
    results: dict[str, Any], arms: Sequence[str] = ("linear", "linear_occl", "gradient", "penalty")
) -> pd.DataFrame:
    """Correlations of the classifier rows' norms (and biases) with the classes' pixel counts."""
    rows = []
    for regime in REGIMES:
        for arm in arms:
            if not _has(results, regime, arm):
                continue
            row = {"regime": regime, "classifier": arm_label(arm)}
            for key, name in [("pearson_raw", "Pearson, raw count"), ("pearson_log", "Pearson, log count")]:
                row[name] = claims.fmt(claims.values(results, regime, arm, f"norm_correlation.{key}"))
            row["Spearman"] = claims.fmt(claims.values(results, regime, arm, "norm_correlation.spearman_log"))
            if "bias_correlation" in results["by_arm"][regime][arm][0]["analysis"]:
                bias = claims.values(results, regime, arm, "bias_correlation.pearson")
                row["bias vs log count (Pearson)"] = claims.fmt(bias)
            rows.append(row)
    # an arm without a bias (CBP-initialised ones) has no bias correlation: "–", not NaN
    return pd.DataFrame(rows).set_index(["regime", "classifier"]).fillna("–")


def _class_ious(results: dict[str, Any], regime: str, num_classes: int) -> dict[str, np.ndarray]:
    arms = ("cbp_occl", "equal", "orthogonal", "linear")
    return {arm: tables.class_mean(results, regime, arm, "IoU", num_classes) for arm in arms}


def confusable_groups(
    results: dict[str, Any],
    regime: str,
    groups: Sequence[Sequence[int]],
    class_names: Sequence[str],
    counts: np.ndarray,
) -> pd.DataFrame:
    """IoU of every member of each confusable group under CBP + OCCL and its change under three variants."""
    ious = _class_ious(results, regime, len(class_names))
    ours = ious["cbp_occl"]
    rows = []
    for g, members in enumerate(groups):
        for role, c in zip(("frequent", "mid", "rare"), members):
            rows.append(
                {
                    "group": g,
                    "role": role,
                    "class": class_names[c],
                    "train pixels": int(counts[c]),
                    "CBP + OCCL": ours[c],
                    "Δ without orthogonalisation": ious["equal"][c] - ours[c],
                    "Δ without equalisation": ious["orthogonal"][c] - ours[c],
                    "Δ learnable": ious["linear"][c] - ours[c],
                }
            )
    return pd.DataFrame(rows)


def group_sums(group_table: pd.DataFrame) -> pd.DataFrame:
    """Table 6 analogue: per group, the sum of its members' IoU and of their changes."""
    columns = ["CBP + OCCL", "Δ without orthogonalisation", "Δ learnable"]
    return group_table.groupby("group")[columns].sum(min_count=1)


def rare_and_frequent(
    results: dict[str, Any],
    regime: str,
    class_names: Sequence[str],
    counts: np.ndarray,
    *,
    rare: int = 6,
    frequent: int = 2,
) -> pd.DataFrame:
    """Table 7 analogue: the ``rare`` rarest and ``frequent`` most frequent classes' IoU and changes."""
    ious = _class_ious(results, regime, len(class_names))
    ours = ious["cbp_occl"]
    rarest = frequency_parts(counts, 3)[0][:rare]  # rarest first
    most = np.argsort(counts, kind="stable")[-frequent:]
    rows = [
        {
            "class": class_names[c],
            "train pixels": int(counts[c]),
            "CBP + OCCL": ours[c],
            "Δ without equalisation": ious["orthogonal"][c] - ours[c],
            "Δ learnable": ious["linear"][c] - ours[c],
        }
        for c in [*rarest, *most]
    ]
    return pd.DataFrame(rows)


def separability(
    results: dict[str, Any],
    arms: Sequence[str] = (
        "linear",
        "linear_occl",
        "gradient",
        "penalty",
        "ema",
        "equal",
        "masked",
        "cbp_occl",
    ),
) -> pd.DataFrame:
    """Table 8 analogue: CS (Eq. 8), mean cosine within and between confusable groups, and mIoU."""
    rows = []
    for regime in REGIMES:
        for arm in arms:
            if not _has(results, regime, arm):
                continue

            def v(metric: str, regime: str = regime, arm: str = arm) -> np.ndarray:
                return claims.values(results, regime, arm, metric)

            rows.append(
                {
                    "regime": regime,
                    "classifier": arm_label(arm),
                    "CS (Eq. 8)": claims.fmt(v("cs"), 1),
                    "cosine within groups": claims.fmt(v("group_cosine.within")),
                    "cosine between groups": claims.fmt(v("group_cosine.between")),
                    "mIoU": claims.fmt(v("mIoU")),
                }
            )
    return pd.DataFrame(rows).set_index(["regime", "classifier"])


def posthoc_table(results: dict[str, Any], arms: Sequence[str] = ("linear", "linear_occl")) -> pd.DataFrame:
    """Per run: mIoU before and after dropping the bias and equalising the row norms, and the changes."""
    rows = []
    for regime in REGIMES:
        for arm in arms:
            for r in results["by_arm"].get(regime, {}).get(arm, []):
                p = r.get("posthoc_equalisation")
                if p:
                    rows.append(
                        {
                            "regime": regime,
                            "classifier": arm_label(arm),
                            "seed": r["seed"],
                            "mIoU raw": p["raw"]["mIoU"],
                            "mIoU equalised": p["equalised"]["mIoU"],
                            "Δ mIoU": p["delta"]["mIoU"],
                            "Δ mAcc": p["delta"]["mAcc"],
                            "Δ rare-third IoU": p["delta"]["rare_third_IoU"],
                        }
                    )
    return pd.DataFrame(rows)
