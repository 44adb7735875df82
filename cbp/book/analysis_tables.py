"""Tables of chapter 8 (the analysis of the recorded study): rarest-group F1, norm and bias
correlations, the confusable groups (Table 6 analogue), the rarest and most frequent classes
(Table 7 analogue), class separability (Table 8 analogue) and post-hoc equalisation.

Each function reads the frame of :func:`load_results` (:func:`cbp.experiments.verdicts.records`, the one
loader of records, with each record's JSON beside it for the analysis entries that
:class:`cbp.experiments.verdicts.Record` leaves out) and returns a :class:`pandas.DataFrame` ready to
display; "mean ± std" cells come from :func:`fmt`. Nothing is recomputed from checkpoints.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cbp.analysis import frequency_parts
from cbp.experiments.study import arm_label
from cbp.experiments.verdicts import Record, frame, train_jsons

REGIMES: tuple[str, ...] = ("scratch", "pretrained")
#: The Δ columns of Tables 6 and 7: column -> the arm whose per-class IoU is compared with CBP + OCCL's.
DELTAS: dict[str, str] = {
    "Δ without orthogonalisation": "equal",
    "Δ without equalisation": "orthogonal",
    "Δ learnable": "linear",
}
#: The arms of the Table 8 analogue (:func:`separability`), in its row order.
TABLE8_ARMS = ("linear", "linear_occl", "gradient", "penalty", "ema", "equal", "masked", "cbp_occl")


def load_results(folder: str | Path) -> pd.DataFrame:
    """The training records of a results folder: :func:`cbp.experiments.verdicts.records` (one row per run,
    in file order) with a ``raw`` column, each record's JSON as written (a dict)."""
    raw = train_jsons(folder)  # each file read once
    return frame([Record.from_json(r) for r in raw]).assign(raw=raw)


def arm_records(results: pd.DataFrame, regime: str, arm: str) -> list[dict[str, Any]]:
    """The JSON records of one arm in one regime, in seed order (empty when the arm has no run)."""
    part = results[(results.regime == regime) & (results.arm == arm)]
    return part.sort_values("seed", kind="stable").raw.tolist()


def ours_label(results: pd.DataFrame) -> str:
    """``"ours (synthetic, cnn_tiny, 500 iters, CPU, 3 seeds)"``: what every "ours" column is."""
    iters = sorted(set(results.iters.tolist()))
    backbone = results.raw.iloc[0]["config"]["model"]["backbone"] if len(results) else "?"
    device = "GPU" if any((r.get("hardware") or {}).get("gpu") for r in results.raw) else "CPU"
    n_iters = iters[0] if len(iters) == 1 else iters
    return f"ours (synthetic, {backbone}, {n_iters} iters, {device}, {results.seed.nunique()} seeds)"


def value(rec: dict[str, Any], metric: str) -> float:
    """One number of a run record: ``mIoU``, ``mAcc``, ``cs`` (class separability) or an analysis key
    (dotted for nested ones, e.g. ``norm_correlation.pearson_log``); NaN when the record lacks it."""
    if metric in ("mIoU", "mAcc", "aAcc"):
        return float(rec["metrics"][metric])
    v: Any = rec.get("analysis", {})
    for part in ["class_separability"] if metric == "cs" else metric.split("."):
        v = v.get(part) if isinstance(v, dict) else None
    return math.nan if v is None or v == {} else float(v)


def values(results: pd.DataFrame, regime: str, arm: str, metric: str) -> np.ndarray:
    """(seeds,) values of one arm in one regime (empty if the arm has no finished run)."""
    return np.array([value(r, metric) for r in arm_records(results, regime, arm)], dtype=np.float64)


def fmt(x: np.ndarray, digits: int = 2) -> str:
    """``"80.12 ± 0.31"`` over the finite values (std ddof 1; ``"80.12"`` for one, ``"–"`` for none)."""
    x = x[np.isfinite(x)]
    if x.size == 0:
        return "–"
    return f"{x.mean():.{digits}f}" + (f" ± {x.std(ddof=1):.{digits}f}" if x.size > 1 else "")


def per_seed(results: pd.DataFrame, regime: str, arm: str, key: str) -> np.ndarray:
    """(seeds, ...) float array of one analysis or metrics entry of an arm (``None`` -> NaN).

    ``key`` is looked up in each record's ``analysis`` first, then in its ``metrics`` (e.g.
    ``"IoU"``: (seeds, N) per-class IoU); empty (size 0) when the arm has no run.
    """
    out = []
    for r in arm_records(results, regime, arm):
        v = r["analysis"][key] if key in r.get("analysis", {}) else r["metrics"].get(key)
        out.append([np.nan if x is None else x for x in v] if isinstance(v, list) else v)
    return np.array(out, dtype=float)


def class_mean(results: pd.DataFrame, regime: str, arm: str, key: str, num_classes: int) -> np.ndarray:
    """(N,) mean over seeds of a per-class entry (``"IoU"``, ``"F1"``...); NaN when the arm has no run."""
    x = per_seed(results, regime, arm, key)
    if x.size == 0:
        return np.full(num_classes, np.nan)
    with warnings.catch_warnings():  # a class without any finite value stays NaN, silently
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(x, axis=0)


def frequency_group_table(results: pd.DataFrame, arms: Sequence[tuple[str, str, str]]) -> pd.DataFrame:
    """Long table of the F1 of every frequency group: one row per (regime, arm, seed, group).

    Args:
        results: :func:`load_results` of the study.
        arms: ``(arm, label, colour key)``; the label names the arm in the ``classifier`` column.

    Returns:
        Columns ``regime``, ``classifier``, ``seed`` (0, 1, ... in record order), ``group``
        (0 = rarest classes) and ``F1`` (%); arms without a run are absent.
    """
    rows = []
    for regime, (arm, label, _) in itertools.product(REGIMES, arms):
        f1 = per_seed(results, regime, arm, "f1_groups")  # (seeds, groups)
        for s, groups in enumerate(np.atleast_2d(f1) if f1.size else []):
            rows += [(regime, label, s, g, float(v)) for g, v in enumerate(groups)]
    return pd.DataFrame(rows, columns=["regime", "classifier", "seed", "group", "F1"])


def rarest_group_f1(results: pd.DataFrame, arms: Sequence[tuple[str, str, str]]) -> pd.DataFrame:
    """F1 of the rarest frequency group, mean ± std over seeds, per regime and arm (``(arm, label, _)``)."""
    table = frequency_group_table(results, arms)
    rarest = table[table.group == 0].groupby(["regime", "classifier"], sort=False)["F1"]
    return rarest.agg(lambda f1: fmt(f1.to_numpy())).to_frame("rarest group F1")


def _per_arm(results: pd.DataFrame, arms: Sequence[str], columns: dict[str, tuple[str, int]]) -> pd.DataFrame:
    """One row per regime and arm with a run: each column ``name -> (metric, digits)`` is :func:`fmt` of
    :func:`values` (``"–"`` where no record has the metric)."""
    rows = []
    for regime, arm in itertools.product(REGIMES, arms):
        if arm_records(results, regime, arm):
            cells = {name: fmt(values(results, regime, arm, m), d) for name, (m, d) in columns.items()}
            rows.append({"regime": regime, "classifier": arm_label(arm), **cells})
    return pd.DataFrame(rows).set_index(["regime", "classifier"])


def norm_correlations(
    results: pd.DataFrame, arms: Sequence[str] = ("linear", "linear_occl", "gradient", "penalty")
) -> pd.DataFrame:
    """Correlations of the classifier rows' norms (and biases) with the classes' pixel counts; an arm without
    a bias (CBP-initialised ones) has no bias correlation: "–"."""
    columns = {
        "Pearson, raw count": ("norm_correlation.pearson_raw", 2),
        "Pearson, log count": ("norm_correlation.pearson_log", 2),
        "Spearman": ("norm_correlation.spearman_log", 2),
        "bias vs log count (Pearson)": ("bias_correlation.pearson", 2),
    }
    return _per_arm(results, arms, columns)


def separability(results: pd.DataFrame, arms: Sequence[str] = TABLE8_ARMS) -> pd.DataFrame:
    """Table 8 analogue: CS (Eq. 8), mean cosine within and between confusable groups, and mIoU."""
    columns = {
        "CS (Eq. 8)": ("cs", 1),
        "cosine within groups": ("group_cosine.within", 2),
        "cosine between groups": ("group_cosine.between", 2),
        "mIoU": ("mIoU", 2),
    }
    return _per_arm(results, arms, columns)


def _class_rows(
    results: pd.DataFrame,
    regime: str,
    classes: Sequence[int],
    class_names: Sequence[str],
    counts: np.ndarray,
    deltas: Sequence[str],
) -> list[dict[str, Any]]:
    """Per class: name, training pixels, CBP + OCCL's IoU (mean over seeds) and the ``deltas`` of
    :data:`DELTAS` (the other arm's IoU minus CBP + OCCL's)."""
    ious = {
        arm: class_mean(results, regime, arm, "IoU", len(class_names))
        for arm in ("cbp_occl", *DELTAS.values())
    }
    ours = ious["cbp_occl"]
    return [
        {
            "class": class_names[c],
            "train pixels": int(counts[c]),
            "CBP + OCCL": ours[c],
            **{name: ious[DELTAS[name]][c] - ours[c] for name in deltas},
        }
        for c in classes
    ]


def confusable_groups(
    results: pd.DataFrame,
    regime: str,
    groups: Sequence[Sequence[int]],
    class_names: Sequence[str],
    counts: np.ndarray,
) -> pd.DataFrame:
    """IoU of every member of each confusable group under CBP + OCCL and its change under three variants."""
    members = [
        (g, role, c) for g, group in enumerate(groups) for role, c in zip(("frequent", "mid", "rare"), group)
    ]
    rows = _class_rows(results, regime, [c for *_, c in members], class_names, counts, list(DELTAS))
    return pd.DataFrame([{"group": g, "role": role, **row} for (g, role, _), row in zip(members, rows)])


def group_sums(group_table: pd.DataFrame) -> pd.DataFrame:
    """Table 6 analogue: per group, the sum of its members' IoU and of their changes."""
    columns = ["CBP + OCCL", "Δ without orthogonalisation", "Δ learnable"]
    return group_table.groupby("group")[columns].sum(min_count=1)


def rare_and_frequent(
    results: pd.DataFrame,
    regime: str,
    class_names: Sequence[str],
    counts: np.ndarray,
    *,
    rare: int = 6,
    frequent: int = 2,
) -> pd.DataFrame:
    """Table 7 analogue: the ``rare`` rarest and ``frequent`` most frequent classes' IoU and changes."""
    rarest = frequency_parts(counts, 3)[0][:rare]  # rarest first
    most = np.argsort(counts, kind="stable")[-frequent:]
    deltas = ["Δ without equalisation", "Δ learnable"]
    return pd.DataFrame(_class_rows(results, regime, [*rarest, *most], class_names, counts, deltas))


def posthoc_table(results: pd.DataFrame, arms: Sequence[str] = ("linear", "linear_occl")) -> pd.DataFrame:
    """Per run: mIoU before and after dropping the bias and equalising the row norms, and the changes."""
    rows = []
    for regime, arm in itertools.product(REGIMES, arms):
        for r in arm_records(results, regime, arm):
            if p := r.get("posthoc_equalisation"):
                d = p["delta"]
                rows.append({"regime": regime, "classifier": arm_label(arm), "seed": r["seed"],
                             "mIoU raw": p["raw"]["mIoU"], "mIoU equalised": p["equalised"]["mIoU"],
                             "Δ mIoU": d["mIoU"], "Δ mAcc": d["mAcc"],
                             "Δ rare-third IoU": d["rare_third_IoU"]})  # fmt: skip
    return pd.DataFrame(rows)
