"""The first study's verdicts in words, for the appendix "History of the study".

Reads the dict of :func:`cbp.experiments.claims.load_results` and turns
:func:`cbp.experiments.claims.evaluate_claim` into what a reader needs: a verdict per claim with the
claim beside it, in words rather than code names, at most six columns, and a count in which a tie
the paper reports counts as a tie.

Scoring is the study's (:func:`cbp.experiments.claims.evaluate_claim`): "holds" when ``d > 2s``;
for a claim that two arms *tie* (the paper's +0.1, 0.0), "within noise" holds and a clear
difference either way does not.
"""

from __future__ import annotations

import math
import re
from typing import Any

import pandas as pd

from cbp.experiments import claims, tables

#: The four scores a claim can get (a tie is scored against the paper's tie, see the module doc).
HOLDS, FAILS, NOISE, NOT_RUN = "holds", "does not hold", "within noise", "not run"

#: What each metric of :data:`cbp.experiments.claims.CLAIMS` is, in words.
METRIC_WORDS: dict[str, str] = {
    "mIoU": "mIoU",
    "mAcc": "mAcc",
    "f1_rarest_group": "F1 of the rarest frequency group",
    "rare_third_IoU": "IoU of the rare third of the classes",
    "confusable_IoU": "IoU of the confusable groups",
    "norm_correlation.pearson_log": "Pearson r of row norm and log pixel count",
    "posthoc.delta.mIoU": "mIoU change",
}

#: Metric of the claims whose kind fixes it (the Claim's own field keeps its "mIoU" default there).
KIND_METRIC: dict[str, str] = {"order": "class separability (Eq. 8)", "std": "std of mIoU over seeds"}

#: The claims the summary box spells out, in this order (keys of :data:`claims.CLAIMS`).
KEY_CLAIMS: tuple[str, ...] = ("t3_both", "t3_cbp", "t3_occl", "t4_gradient", "t4_ema", "t5_equal", "t7_rare")


def _claim(key: str) -> claims.Claim:
    return next(c for c in claims.CLAIMS if c.key == key)


def metric_words(claim: claims.Claim) -> str:
    """The metric a claim is judged on, in words (``"class separability (Eq. 8)"`` for Table 8)."""
    return KIND_METRIC.get(claim.kind, METRIC_WORDS.get(claim.metric, claim.metric))


def verdict_words(claim: claims.Claim, result: dict[str, Any]) -> str:
    """The verdict cell: the score, and for a tie that fails, which way ours went."""
    s = result["score"]
    if claim.kind == "tie" and s == FAILS:
        return f"does not hold (clear {'gain' if result['d'] > 0 else 'loss'}; the paper: a tie)"
    if s == NOT_RUN and claim.kind == "not_run":
        return "not run (no offline text encoder)"
    return s


def ours_words(claim: claims.Claim, result: dict[str, Any]) -> str:
    """Ours as the paper states it: a difference ``+11.9 (2s 2.5)`` for comparisons, else the text."""
    if claim.kind in ("diff", "tie") and not math.isnan(result["d"]):
        two_s = "" if math.isnan(result["s"]) else f" (2s = {2 * result['s']:.1f})"
        return f"{result['d']:+.1f}{two_s}"
    return result["ours"].replace("0.000 ± 0.000", "0")


def verdict_table(
    results: dict[str, Any], regimes: tuple[str, ...] = ("pretrained", "scratch"), *, paper_only: bool = False
) -> pd.DataFrame:
    """One row per claim: claim (source, metric), the verdict of each regime, the paper, ours.

    Args:
        results: :func:`cbp.experiments.claims.load_results` of a study.
        regimes: the regimes shown, first one first (two regimes give six columns).
        paper_only: leave out the claims the paper does not make (the feasibility study's).
    """
    rows = []
    for c in claims.CLAIMS:
        if paper_only and not _from_paper(c):
            continue
        res = {r: claims.evaluate_claim(c, results, r) for r in regimes}
        row: dict[str, str] = {"claim": claim_label(c)}
        row |= {f"verdict, {r}": verdict_words(c, res[r]) for r in regimes}
        row["paper"] = c.paper
        row |= {f"ours, {r}": ours_words(c, res[r]) for r in regimes}
        rows.append(row)
    return pd.DataFrame(rows)


def _from_paper(c: claims.Claim) -> bool:
    return "not in paper" not in c.paper


def counts(results: dict[str, Any], regimes: tuple[str, ...] = ("pretrained", "scratch")) -> pd.DataFrame:
    """How many of the paper's claims hold / do not hold / are within noise / were not run, per regime."""
    paper_claims = [c for c in claims.CLAIMS if _from_paper(c)]
    data = {
        r: pd.Series([claims.evaluate_claim(c, results, r)["score"] for c in paper_claims])
        .value_counts()
        .reindex([HOLDS, FAILS, NOISE, NOT_RUN], fill_value=0)
        for r in regimes
    }
    return pd.DataFrame(data).rename_axis("the paper's claims")


def date_span(recs: list[dict[str, Any]]) -> str:
    """``"2026-11-29"`` or ``"2026-11-25 to 2026-11-29"``: the days the records were made ("?" if none says)."""
    dates = sorted(r["recorded"][:10] for r in recs if r.get("recorded"))
    if not dates:
        return "?"
    return dates[0] if dates[0] == dates[-1] else f"{dates[0]} to {dates[-1]}"


def records_line(results: dict[str, Any], folder: str) -> str:
    """Which records a summary is computed from: folder, number of runs, dates, generator version."""
    recs = tables.train_records(results)
    data = results["runs"].get("data", {})
    version = (data.get("data") or {}).get("version", 1)
    span = date_span(recs)
    return (
        f"{len(recs)} training runs recorded in `{folder}` ({span}), on data made by version "
        f"{version} of the synthetic generator"
    )


def _claim_text(c: claims.Claim) -> str:
    return re.sub(r" \(.*\)$", "", c.text)


def claim_label(c: claims.Claim) -> str:
    """A claim as the tables name it: ``"CBP + OCCL beats baseline (Table 3, mAcc)"``."""
    return f"{_claim_text(c)} ({c.source}, {metric_words(c)})"


def summary_line(results: dict[str, Any], folder: str) -> str:
    """What the summary reads and how many of the paper's claims hold, per regime (Markdown)."""
    n = counts(results)
    plural = {HOLDS: "hold", FAILS: "do not hold", NOISE: "within noise", NOT_RUN: "not run"}

    def tally(r: str) -> str:
        return ", ".join(f"{int(n.loc[k, r])} {plural[k]}" for k in n.index if n.loc[k, r])

    label = tables.ours_label(results).removeprefix("ours (").removesuffix(")")
    return (
        f"Computed from {records_line(results, folder)} ({label}). Of the paper's "
        f"{int(n['pretrained'].sum())} claims tested, **pretrained**: {tally('pretrained')}; "
        f"**from scratch**: {tally('scratch')} (a tie the paper reports counts as a tie)."
    )


def key_claims(results: dict[str, Any]) -> pd.DataFrame:
    """The claims of :data:`KEY_CLAIMS`: claim, paper, and ours with its verdict per regime."""
    rows = []
    for key in KEY_CLAIMS:
        c = _claim(key)
        row = {"the paper's claim": claim_label(c), "paper": c.paper}
        for r, name in (("pretrained", "ours, pretrained"), ("scratch", "ours, from scratch")):
            res = claims.evaluate_claim(c, results, r)
            row[name] = f"{ours_words(c, res)}: {verdict_words(c, res)}"
        rows.append(row)
    return pd.DataFrame(rows)


def schedule_line(long_results: dict[str, Any] | None) -> str:
    """CBP + OCCL against the baseline after the long schedule (amendment 3), or "" if not recorded."""
    if not long_results or not long_results.get("runs"):
        return ""
    c = _claim("t3_both")
    a, b = (claims.values(long_results, "pretrained", arm, c.metric) for arm in (c.a, c.b))
    verdict, d, s = claims.decide(a, b)
    if math.isnan(d):
        return ""
    return (
        f"After 2000 iterations instead of 500 (pretrained, {a.size} seeds), CBP + OCCL against the "
        f"baseline is {d:+.1f} mIoU (2s = {2 * s:.1f}): **{claims.SCORES.get(verdict, NOISE)}**. Gains and differences "
        "are in points of the metric named; 2s is twice the pooled seed standard deviation."
    )
