"""Tables of chapter 8 (the analysis of the recorded study): rarest-group F1, norm and bias
correlations, the confusable groups (Table 6 analogue), the rarest and most frequent classes
(Table 7 analogue), class separability (Table 8 analogue) and post-hoc equalisation.

Each function reads the dict of :func:`load_results` (the records' JSONs as written, for the analysis
entries that :class:`cbp.experiments.verdicts.Record` leaves out) and returns a :class:`pandas.DataFrame`
ready to display; "mean ± std" cells come from :func:`fmt`. Nothing is recomputed from checkpoints.
"""

from __future__ import annotations

import math
import warnings
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cbp.analysis import frequency_parts
from cbp.experiments.study import arm_label
from cbp.io import read_json

REGIMES: tuple[str, ...] = ("scratch", "pretrained")


def load_results(folder: str | Path) -> dict[str, Any]:
    """Every record JSON of a results folder: ``{"runs": {name: record}, "by_arm": {regime: {arm: [training
    records in seed order]}}}``."""
    runs: dict[str, Any] = {p.stem: read_json(p) for p in sorted(Path(folder).glob("*.json"))}
    by_arm: dict[str, dict[str, list[Any]]] = defaultdict(lambda: defaultdict(list))
    for rec in sorted(train_records({"runs": runs}), key=lambda r: r["seed"]):
        by_arm[rec["regime"]][rec["arm"]].append(rec)
    return {"runs": runs, "by_arm": {k: dict(v) for k, v in by_arm.items()}}


def train_records(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The training runs of a study (not the data / pretraining / embedding steps)."""
    return [r for r in results["runs"].values() if r.get("kind") == "train"]


def ours_label(results: dict[str, Any]) -> str:
    """``"ours (synthetic, cnn_tiny, 500 iters, CPU, 3 seeds)"``: what every "ours" column is."""
    recs = train_records(results)
    iters = sorted({r["config"]["train"]["iters"] for r in recs})
    backbone = recs[0]["config"]["model"]["backbone"] if recs else "?"
    gpu = any((r.get("hardware") or {}).get("gpu") for r in recs)
    n_iters = iters[0] if len(iters) == 1 else iters
    seeds = len({r["seed"] for r in recs})
    return f"ours (synthetic, {backbone}, {n_iters} iters, {'GPU' if gpu else 'CPU'}, {seeds} seeds)"


def value(rec: dict[str, Any], metric: str) -> float:
    """One number of a run record: ``mIoU``, ``mAcc``, ``cs`` (class separability) or an analysis key
    (dotted for nested ones, e.g. ``norm_correlation.pearson_log``); NaN when the record lacks it."""
    if metric in ("mIoU", "mAcc", "aAcc"):
        return float(rec["metrics"][metric])
    v: Any = rec.get("analysis", {})
    for part in ["class_separability"] if metric == "cs" else metric.split("."):
        v = v.get(part) if isinstance(v, dict) else None
    return math.nan if v is None or v == {} else float(v)


def values(results: dict[str, Any], regime: str, arm: str, metric: str) -> np.ndarray:
    """(seeds,) values of one arm in one regime (empty if the arm has no finished run)."""
    recs = results["by_arm"].get(regime, {}).get(arm, [])
    return np.array([value(r, metric) for r in recs], dtype=np.float64)


def fmt(x: np.ndarray, digits: int = 2) -> str:
    """``"80.12 ± 0.31"`` over the finite values (std ddof 1; ``"80.12"`` for one, ``"–"`` for none)."""
    x = x[np.isfinite(x)]
    if x.size == 0:
        return "–"
    return f"{x.mean():.{digits}f}" + (f" ± {x.std(ddof=1):.{digits}f}" if x.size > 1 else "")


def per_seed(results: dict[str, Any], regime: str, arm: str, key: str) -> np.ndarray:
    """(seeds, ...) float array of one analysis or metrics entry of an arm (``None`` -> NaN).

    ``key`` is looked up in each record's ``analysis`` first, then in its ``metrics`` (e.g.
    ``"IoU"``: (seeds, N) per-class IoU); empty (size 0) when the arm has no run.
    """
    out = []
    for r in results["by_arm"].get(regime, {}).get(arm, []):
        v = r["analysis"][key] if key in r.get("analysis", {}) else r["metrics"].get(key)
        out.append([np.nan if x is None else x for x in v] if isinstance(v, list) else v)
    return np.array(out, dtype=float)


def class_mean(results: dict[str, Any], regime: str, arm: str, key: str, num_classes: int) -> np.ndarray:
    """(N,) mean over seeds of a per-class entry (``"IoU"``, ``"F1"``...); NaN when the arm has no run."""
    x = per_seed(results, regime, arm, key)
    if x.size == 0:
        return np.full(num_classes, np.nan)
    with warnings.catch_warnings():  # a class without any finite value stays NaN, silently
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(x, axis=0)


def _has(results: dict[str, Any], regime: str, arm: str) -> bool:
    return bool(results["by_arm"].get(regime, {}).get(arm))


def rarest_group_f1(results: dict[str, Any], arms: Sequence[tuple[str, str, str]]) -> pd.DataFrame:
    """F1 of the rarest frequency group, mean ± std over seeds, per regime and arm (``(arm, label, _)``)."""
    rows = []
    for regime in REGIMES:
        for arm, label, _ in arms:
            f1 = per_seed(results, regime, arm, "f1_groups")  # (seeds, groups)
            if f1.size:
                rows.append({"regime": regime, "classifier": label, "rarest group F1": fmt(f1[:, 0])})
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
                row[name] = fmt(values(results, regime, arm, f"norm_correlation.{key}"))
            row["Spearman"] = fmt(values(results, regime, arm, "norm_correlation.spearman_log"))
            if "bias_correlation" in results["by_arm"][regime][arm][0]["analysis"]:
                bias = values(results, regime, arm, "bias_correlation.pearson")
                row["bias vs log count (Pearson)"] = fmt(bias)
            rows.append(row)
    # an arm without a bias (CBP-initialised ones) has no bias correlation: "–", not NaN
    return pd.DataFrame(rows).set_index(["regime", "classifier"]).fillna("–")


def _class_ious(results: dict[str, Any], regime: str, num_classes: int) -> dict[str, np.ndarray]:
    arms = ("cbp_occl", "equal", "orthogonal", "linear")
    return {arm: class_mean(results, regime, arm, "IoU", num_classes) for arm in arms}


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
                return values(results, regime, arm, metric)

            rows.append(
                {
                    "regime": regime,
                    "classifier": arm_label(arm),
                    "CS (Eq. 8)": fmt(v("cs"), 1),
                    "cosine within groups": fmt(v("group_cosine.within")),
                    "cosine between groups": fmt(v("group_cosine.between")),
                    "mIoU": fmt(v("mIoU")),
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
