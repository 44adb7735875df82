"""The appendix "History of the study": the superseded studies, read with the current record model and rule.

Each profile of a superseded study (:data:`cbp.experiments.current.HISTORY`) is read by
:func:`cbp.experiments.verdicts.records` and shown two ways: every arm's final mIoU and mAcc, per seed
and as mean ± std (:func:`arm_table`); and the current study's claims (:data:`cbp.experiments.verdicts.CLAIMS`)
whose two arms the profile ran, judged by the current rule on the final models, one Holm family per
table and regime (:func:`cbp.experiments.verdicts.judge_recorded`). The studies' own read-outs of the time (the first study's
``d > 2s``, the second's early and plateau verdicts) are described in ``experiments/protocol.md``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from cbp.book.analysis_tables import fmt
from cbp.experiments import verdicts
from cbp.experiments.current import HISTORY, Study
from cbp.experiments.study import A6_ARMS, arm_label


def study(name: str) -> Study:
    """The superseded study called ``name`` ("first", "second")."""
    return next(s for s in HISTORY if s.name == name)


def profile_records(name: str, profile: str, root: str | Path = ".") -> pd.DataFrame:
    """The training records of one profile of a superseded study (empty if it has none)."""
    return verdicts.records(study(name).folders(root)[profile])


def arm_table(df: pd.DataFrame) -> pd.DataFrame:
    """Every (regime, arm) of the records ``df``: its seeds, final mIoU and mAcc as mean ± std over seeds
    (ddof 1, :func:`cbp.book.analysis_tables.fmt`) and each seed's mIoU. Means print with 2 decimals, as the
    page's test of superseded numbers (:func:`cbp.experiments.current.superseded_arm_means`) reads them."""
    rows = []
    for (regime, arm), g in df.sort_values("seed").groupby(["regime", "arm"]):
        row = {"regime": regime, "arm": arm_label(arm), "seeds": len(g)}
        row |= {metric: fmt(g[metric].to_numpy()) for metric in ("mIoU", "mAcc")}
        row["mIoU per seed"] = ", ".join(f"{v:.2f}" for v in g.mIoU)
        order = (A6_ARMS.index(arm), "") if arm in A6_ARMS else (len(A6_ARMS), arm)
        rows.append((regime, order, row))  # the current study's arms first, in its order; the others by name
    return pd.DataFrame([r for *_, r in sorted(rows, key=lambda r: (r[0], r[1]))])
