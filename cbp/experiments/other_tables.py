"""Amendment 5's other tables (profile ``tables``): Table 5's prototype inits, Table 9's lengths and
table "R"'s readings, each against the arm it changes, at 2000 iterations, read by amendment 5's
paired rule (:func:`cbp.experiments.claims.paired_verdict_rows`) on the final models.

One Holm family per table:

* **Table 5**: the paper's Table 5 claims (equalisation matters, orthogonalisation is a tie, the
  masked init hurts, masked + orthogonal is a tie), with Fig. 5's, Table 6's and Table 7's
  mechanism claims that compare the same inits (rarest-group F1, confusable-group and rare-third
  IoU): the paper's direction, as :data:`~cbp.experiments.claims.CLAIMS` states it.
* **Table 9**: each length ``T`` against the tuned ``T = 2`` (CBP + OCCL), read as a tie: the paper
  reports 34.6-35.3 mIoU over ``T``, a spread of 0.7 points.
* **Table "R"**: each reading against its reference arm, read as a tie ("the reading does not change
  the result"), since the paper states none of them. The two-process run with views per process
  (image halves) is compared with the one-process run with image halves (``views_batch``), so that
  the comparison changes one thing: in generator 2 the default views are the objects ones.
* **Table 8** (CS: learnable > equal only > CBP + OCCL = 0) keeps protocol section 8's order rule,
  every seed (:func:`cs_order_row`).

A tie reads **higher** / **lower** when the Holm-adjusted p < 0.05 (significance is checked first,
as in amendment 5's rule), **same** when its whole 95% interval lies within ±0.5 points, and **not
resolved** otherwise. A run that failed has no record: it reads as not recorded, like one not run.
"""

from __future__ import annotations

from typing import Any

from cbp.experiments import claims
from cbp.experiments.endpoints import profile_runs
from cbp.experiments.study import PROFILES, TABLE9_ARMS, TUNED, arm_label, plan, reading_arms
from cbp.experiments.tables import short_label

#: Table 5's claims and the mechanism claims of Fig. 5 / Tables 6-7 between the same init arms.
TABLE5_CLAIMS: tuple[str, ...] = (
    "t5_equal",
    "t5_ortho",
    "t5_masked",
    "t5_masked_ortho",
    "fig5_noeq",
    "t7_rare",
    "t6_confusable",
)

#: What a tie's verdict says when the paper states no tie (Table 9 beside T = 2, the readings).
SAME, HIGHER, LOWER = "same (within ±0.5)", "higher", "lower"
#: A claim with an arm that has no record: not run yet, still running, or failed (see the runner's log).
NOT_RECORDED = "not recorded yet"


def length_claims() -> list[claims.Claim]:
    """Table 9: ``T = t`` against the tuned ``T`` (CBP + OCCL's, 2), one tie claim per length."""
    tuned = TUNED["cbp_occl"]["length"]
    if f"length{tuned:g}" in TABLE9_ARMS:
        raise ValueError(
            f"the tuned T = {tuned:g} is also one of Table 9's arms {TABLE9_ARMS}: it would be run twice"
        )
    return [
        claims.Claim(
            f"t9_{arm}",
            "Table 9",
            f"T = {arm.removeprefix('length')} vs T = {tuned:g}",
            "34.6–35.3 over T",
            "tie",
            arm,
            "cbp_occl",
        )
        for arm in TABLE9_ARMS
    ]


#: Table R's references in generator 2 where they differ from the arms' ``reference``
#: (which stays as amendment 4 ran it): with the object views as the default, the two-process run with
#: image halves is compared with the one-process run with image halves.
REFERENCE_V2: dict[str, str] = {"ddp2_batch": "views_batch"}


def reading_claims() -> list[claims.Claim]:
    """Table "R": each reading against the arm it changes, one tie claim per reading."""
    return [
        claims.Claim(
            f"r_{a.name}",
            "Table R",
            a.label,
            "– (not in the paper)",
            "tie",
            a.name,
            REFERENCE_V2.get(a.name, a.reference),
        )
        for a in reading_arms()
    ]


def cs_order_row(results: dict[str, Any], regime: str = "pretrained") -> dict[str, Any]:
    """Table 8 on the final models: the class separability (Eq. 8) of the baseline, equal only and CBP
    + OCCL, mean ± std over seeds, and protocol section 8's order rule (every seed: learnable > equal
    only > CBP + OCCL, with CBP + OCCL's CS ~0)."""
    c = next(c for c in claims.CLAIMS if c.key == "t8_cs")
    r = claims.evaluate_claim(c, results, regime)
    verdict = NOT_RECORDED if r["verdict"] == claims.MISSING else r["verdict"]
    return {"claim": c.text, "paper": c.paper, "ours": r["ours"], "verdict": verdict}


def _effect(row: dict[str, Any]) -> str:
    """A tie's verdict in words that do not presume the paper's tie: same / higher / lower (else the
    row's own words, e.g. "not resolved")."""
    if row["outcome"] is claims.Verdict.HOLDS:
        return SAME
    if row["outcome"] is claims.Verdict.DOES_NOT_HOLD:
        return HIGHER if row["mean"] > 0 else LOWER
    return row["verdict"]


def verdict_rows(results: dict[str, Any], table: str, regime: str = "pretrained") -> list[dict[str, Any]]:
    """One table's claims (``"5"``, ``"9"`` or ``"R"``) by the paired rule on the final models, one Holm
    family: claim, the two arms, the paper's figure, ``d [95% CI]`` (paired, first arm minus second:
    every claim of these tables is stated with ``sign = 1``) and the verdict (for Tables 9 and R:
    same / higher / lower / not resolved); ``d`` and ``ci95`` hold the same numbers as floats, for
    figures."""
    if table == "5":
        rows = claims.paired_verdict_rows(results, regime, claim_keys=TABLE5_CLAIMS)
        chosen = {c.key: c for c in claims.CLAIMS}
    elif table in ("9", "R"):
        pool = length_claims() if table == "9" else reading_claims()
        rows = claims.paired_verdict_rows(results, regime, claims=pool)
        chosen = {c.key: c for c in pool}
    else:
        raise ValueError(f"unknown table {table!r}: expected '5', '9' or 'R'")
    out = []
    for r in rows:
        c = chosen[r["key"]]
        verdict = r["verdict"]
        if verdict == claims.MISSING:
            verdict = NOT_RECORDED
        elif table != "5":
            verdict = _effect(r)
        if table == "5":
            arms = f"{short_label(c.a)} vs {short_label(c.b)}" + (
                f" ({c.metric})" if c.metric != "mIoU" else ""
            )
        else:  # the claim names the first arm
            one_process = c.a.startswith("ddp2") and not c.b.startswith("ddp2")
            arms = f"vs {short_label(c.b)}" + (", 1 process" if one_process else "")
        out.append(
            {
                "claim": r["claim"],
                "arms": arms,
                "paper": r["paper"],
                "d [95% CI]": claims.interval_text(r),
                "verdict": verdict,
                "outcome": r["outcome"],
                "tie": r["tie"],
                "d": r["mean"],  # NaN: not recorded
                "ci95": r["ci95"],  # (lo, hi); NaN with < 2 seeds or identical differences
            }
        )
    return out


def arm_rows(results: dict[str, Any], regime: str = "pretrained") -> list[dict[str, Any]]:
    """Every arm of the profile: label, seeds recorded, mIoU, mAcc and CS (Eq. 8), mean ± std over seeds."""
    arms = dict.fromkeys(r.arm for r in plan("ablations", "tables") if r.kind == "train")
    recs = results["by_arm"].get(regime, {})
    return [
        {
            "arm": arm_label(arm),
            "seeds": len(recs.get(arm, [])),
            "mIoU": claims.fmt(claims.values(results, regime, arm, "mIoU")),
            "mAcc": claims.fmt(claims.values(results, regime, arm, "mAcc")),
            "CS": claims.fmt(claims.values(results, regime, arm, "cs"), 1),
        }
        for arm in arms
    ]


def missing_runs(results: dict[str, Any]) -> list[str]:
    """Training runs of the ``tables`` profile with no record yet, in the runner's order."""
    return profile_runs(results, "tables")[1]


def count_line(results: dict[str, Any]) -> str:
    """``"23 of 66 runs recorded at 2000 iterations (3 seeds an arm)"``."""
    have, todo = profile_runs(results, "tables")
    p = PROFILES["tables"]
    return f"{len(have)} of {len(have) + len(todo)} runs recorded at {p.iters} iterations ({len(p.seeds)} seeds an arm)"
