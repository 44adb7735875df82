"""The paper's claims, the decision rules of the protocol, and the verdict tables.

Two rules live here. Section 8's (the study's first version, generator 1) is below; amendment 5's
(the new study: paired differences per seed, t intervals, Holm's correction, a ±0.5 margin for the
paper's ties) is :func:`paired_verdict_rows` at the end of the module.

Section 8's rule reads the recorded result JSONs of a study (``results/<study>/*.json``) and, for
each claim, computes ours (mean +- std over seeds, per regime) and the verdict:

* ``d = mean(a) - mean(b)``, signed so that positive = the paper's direction;
  ``s = sqrt((std(a)^2 + std(b)^2) / 2)`` (ddof = 1);
* **holds** if ``d > 2 s``; **does not hold** if ``d < -2 s``; **within noise** otherwise.
* For the paper's ties (``|paper difference| <= 0.2``) "within noise" agrees with the paper and
  is scored "holds"; a clear gain or loss is scored "does not hold".
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np

from cbp.experiments.study import arm_label
from cbp.io import read_json
from cbp.paper import PAPER_ABLATION_LABEL, PAPER_ARMS

HOLDS, NOISE, FAILS, NOT_RUN, MISSING = "holds", "within noise", "does not hold", "not run", "missing"

PAPER_LABEL = PAPER_ABLATION_LABEL


TABLE_ARMS: dict[str, list[str]] = {
    "3": ["linear", "cbp", "linear_occl", "cbp_occl"],
    "4": ["cbp_occl", "gradient", "ema", "penalty"],
    "5": ["cbp_occl", "orthogonal", "equal", "text", "masked", "masked_orthogonal"],
    "9": ["length1", "cbp_occl", "length3", "length4", "length5"],
}


# --------------------------------------------------------------------------------------------
# Loading


def load_results(folder: str | Path) -> dict[str, Any]:
    """All result JSONs of a study folder: ``{"runs": {name: record}, "by_arm": {regime: {arm: [records by seed]}}}``."""
    folder = Path(folder)
    runs: dict[str, Any] = {}
    by_arm: dict[str, dict[str, list[Any]]] = defaultdict(lambda: defaultdict(list))
    for path in sorted(folder.glob("*.json")):
        rec = read_json(path)
        runs[path.stem] = rec
        if rec.get("kind") == "train":
            by_arm[rec["regime"]][rec["arm"]].append(rec)
    for regime in by_arm.values():
        for recs in regime.values():
            recs.sort(key=lambda r: r["seed"])
    return {"runs": runs, "by_arm": {k: dict(v) for k, v in by_arm.items()}}


def value(rec: dict[str, Any], metric: str) -> float:
    """One number of a run record: ``mIoU``, ``mAcc``, or an analysis key (dotted for nested ones)."""
    if metric in ("mIoU", "mAcc", "aAcc"):
        v = rec["metrics"][metric]
    elif metric == "f1_rarest_group":
        groups = rec.get("analysis", {}).get("f1_groups")
        v = groups[0] if groups else None
    elif metric == "cs":
        v = rec.get("analysis", {}).get("class_separability")
    elif metric.startswith("posthoc."):
        v = rec.get("posthoc_equalisation", {})
        for part in metric.split(".")[1:]:
            v = v.get(part, {}) if isinstance(v, dict) else None
    else:
        v = rec["analysis"]
        for part in metric.split("."):
            v = v.get(part) if isinstance(v, dict) else None
    return float("nan") if v is None or v == {} else float(v)


def values(results: dict[str, Any], regime: str, arm: str, metric: str) -> np.ndarray:
    """Per-seed values of one arm in one regime (empty if the arm has no finished run)."""
    recs = results["by_arm"].get(regime, {}).get(arm, [])
    return np.array([value(r, metric) for r in recs], dtype=np.float64)


def mean_std(x: np.ndarray) -> tuple[float, float]:
    """Mean and sample std (ddof = 1; NaN for fewer than 2 values)."""
    x = x[np.isfinite(x)]
    if x.size == 0:
        return float("nan"), float("nan")
    return float(x.mean()), float(x.std(ddof=1)) if x.size > 1 else float("nan")


def fmt(x: np.ndarray, digits: int = 2) -> str:
    """``"80.12 ± 0.31"`` (or ``"80.12"`` for one seed, ``"–"`` for none)."""
    m, s = mean_std(x)
    if math.isnan(m):
        return "–"
    return f"{m:.{digits}f}" if math.isnan(s) else f"{m:.{digits}f} ± {s:.{digits}f}"


# --------------------------------------------------------------------------------------------
# The decision rule


def decide(a: np.ndarray, b: np.ndarray, sign: float = 1.0) -> tuple[str, float, float]:
    """Protocol section 8: verdict of "a beats b in the paper's direction ``sign``".

    Returns:
        (verdict, d, s): d = sign * (mean(a) - mean(b)), s = pooled seed std.
    """
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if a.size == 0 or b.size == 0:
        return MISSING, float("nan"), float("nan")
    d = sign * (a.mean() - b.mean())
    if a.size < 2 or b.size < 2:
        return NOISE + " (1 seed)", float(d), float("nan")
    s = math.sqrt((a.var(ddof=1) + b.var(ddof=1)) / 2)
    if d > 2 * s:
        return HOLDS, float(d), s
    if d < -2 * s:
        return FAILS, float(d), s
    return NOISE, float(d), s


@dataclass(frozen=True)
class Claim:
    """One claim of the paper and how it is tested (protocol section 8).

    kind: "diff" (a vs b in the paper's direction), "tie" (the paper reports no difference),
    "range" (Table 9), "std" (Table 10), "order" (Table 8), "positive" (a correlation > 0),
    "paired" (post-hoc equalisation), "not_run".
    """

    key: str
    source: str
    text: str
    paper: str
    kind: str
    a: str = ""
    b: str = ""
    metric: str = "mIoU"
    sign: float = 1.0


CLAIMS: list[Claim] = [
    Claim("t3_cbp", "Table 3", "+CBP alone ≈ baseline", "+0.1 (33.5 vs 33.4)", "tie", "cbp", "linear"),
    Claim(
        "t3_occl", "Table 3", "+OCCL beats baseline", "+0.9 (34.3 vs 33.4)", "diff", "linear_occl", "linear"
    ),
    Claim(
        "t3_both", "Table 3", "CBP + OCCL beats baseline", "+1.7 (35.1 vs 33.4)", "diff", "cbp_occl", "linear"
    ),
    Claim(
        "t3_both_mAcc",
        "Table 3",
        "CBP + OCCL beats baseline (mAcc)",
        "+3.7 (48.1 vs 44.4)",
        "diff",
        "cbp_occl",
        "linear",
        "mAcc",
    ),
    Claim(
        "t3_cbp_given_occl",
        "Table 3",
        "CBP adds to OCCL",
        "+0.8 (35.1 vs 34.3)",
        "diff",
        "cbp_occl",
        "linear_occl",
    ),
    Claim(
        "t4_gradient",
        "Table 4",
        "frozen beats gradient",
        "+0.5 (35.1 vs 34.6)",
        "diff",
        "cbp_occl",
        "gradient",
    ),
    Claim("t4_ema", "Table 4", "frozen beats EMA", "+5.2 (35.1 vs 29.9)", "diff", "cbp_occl", "ema"),
    Claim(
        "t4_penalty",
        "Table 4",
        "frozen beats penalty",
        "> +0.5 (below gradient)",
        "diff",
        "cbp_occl",
        "penalty",
    ),
    Claim(
        "t5_equal", "Table 5", "equalisation matters", "+1.8 (35.1 vs 33.3)", "diff", "cbp_occl", "orthogonal"
    ),
    Claim(
        "t5_ortho", "Table 5", "orthogonalisation ≈ tie", "+0.1 (35.1 vs 35.0)", "tie", "cbp_occl", "equal"
    ),
    Claim("t5_masked", "Table 5", "masked init hurts", "+4.8 (35.1 vs 30.3)", "diff", "cbp_occl", "masked"),
    Claim(
        "t5_masked_ortho",
        "Table 5",
        "masked + orthogonal ≈ CBP",
        "0.0 (35.1 vs 35.1)",
        "tie",
        "cbp_occl",
        "masked_orthogonal",
    ),
    Claim("t5_text", "Table 5", "CLIP text init hurts", "+1.9 (35.1 vs 33.2)", "not_run", "cbp_occl", "text"),
    Claim("t9_length", "Table 9", "length T is sensitive", "range 34.6–35.3", "range"),
    Claim("t10_seeds", "Table 10", "stable over seeds", "std 0.2 (4 seeds)", "std", "cbp_occl"),
    Claim("t8_cs", "Table 8", "CS: learnable > equal > CBP = 0", "75.8 > 6.2 > 0", "order"),
    Claim(
        "fig5_learnable",
        "Fig. 5",
        "rarest-group F1: CBP+OCCL beats learnable",
        "+2.5 (32.0)",
        "diff",
        "cbp_occl",
        "linear",
        "f1_rarest_group",
    ),
    Claim(
        "fig5_noeq",
        "Fig. 5",
        "rarest-group F1: CBP+OCCL beats no equalisation",
        "+7.7",
        "diff",
        "cbp_occl",
        "orthogonal",
        "f1_rarest_group",
    ),
    Claim(
        "t7_rare",
        "Table 7",
        "rare classes gain from equalisation (rare-third IoU)",
        "flag +7.3, radiator +5.3",
        "diff",
        "cbp_occl",
        "orthogonal",
        "rare_third_IoU",
    ),
    Claim(
        "t6_confusable",
        "Table 6",
        "orthogonality helps confusable classes (group IoU)",
        "+0.3 … +1.0",
        "diff",
        "cbp_occl",
        "equal",
        "confusable_IoU",
    ),
    Claim(
        "norm_freq",
        "Sec. 4.3",
        "learnable norms grow with pixel count (Pearson, log count)",
        "0.27",
        "positive",
        "linear",
        metric="norm_correlation.pearson_log",
    ),
    Claim(
        "posthoc",
        "feasibility study",
        "post-hoc equalisation of the learnable classifier helps",
        "– (not in paper)",
        "paired",
        "linear",
        metric="posthoc.delta.mIoU",
    ),
]


#: A claim's values of one arm in one regime (the claim's metric unless given).
Values = Callable[..., np.ndarray]
NAN = float("nan")

#: A tie of the paper agrees with a difference within noise; a clear difference either way does not.
TIE_VERDICTS = {
    NOISE: HOLDS + " (within noise, as the paper's tie)",
    HOLDS: FAILS + " (clear gain; paper: tie)",
    FAILS: FAILS + " (clear loss; paper: tie)",
}


#: The first study's score of a verdict (its words' constant, before any note): a tie of the paper is
#: scored by what it says about the tie, a missing run as not run.
SCORES = {HOLDS: HOLDS, FAILS: FAILS, MISSING: NOT_RUN, NOT_RUN: NOT_RUN}
TIE_SCORES = {NOISE: HOLDS, HOLDS: FAILS, FAILS: FAILS, MISSING: NOT_RUN}


def _row(ours: str, verdict: str, d: float = NAN, s: float = NAN, base: str | None = None) -> dict[str, Any]:
    """A judged claim: ``verdict`` in words and ``score`` (holds / does not hold / within noise / not
    run) from ``base``, the rule's outcome before any words were added (default: ``verdict``)."""
    score = SCORES.get(verdict if base is None else base, NOISE)
    return {"ours": ours, "d": d, "s": s, "verdict": verdict, "score": score}


def _difference(claim: Claim, get: Values) -> dict[str, Any]:
    """``diff``: arm a beats arm b (:func:`decide`); ``tie``: the paper reports no difference."""
    a, b = get(claim.a), get(claim.b)
    base, d, s = decide(a, b, claim.sign)
    if claim.kind == "tie":
        row = _row(f"{fmt(a)} vs {fmt(b)}", TIE_VERDICTS.get(base, base), d, s)
        return row | {"score": TIE_SCORES.get(base, NOISE)}
    return _row(f"{fmt(a)} vs {fmt(b)}", base, d, s)


def _range(claim: Claim, get: Values) -> dict[str, Any]:
    """Table 9's lengths: the best against the worst."""
    got = {n: v for n in TABLE_ARMS["9"] if (v := get(n)).size}
    if len(got) < 2:
        return _row("–", MISSING)
    means = {n: float(np.nanmean(v)) for n, v in got.items()}
    hi, lo = max(means, key=means.get), min(means, key=means.get)
    verdict, d, s = decide(got[hi], got[lo])
    return _row(f"range {means[lo]:.2f}–{means[hi]:.2f} ({arm_label(lo)} … {arm_label(hi)})", verdict, d, s)


def _std(claim: Claim, get: Values) -> dict[str, Any]:
    """Table 10: the seed spread of an arm (holds at std <= 0.5, fails above 1.0)."""
    x = get(claim.a)
    m, s = mean_std(x)
    verdict = MISSING if math.isnan(s) else HOLDS if s <= 0.5 else FAILS if s > 1.0 else NOISE
    return _row(f"std {s:.2f} ({x.size} seeds, mean {m:.2f})", verdict, s=s)


def _order(claim: Claim, get: Values) -> dict[str, Any]:
    """Table 8: CS of learnable > equal-only > CBP = 0, seed by seed."""
    lin, eq, cbp = get("linear", "cs"), get("equal", "cs"), get("cbp_occl", "cs")
    n = min(lin.size, eq.size, cbp.size)
    if n == 0:
        return _row("–", MISSING)
    ok = bool(
        np.all(lin[:n] > eq[:n]) and np.all(eq[:n] > np.abs(cbp[:n])) and np.all(np.abs(cbp[:n]) < 1e-3)
    )
    return _row(f"{fmt(lin, 1)} > {fmt(eq, 1)} > {fmt(cbp, 3)}", HOLDS if ok else FAILS)


def _positive(claim: Claim, get: Values) -> dict[str, Any]:
    """``positive`` / ``paired``: an arm's value (a correlation, a paired gain) is above 0 by 2 std."""
    x = get(claim.a)
    m, s = mean_std(x)
    if math.isnan(m):
        return _row("–", MISSING)
    if math.isnan(s):
        return _row(fmt(x), NOISE + " (1 seed)", m, s, base=NOISE)
    else:
        verdict = HOLDS if m > 2 * s and m > 0 else FAILS if m < -2 * s else NOISE
    return _row(fmt(x), verdict, m, s)


#: How each kind of claim is judged.
JUDGES: dict[str, Callable[[Claim, Values], dict[str, Any]]] = {
    "not_run": lambda claim, get: _row("not run", "not run: no offline text encoder", base=NOT_RUN),
    "diff": _difference,
    "tie": _difference,
    "range": _range,
    "std": _std,
    "order": _order,
    "positive": _positive,
    "paired": _positive,
}


def evaluate_claim(claim: Claim, results: dict[str, Any], regime: str) -> dict[str, Any]:
    """Ours and the verdict of one claim in one regime: ``{"ours", "d", "s", "verdict", "score"}`` (the
    verdict in words, and its score as a constant: never parse the words back)."""
    if claim.kind not in JUDGES:
        raise ValueError(f"unknown claim kind {claim.kind!r}")
    return JUDGES[claim.kind](claim, lambda arm, metric=claim.metric: values(results, regime, arm, metric))


def verdict_rows(
    results: dict[str, Any], regimes: tuple[str, ...] = ("scratch", "pretrained")
) -> list[dict[str, Any]]:
    """One row per claim: source, claim, paper, and for each regime ours / d / verdict."""
    rows = []
    for c in CLAIMS:
        row: dict[str, Any] = {"source": c.source, "claim": c.text, "metric": c.metric, "paper": c.paper}
        for regime in regimes:
            r = evaluate_claim(c, results, regime)
            row[f"ours {regime}"] = r["ours"]
            row[f"d {regime}"] = r["d"]
            row[f"2s {regime}"] = 2 * r["s"] if not math.isnan(r["s"]) else float("nan")
            row[f"verdict {regime}"] = r["verdict"]
        rows.append(row)
    return rows


def arm_rows(results: dict[str, Any], table: str, metric: str = "mIoU") -> list[dict[str, Any]]:
    """Rows of one ablation table (3, 4, 5, 9): arm, paper value, ours per regime (mean ± std)."""
    rows = []
    idx = 0 if metric == "mIoU" else 1
    for arm in TABLE_ARMS[table]:
        paper = PAPER_ARMS.get(arm, (None, None))[idx]
        row = {"arm": arm_label(arm), "paper": "–" if paper is None else f"{paper:.1f}"}
        for regime in ("scratch", "pretrained"):
            v = values(results, regime, arm, metric)
            row[regime] = "not run: no offline text encoder" if arm == "text" else fmt(v)
            row[f"n {regime}"] = int(np.isfinite(v).sum())
        rows.append(row)
    return rows


# --------------------------------------------------------------------------------------------
# The decision rule of amendment 5: paired differences, t intervals, Holm's correction

NOT_RESOLVED = "not resolved"

#: Amendment 5's rule for the paper's ties: "a ≈ b" holds when the whole 95% interval of the paired
#: difference lies within ± this many points (the same 0.5 mIoU the tuning rule treats as a tie).
TIE_MARGIN = 0.5

#: An evaluation iteration, or one per claim (e.g. the later of its two arms' plateaus); ``None`` = final.
At = int | None | Callable[[Claim], int | None]


def value_at(rec: dict[str, Any], metric: str, iteration: int | None = None) -> float:
    """:func:`value` at one evaluation of the run's learning curve (``rec["curve"]``, written with
    ``train.eval_every``); ``None`` or the run's last iteration = the final value. NaN when the run
    was not evaluated there or the curve does not hold ``metric`` (only mIoU / mAcc / aAcc)."""
    if iteration is None or iteration == rec.get("config", {}).get("train", {}).get("iters"):
        return value(rec, metric)
    row = next((r for r in rec.get("curve", []) if r["iter"] == iteration), None)
    return float(row[metric]) if row is not None and metric in row else float("nan")


def paired_differences(
    results: dict[str, Any],
    regime: str,
    a: str,
    b: str,
    metric: str = "mIoU",
    sign: float = 1.0,
    at: int | None = None,
) -> np.ndarray:
    """``sign * (a_s - b_s)`` for every seed ``s`` both arms finished (same seed = same prototype
    draw, data order and initialisation), in seed order, at evaluation ``at`` (``None`` = final)."""
    recs = results["by_arm"].get(regime, {})
    va = {r["seed"]: value_at(r, metric, at) for r in recs.get(a, [])}
    vb = {r["seed"]: value_at(r, metric, at) for r in recs.get(b, [])}
    seeds = sorted(s for s in set(va) & set(vb) if math.isfinite(va[s]) and math.isfinite(vb[s]))
    return np.array([sign * (va[s] - vb[s]) for s in seeds], dtype=np.float64)


def paired_test(d: np.ndarray, level: float = 0.95) -> dict[str, float]:
    """Mean of paired differences, its two-sided t interval and the one-sample t-test p-value of
    "mean = 0" (``scipy.stats``); NaN where fewer than 2 pairs (or all differences equal) allow none."""
    import scipy.stats

    n = int(d.size)
    mean = float(d.mean()) if n else float("nan")
    out = {"n": n, "mean": mean, "lo": float("nan"), "hi": float("nan"), "p": float("nan")}
    if n < 2:
        return out
    se = float(d.std(ddof=1)) / math.sqrt(n)
    if se == 0.0:
        return out
    half = float(scipy.stats.t.ppf(0.5 + level / 2, n - 1)) * se
    out.update(lo=mean - half, hi=mean + half, p=float(scipy.stats.ttest_1samp(d, 0.0).pvalue))
    return out


def holm(pvalues: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values (NaN entries stay NaN and do not count as tests)."""
    idx = [i for i, p in enumerate(pvalues) if not math.isnan(p)]
    order = sorted(idx, key=lambda i: pvalues[i])
    m = len(order)
    adjusted = [float("nan")] * len(pvalues)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


class Verdict(str, Enum):
    """The outcome of one claim under a paired rule (amendments 5 and 6); pages format its value, and
    no verdict's words are ever parsed back into it."""

    HOLDS = "holds"
    DOES_NOT_HOLD = "does not hold"
    NOT_RESOLVED = "not resolved"
    NO_RECORD = "no record"


def paired_outcome(claim: Claim, test: dict[str, float], p_holm: float, alpha: float = 0.05) -> Verdict:
    """Amendment 5's rule as a :class:`Verdict` (see :func:`paired_verdict` for the rule in words)."""
    if test["n"] == 0:
        return Verdict.NO_RECORD
    significant = test["n"] >= 2 and not math.isnan(p_holm) and p_holm < alpha
    if claim.kind == "tie" and not significant:
        inside = test["n"] >= 2 and -TIE_MARGIN <= test["lo"] and test["hi"] <= TIE_MARGIN
        return Verdict.HOLDS if inside else Verdict.NOT_RESOLVED
    if not significant:
        return Verdict.NOT_RESOLVED
    if claim.kind == "tie":
        return Verdict.DOES_NOT_HOLD
    return Verdict.HOLDS if test["mean"] > 0 else Verdict.DOES_NOT_HOLD


def paired_verdict(claim: Claim, test: dict[str, float], p_holm: float, alpha: float = 0.05) -> str:
    """Amendment 5's verdict of one claim from its paired test and Holm-adjusted p-value.

    * "a beats b" (kind ``diff``): **holds** if ``p_holm < alpha`` and the mean is > 0, **does not
      hold** if ``p_holm < alpha`` and the mean is < 0, else **not resolved**.
    * "a ≈ b" (kind ``tie``, the paper's ties): a significant difference either way **does not
      hold** (it names the direction); the tie **holds** when the whole 95% interval lies within
      ± :data:`TIE_MARGIN`; otherwise **not resolved** (the data exclude neither a tie nor an effect).
      Significance is checked first, so a significant difference smaller than the margin (a
      tight interval, e.g. [0.08, 0.14]) does not hold: the two arms are measurably different.

    Identical paired differences (zero spread, e.g. [2, 2, 2]) give no p-value and no interval,
    hence "not resolved"; with float mIoU values this does not happen in practice.
    """
    outcome = paired_outcome(claim, test, p_holm, alpha)
    if outcome is Verdict.NO_RECORD:
        return MISSING
    if test["n"] < 2:
        return NOT_RESOLVED + " (1 seed)"
    if claim.kind == "tie" and outcome is Verdict.DOES_NOT_HOLD:
        return FAILS + (
            " (significant gain; paper: tie)" if test["mean"] > 0 else " (significant loss; paper: tie)"
        )
    if claim.kind == "tie" and outcome is Verdict.HOLDS:
        return HOLDS + f" (within ±{TIE_MARGIN}, as the paper's tie)"
    return {Verdict.HOLDS: HOLDS, Verdict.DOES_NOT_HOLD: FAILS}.get(outcome, NOT_RESOLVED)


def interval_text(row: dict[str, Any]) -> str:
    """A row of :func:`paired_verdict_rows` as ``"+1.20 [+0.40, +2.00], 3 seeds"`` (no interval for
    1 seed or identical differences; ``"–"`` for none)."""
    lo, hi = row["ci95"]
    if math.isnan(row["mean"]):
        return "–"
    seeds = f", {row['n']} seed{'s' if row['n'] != 1 else ''}"
    if math.isnan(lo):
        return f"{row['mean']:+.2f}{seeds}"
    return f"{row['mean']:+.2f} [{lo:+.2f}, {hi:+.2f}]{seeds}"


def _iteration(at: At, claim: Claim) -> int | None:
    return at(claim) if callable(at) else at


def paired_verdict_rows(
    results: dict[str, Any],
    regime: str = "pretrained",
    alpha: float = 0.05,
    at: At = None,
    claim_keys: tuple[str, ...] | None = None,
    claims: list[Claim] | None = None,
) -> list[dict[str, Any]]:
    """Amendment 5's rule for every "diff" / "tie" claim of ``claims`` (default :data:`CLAIMS`; or
    those of ``claim_keys``) in one regime at one end point ``at``.

    Each row: the claim, the iteration compared, the number of paired seeds, the mean paired
    difference (paper's direction positive) with its 95% t interval, the raw and Holm-adjusted
    p-values (family: the claims of this call that have a test, i.e. one regime and one end point),
    the verdict in words (:func:`paired_verdict`), as a :class:`Verdict` (``outcome``) and whether the
    claim is a tie (``tie``).
    """
    pool = CLAIMS if claims is None else claims
    chosen = [c for c in pool if c.kind in ("diff", "tie") and (claim_keys is None or c.key in claim_keys)]
    iterations = [_iteration(at, c) for c in chosen]
    tests = [
        paired_test(paired_differences(results, regime, c.a, c.b, c.metric, c.sign, it))
        for c, it in zip(chosen, iterations)
    ]
    adjusted = holm([t["p"] for t in tests])
    return [
        {
            "key": c.key,
            "source": c.source,
            "claim": c.text,
            "metric": c.metric,
            "paper": c.paper,
            "iteration": it,
            "n": t["n"],
            "mean": t["mean"],
            "ci95": (t["lo"], t["hi"]),
            "p": t["p"],
            "p_holm": p_adj,
            "verdict": paired_verdict(c, t, p_adj, alpha),
            "outcome": paired_outcome(c, t, p_adj, alpha),
            "tie": c.kind == "tie",
        }
        for c, it, t, p_adj in zip(chosen, iterations, tests, adjusted)
    ]
