"""Amendment 5's read-out of the end points: learning curves, plateaus, best / final values, the
verdicts at 500 iterations and at the plateau, and the mechanism beside each verdict.

Everything reads the dict of :func:`cbp.experiments.claims.load_results` for a study folder whose
training runs were evaluated every few hundred iterations (``train.eval_every``; each record's
``curve`` holds ``{"iter", "mIoU", "mAcc", "aAcc"}`` rows, the last one the final evaluation).

The plateau rule, as the protocol fixed it before the runs: with ``m(t)`` the arm's mean over seeds
at evaluation ``t`` and ``s(t)`` its seed std (ddof 1), the plateau is the first evaluation ``t``
after which no later evaluation improves on ``m(t)`` by more than ``s(t)``::

    plateau = min { t : m(t') - m(t) <= s(t) for every evaluation t' > t }

The last evaluation always qualifies, so a plateau *at* the last evaluation means the arm was still
rising by more than its seed noise there: "not reached".
"""

from __future__ import annotations

import math
import textwrap
import warnings
from typing import Any

import numpy as np

from cbp.experiments import claims
from cbp.experiments.study import ENDPOINT_ARMS, PROFILES, TABLE3_ARMS, TUNE_ARMS, TUNED, arm_label, plan
from cbp.experiments.tables import short_label
from cbp.paper import PAPER_ARMS

#: The end point the first version of the study used (500 iterations, one pass over the data).
EARLY = 500

#: The claims the end points test: both arms in :data:`ENDPOINT_ARMS` and a metric the learning
#: curves hold (mIoU, mAcc), so that each can be judged at 500 iterations and at the plateau.
ENDPOINT_CLAIMS: tuple[str, ...] = tuple(
    c.key
    for c in claims.CLAIMS
    if c.kind in ("diff", "tie")
    and c.a in ENDPOINT_ARMS
    and c.b in ENDPOINT_ARMS
    and c.metric in ("mIoU", "mAcc")
)

NOT_RUN_YET = "not run yet"


def curves(
    results: dict[str, Any], regime: str, arm: str, metric: str = "mIoU"
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """The learning curves of one arm.

    Returns:
        (iters, values, seeds): ``iters`` (T,) evaluation iterations, ``values`` (S, T) float64,
        one row per seed in ``seeds`` order. Empty arrays when the arm has no run; a single column
        (the final values) for runs without periodic evaluation.

    Raises:
        ValueError: when the seeds were evaluated at different iterations, or a value is not
            finite (a seed mean would then silently drop evaluations).
    """
    recs = results["by_arm"].get(regime, {}).get(arm, [])
    if not recs:
        return np.zeros(0, dtype=np.int64), np.zeros((0, 0)), []
    rows = [_curve(r) for r in recs]
    grid = [row["iter"] for row in rows[0]]
    for rec, c in zip(recs, rows):
        if [row["iter"] for row in c] != grid:
            raise ValueError(
                f"{regime}-{arm}: seed {rec['seed']} was evaluated at other iterations than seed "
                f"{recs[0]['seed']} ({[row['iter'] for row in c]} vs {grid}); a seed mean needs one grid"
            )
    values = np.array([[row[metric] for row in c] for c in rows], dtype=np.float64)
    if not np.isfinite(values).all():
        raise ValueError(f"{regime}-{arm}: a non-finite {metric} in a learning curve; the record is damaged")
    return np.array(grid, dtype=np.int64), values, [r["seed"] for r in recs]


def _curve(rec: dict[str, Any]) -> list[dict[str, Any]]:
    """A record's evaluations; a run without periodic evaluation (e.g. profile ``quick``) has one,
    its final metrics at its last iteration."""
    if rec.get("curve"):
        return rec["curve"]
    m = rec["metrics"]
    return [{"iter": rec["config"]["train"]["iters"]} | {k: m[k] for k in ("mIoU", "mAcc", "aAcc") if k in m}]


def plateau_index(values: np.ndarray) -> int | None:
    """Index of the plateau (module docstring) of a (S, T) curve array; ``None`` for fewer than 2
    seeds (no seed std) or no evaluation."""
    if values.ndim != 2 or values.shape[0] < 2 or values.shape[1] == 0:
        return None
    mean, std = values.mean(axis=0), values.std(axis=0, ddof=1)
    for t in range(values.shape[1]):
        if np.all(mean[t + 1 :] - mean[t] <= std[t]):
            return t
    raise AssertionError("unreachable: the last evaluation always qualifies")


def plateau(results: dict[str, Any], regime: str, arm: str) -> int | None:
    """The arm's plateau iteration (mIoU), or ``None`` when it has fewer than 2 seeds."""
    iters, values, _ = curves(results, regime, arm)
    i = plateau_index(values)
    return None if i is None else int(iters[i])


def last_evaluation(results: dict[str, Any], regime: str, arm: str) -> int | None:
    """The arm's last evaluation iteration (``None`` without runs)."""
    iters, _, seeds = curves(results, regime, arm)
    return int(iters[-1]) if seeds else None


def claim_plateau(results: dict[str, Any], regime: str, claim: claims.Claim) -> int | None:
    """The iteration a claim is judged at "at the plateau": the later of its two arms' plateaus (both
    have stopped improving there); ``None`` when either arm has none yet. The plateau is always the
    mIoU one, also for a claim on mAcc (mIoU is the paper's main metric and the protocol's rule is
    stated for it)."""
    pa, pb = plateau(results, regime, claim.a), plateau(results, regime, claim.b)
    return None if pa is None or pb is None else max(pa, pb)


def endpoint_rows(
    results: dict[str, Any], arms: tuple[str, ...] = ENDPOINT_ARMS, regime: str = "pretrained"
) -> list[dict[str, Any]]:
    """One row per arm: the paper's mIoU, ours at 500 iterations, at the plateau, the best (each seed's
    highest evaluation) and the final value (its iteration in the column name), mean ± std over
    seeds, with the plateau iteration."""
    rows = []
    drawn = {arm: curves(results, regime, arm) for arm in arms}
    last = max((int(c[0][-1]) for c in drawn.values() if c[2]), default=None)
    final = "final" if last is None else f"final ({last})"

    def final_key(arm_last: int) -> str:  # the shared column, unless this arm stopped elsewhere
        return final if arm_last == last else f"final ({arm_last})"

    for arm in arms:
        iters, values, seeds = drawn[arm]
        paper = PAPER_ARMS.get(arm, (None,))[0]
        row: dict[str, Any] = {
            "arm": short_label(arm),
            "paper mIoU": "–" if paper is None else f"{paper:.1f}",
        }
        if not seeds:
            rows.append(
                {**row, "seeds": 0, f"at {EARLY}": "–", "plateau at": NOT_RUN_YET}
                | dict.fromkeys(("at plateau", "best", final), "–")
            )
            continue
        early = values[:, list(iters).index(EARLY)] if EARLY in iters else np.array([])
        i = plateau_index(values)
        if values.shape[1] == 1:
            where, at_plateau = "no curve (final only)", "–"
        elif i is None:
            where, at_plateau = "needs 2 seeds", "–"
        else:
            reached = i < values.shape[1] - 1
            where = f"{iters[i]}" + ("" if reached else " (not reached)")
            at_plateau = claims.fmt(values[:, i])
        rows.append(
            {
                **row,
                "seeds": len(seeds),
                f"at {EARLY}": claims.fmt(early),
                "plateau at": where,
                "at plateau": at_plateau,
                "best": claims.fmt(values.max(axis=1)),
                final_key(int(iters[-1])): claims.fmt(values[:, -1]),
            }
        )
    return rows


def verdict_rows(results: dict[str, Any], regime: str = "pretrained") -> list[dict[str, Any]]:
    """Each end-point claim judged by amendment 5's rule at 500 iterations and at the plateau (one
    Holm family per end point), and whether the two verdicts differ.

    Columns: source, claim, paper; ``d at 500 [95% CI]`` and ``d at plateau [95% CI]`` (the mean
    paired difference in the paper's direction, its interval and the number of paired seeds; the
    plateau cell names its iteration and says "not reached" when that is the last evaluation);
    ``verdict at 500``, ``verdict at plateau``; ``plateau iteration`` (int or "–"); ``differs``;
    and, reported beside the protocol's two verdicts (read-out note of 2026-11-29), the same rule on
    the final models: ``d at final [95% CI]``, ``rule at final`` (its own Holm family).
    A claim whose arm has no run reads "not run yet"; one whose runs were not evaluated at 500
    reads "not evaluated at 500".
    """
    early = claims.paired_verdict_rows(results, regime, at=EARLY, claim_keys=ENDPOINT_CLAIMS)
    late = claims.paired_verdict_rows(
        results,
        regime,
        at=lambda c: claim_plateau(results, regime, c),
        claim_keys=ENDPOINT_CLAIMS,
    )
    final = claims.paired_verdict_rows(results, regime, at=None, claim_keys=ENDPOINT_CLAIMS)
    by_arm = results["by_arm"].get(regime, {})
    by_key = {c.key: c for c in claims.CLAIMS}
    rows = []
    for e, p, f in zip(early, late, final):
        claim = by_key[e["key"]]
        run = bool(by_arm.get(claim.a)) and bool(by_arm.get(claim.b))
        it = p["iteration"]
        if not run:
            early_verdict = late_verdict = NOT_RUN_YET
        else:
            early_verdict = "not evaluated at 500" if e["verdict"] == claims.MISSING else e["verdict"]
            late_verdict = "no plateau yet (needs 2 seeds of both arms)" if it is None else p["verdict"]
        reached = it is not None and it < min(
            last_evaluation(results, regime, claim.a), last_evaluation(results, regime, claim.b)
        )
        where = "" if it is None else f"at {it}{'' if reached else ' (not reached)'}: "
        rows.append(
            {
                "source": e["source"],
                "claim": e["claim"],
                "paper": e["paper"],
                f"d at {EARLY} [95% CI]": claims.interval_text(e),
                f"verdict at {EARLY}": early_verdict,
                "plateau iteration": "–" if it is None else it,
                "d at plateau [95% CI]": "–" if it is None else where + claims.interval_text(p),
                "verdict at plateau": late_verdict,
                "differs": "–"
                if it is None or not run
                else ("yes" if e["outcome"] != p["outcome"] else "no"),
                "d at final [95% CI]": claims.interval_text(f) if run else "–",
                "rule at final": (f["verdict"] if run else NOT_RUN_YET),
            }
        )
    return rows


#: The mechanism beside the verdicts: what each of the paper's premises looks like in our runs.
MECHANISM_METRICS: dict[str, str] = {
    "norm_correlation.pearson_log": "row norm vs log pixel count (Pearson)",
    "bias_correlation.pearson": "bias vs log pixel count (Pearson)",
    "group_cosine.within": "cosine within confusable groups",
    "group_cosine.between": "cosine between groups",
    "class_separability": "CS (Eq. 8)",
    "rare_third_IoU": "rare-third IoU",
    "confusable_IoU": "confusable-group IoU",
    "f1_rarest_group": "F1 of the rarest frequency group",
    "posthoc.delta.mIoU": "post-hoc equalisation Δ mIoU",
    "posthoc.delta.rare_third_IoU": "post-hoc equalisation Δ rare-third IoU",
}


def mechanism_rows(
    results: dict[str, Any], arms: tuple[str, ...] = ENDPOINT_ARMS, regime: str = "pretrained"
) -> list[dict[str, Any]]:
    """One row per arm with the final run's mechanism measurements (mean ± std over seeds); "–"
    where a measurement does not apply: a classifier whose rows all have one norm (frozen CBP, EMA
    re-equalised) has no norm-frequency correlation to speak of (the float noise of equal norms is
    not shown), one without bias none for the bias, and post-hoc equalisation is measured on
    learnable classifiers only."""
    rows = []
    for arm in arms:
        recs = results["by_arm"].get(regime, {}).get(arm, [])
        row: dict[str, Any] = {"arm": short_label(arm), "seeds": len(recs)}
        equal_norms = bool(recs) and all(_equal_norms(r) for r in recs)
        for key, label in MECHANISM_METRICS.items():
            if equal_norms and key == "norm_correlation.pearson_log":
                row[label] = "– (equal norms)"
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                row[label] = claims.fmt(claims.values(results, regime, arm, key))
        rows.append(row)
    return rows


def _equal_norms(rec: dict[str, Any], tol: float = 1e-4) -> bool:
    """Whether every row of the run's final classifier has the same norm (within ``tol``)."""
    norms = rec.get("metrics", {}).get("prototype_norms") or []
    return bool(norms) and max(norms) - min(norms) <= tol


def count_line(results: dict[str, Any], regime: str = "pretrained") -> str:
    """``"9 of 21 end-point runs recorded (Table 3: 9 of 12; Table 4: 0 of 9)"``."""
    have = {a: len(results["by_arm"].get(regime, {}).get(a, [])) for a in ENDPOINT_ARMS}
    t3 = sum(have[a] for a in TABLE3_ARMS)
    t4 = sum(have[a] for a in ENDPOINT_ARMS if a not in TABLE3_ARMS)
    seeds = len(PROFILES["endpoints"].seeds)
    n3, n4 = seeds * len(TABLE3_ARMS), seeds * (len(ENDPOINT_ARMS) - len(TABLE3_ARMS))
    return f"{t3 + t4} of {n3 + n4} end-point runs recorded (Table 3: {t3} of {n3}; Table 4 variants: {t4} of {n4})"


def tuning_rows(tune_results: dict[str, Any]) -> list[dict[str, Any]]:
    """Amendment 5's tuning budget (profile ``tune``): one row per tuning run in the order of
    :data:`~cbp.experiments.study.TUNE_ARMS`, its setting, its mIoU on the tuning set's validation
    split (never the verdict set's) and whether :data:`~cbp.experiments.study.TUNED` chose it."""
    rows = []
    for t in TUNE_ARMS:
        rec = tune_results["runs"].get(f"pretrained-{t.name}-s0")
        chosen = TUNED.get(t.arm) or {}
        picked = t.head_lr_mult == chosen.get("head_lr_mult") and t.length in (None, chosen.get("length"))
        rows.append(
            {
                "tuned arm": arm_label(t.arm),
                "setting": t.setting,
                "tuning mIoU": "not run" if rec is None else f"{rec['metrics']['mIoU']:.2f}",
                "iterations": "–" if rec is None else rec["config"]["train"]["iters"],
                "chosen": "yes" if picked else "",
            }
        )
    return rows


#: The steps of the paper's argument (Sections 3.1 and 4.3) as measurements on our runs: (step, what
#: is measured, arm a, arm b or "" for a one-arm quantity, metric). The argument needs each > 0.
PREMISES: tuple[tuple[str, str, str, str, str], ...] = (
    (
        "1. a learnable classifier's norms grow with class frequency",
        "row norm vs log pixel count, Pearson (paper: 0.27)",
        "linear",
        "",
        "norm_correlation.pearson_log",
    ),
    (
        "1'. ... or its bias does",
        "bias vs log pixel count, Pearson",
        "linear",
        "",
        "bias_correlation.pearson",
    ),
    (
        "2. that prior costs accuracy: equal norms, no bias would be better",
        "post-hoc equalisation of the baseline, Δ mIoU",
        "linear",
        "",
        "posthoc.delta.mIoU",
    ),
    (
        "2'. ... above all for rare classes",
        "post-hoc equalisation of the baseline, Δ rare-third IoU",
        "linear",
        "",
        "posthoc.delta.rare_third_IoU",
    ),
    (
        "3. confusable classes get similar learnable rows",
        "baseline: cosine within groups − between groups",
        "linear",
        "",
        "group_cosine.within-between",
    ),
    (
        "4. frozen equal-norm, orthogonal rows help rare classes",
        "+CBP − baseline, rare-third IoU",
        "cbp",
        "linear",
        "rare_third_IoU",
    ),
    (
        "5. ... and confusable classes",
        "+CBP − baseline, confusable-group IoU",
        "cbp",
        "linear",
        "confusable_IoU",
    ),
)


def _premise_values(results: dict[str, Any], regime: str, arm: str, metric: str) -> dict[int, float]:
    out = {}
    for r in results["by_arm"].get(regime, {}).get(arm, []):
        if metric == "group_cosine.within-between":
            v = claims.value(r, "group_cosine.within") - claims.value(r, "group_cosine.between")
        else:
            v = claims.value(r, metric)
        if math.isfinite(v):
            out[r["seed"]] = v
    return out


def premise_rows(results: dict[str, Any], regime: str = "pretrained") -> list[dict[str, Any]]:
    """Each step of the paper's argument measured on the final runs: per-seed values (a difference
    of two arms is paired by seed), their mean ± std, and whether the seed mean has the sign the
    argument needs ("yes" / "no"; "–" when not measured). A description, not a claim test: with
    3 seeds it says in which step the argument breaks here, if it breaks."""
    rows = []
    for step, measured, a, b, metric in PREMISES:
        va = _premise_values(results, regime, a, metric)
        vb = _premise_values(results, regime, b, metric) if b else dict.fromkeys(va, 0.0)
        seeds = sorted(set(va) & set(vb))
        d = np.array([va[s] - vb[s] for s in seeds], dtype=np.float64)
        rows.append(
            {
                "step of the argument": step,
                "measured (final runs)": measured,
                "ours": claims.fmt(d),
                "seeds": len(seeds),
                "as the argument needs": "–" if d.size == 0 else ("yes" if d.mean() > 0 else "no"),
            }
        )
    return rows


def profile_runs(results: dict[str, Any], profile: str) -> tuple[list[str], list[str]]:
    """The training runs a profile plans, in the runner's order, split into (recorded, not recorded);
    a run is recorded when a record has its regime, arm and seed."""
    by_arm = results["by_arm"]
    have = {
        (regime, arm, r["seed"]) for regime in by_arm for arm, recs in by_arm[regime].items() for r in recs
    }
    planned = [r for r in plan("ablations", profile) if r.kind == "train"]
    done = [r.name for r in planned if (r.regime, r.arm, r.seed) in have]
    return done, [r.name for r in planned if (r.regime, r.arm, r.seed) not in have]


def progress_text(results: dict[str, Any], profile: str, count: str | None = None) -> str:
    """What a chapter prints above a profile's tables: ``count`` (default ``"K of N runs recorded"``),
    then, while runs are missing, their names (only when some are recorded: otherwise that is the
    whole plan) and the command that runs and resumes them."""
    have, todo = profile_runs(results, profile)
    lines = [count or f"{len(have)} of {len(have) + len(todo)} runs recorded"]
    if todo and have:
        lines.append(
            textwrap.fill(f"not recorded yet ({len(todo)}): {', '.join(todo)}", 88, break_on_hyphens=False)
        )
    if todo:
        lines.append(
            f"they run (and resume) with:\n  python -m cbp.experiments run ablations --profile {profile} --jobs 1"
        )
    return "\n".join(lines)


def missing_runs(results: dict[str, Any]) -> list[str]:
    """Run names of the end points (arm x seed) with no record yet, e.g. ``["pretrained-ema-s1"]``."""
    return profile_runs(results, "endpoints")[1]


def final_verdict_rows(results: dict[str, Any], regime: str = "pretrained") -> list[dict[str, Any]]:
    """Table 3's claims judged by amendment 5's rule on the final models only (for a profile without
    periodic evaluation, e.g. ``hard150``), one Holm family."""
    keys = tuple(c.key for c in claims.CLAIMS if c.source == "Table 3" and c.key in ENDPOINT_CLAIMS)
    rows = claims.paired_verdict_rows(results, regime, claim_keys=keys)
    return [
        {
            "claim": r["claim"],
            "paper": r["paper"],
            "d [95% CI]": claims.interval_text(r),
            "verdict": NOT_RUN_YET if r["verdict"] == claims.MISSING else r["verdict"],
        }
        for r in rows
    ]
