"""Chapter 7's tables: the current study (:data:`cbp.experiments.current.CURRENT`) read from its records.

Each function returns a DataFrame or a line of text computed from ``results/``; nothing here is typed
from a run. Before a phase of the study has records, its function says so (an empty frame or a
"not run yet" line), so the page reads the same code before and after the runs land.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cbp.book.benchmark import calibration_table
from cbp.experiments import study, verdicts
from cbp.experiments.current import CURRENT, VERDICT_PROFILE
from cbp.paper import PAPER_NORM_CORRELATION


def _records(profile: str, root: str | Path) -> pd.DataFrame:
    """A profile's training records (:func:`cbp.experiments.verdicts.records`; empty before its runs)."""
    return verdicts.records(CURRENT.folders(root)[profile])


def _planned(profile: str) -> int | None:
    """How many training runs a profile plans (None while it does not exist: its values are not fixed)."""
    profiles = study.amendment6_profiles(study.REGIME6, study.TUNED6, study.ITERS6)
    return len(profiles[profile].arm_runs) if profile in profiles else None


def _recorded(profile: str, have: int) -> str:
    """``"N of M runs"``: ``have`` of the runs a profile plans (:func:`_planned`), or "not planned yet"."""
    planned = _planned(profile)
    return "not planned yet" if planned is None else f"{have} of {planned} runs"


def _calibration_records(root: str | Path) -> pd.DataFrame:
    """Every calibration candidate's training records, one frame, with a ``candidate`` column."""
    frames = [_records(f"calib-{name}", root).assign(candidate=name) for name in study.CALIBRATION_CANDIDATES]
    return pd.concat(frames, ignore_index=True)


def phase_rows(root: str | Path = ".") -> pd.DataFrame:
    """The study's phases in order: what each fixes, how many runs it has recorded of how many planned, and
    the hours of training runs recorded (one core each; a resumed run counts from its last start, and the
    data, pretraining and encoder steps are not counted)."""
    cal = calibration_table(Path(root) / "results")
    regime = f"the regime: {study.REGIME6 or 'not fixed yet'}"
    recorded = f"{int(cal.recorded.sum())} of {len(cal)} candidates"
    rows = [("calibration (tuning set)", regime, recorded, _calibration_records(root).seconds.sum() / 3600)]
    tuned = study.TUNED6
    if tuned is not None:
        swap = tuned["cbp_head_lr_mult"] != tuned["head_lr_mult"]
        tuned = f"head lr x{tuned['head_lr_mult']:g}, T = {tuned['length']:g}" + (
            f"; CBP + OCCL's own head lr x{tuned['cbp_head_lr_mult']:g} (lr-swap control)" if swap else ""
        )
    length = None if study.ITERS6 is None else f"{study.ITERS6} iterations"
    for profile, what, fixed in (
        ("a6-tune", "the head lr, T", tuned),
        ("a6-schedule", "the length, the planned sd", length),
        (VERDICT_PROFILE, "the verdicts", None),
    ):
        recs = _records(profile, root)
        done = f": {fixed}" if fixed else ""
        rows.append((profile, what + done, _recorded(profile, len(recs)), recs.seconds.sum() / 3600))
    return pd.DataFrame(rows, columns=["phase", "fixes", "recorded", "hours"])


def claims_frame() -> pd.DataFrame:
    """The claims amendment 6 tests, by Holm family: arms, metric, kind and the paper's number."""
    rows = [(c.family, c.text, f"{c.a} vs {c.b}", c.metric, c.kind, c.paper) for c in verdicts.CLAIMS]
    return pd.DataFrame(rows, columns=["family", "claim", "arms", "metric", "kind", "paper"])


def premise_frame(root: str | Path = ".") -> pd.DataFrame:
    """The paper's premise on every recorded calibration set: the learnable baseline's row norms and bias
    against the log training pixel count of each class (Pearson; the paper reports +0.27 for the norms)."""
    df = _calibration_records(root)
    names = {"norm_r": "norm vs log pixels", "bias_r": "bias vs log pixels"}
    return df[["candidate", "mIoU", *names]].rename(columns=names)


def verdict_records(root: str | Path = ".") -> pd.DataFrame:
    """The verdict runs' records (:func:`cbp.experiments.verdicts.records`; empty before they run)."""
    return _records(VERDICT_PROFILE, root)


def schedule_records(root: str | Path = ".") -> pd.DataFrame:
    """The schedule check's records (``a6-schedule``, the tuning set; empty before they run): the set-up page
    hands the frame to :func:`schedule_frame` and :func:`power_table`, chapter 7 to :func:`verdict_frame`."""
    return _records("a6-schedule", root)


def verdict_frame(df: pd.DataFrame, tuning: pd.DataFrame) -> pd.DataFrame:
    """The verdicts (:func:`cbp.experiments.verdicts.compare` with Holm intervals) of the verdict runs'
    records ``df`` (:func:`verdict_records`), with the planned sds of the schedule-check records ``tuning``
    (:func:`schedule_records`) once they exist; empty before any verdict run."""
    if df.empty:
        return pd.DataFrame()
    claims = verdicts.planned_claims()
    planned = verdicts.planned_sds(tuning, claims) if len(tuning) else None
    return verdicts.holm_intervals(verdicts.compare(df, claims, planned_sd=planned))


def verdict_table(out: pd.DataFrame) -> pd.DataFrame:
    """:func:`verdict_frame` as the page shows it: one row per claim, numbers rounded, verdict in words."""

    def num(x: float, spec: str = "+.2f") -> str:
        return "–" if not np.isfinite(x) else format(x, spec)

    def interval(lo: float, hi: float) -> str:
        return "–" if not np.isfinite(lo) else f"[{lo:+.2f}, {hi:+.2f}]"

    return pd.DataFrame(
        {
            "family": out.family,
            "claim": out.text,
            "paper": out.paper,
            "seeds": out.n,
            "mean": out["mean"].map(num),
            "95% CI (unadjusted)": [interval(a, b) for a, b in zip(out.lo, out.hi)],
            "Holm interval": [interval(a, b) for a, b in zip(out.lo_holm, out.hi_holm)],
            "verdict": [v.value for v in out.verdict],
            "smallest resolvable": out.planned_effect.map(lambda x: num(x, ".2f")),
        }
    )


def reading(out: pd.DataFrame) -> str:
    """Chapter 7's reading of the verdicts in a few bullets, computed from :func:`verdict_frame`: how many of
    the planned seed pairs are recorded, then per Holm family what holds, what does not and what is not
    resolved, each "not resolved" beside the smallest effect the design resolves at its recorded pairs.
    An interval is the one the verdict uses: Holm's for a difference and for a tie that does not hold,
    the unadjusted 95 % one for a tie that holds (inside ± :data:`~cbp.experiments.verdicts.TIE_MARGIN`).

    Args:
        out: :func:`verdict_frame` (one row per claim, with ``lo_holm``, ``hi_holm``, ``planned_effect``).

    Returns:
        Markdown bullets.
    """
    have, want = int(out.n.sum()), int(out.planned.sum())
    state = "all of them: final" if have == want else "provisional until every pair is recorded"
    bullets = [f"* **{have} of {want} planned seed pairs** are recorded ({state})."]
    V = verdicts.Verdict

    def words(r: tuple, v: verdicts.Verdict) -> str:
        if v is V.NOT_RESOLVED:
            effect = f"; resolvable: {r.planned_effect:.2f}" if np.isfinite(r.planned_effect) else ""
            return f"{r.text} ({r.mean:+.2f} on {r.n} seed{'s' * (r.n != 1)}{effect})"
        # the interval the verdict uses: a tie that holds, its 95 % one; otherwise Holm's
        lo, hi = (r.lo, r.hi) if r.kind == "tie" and v is V.HOLDS else (r.lo_holm, r.hi_holm)
        return f"{r.text} ({r.mean:+.2f} [{lo:+.2f}, {hi:+.2f}], {r.n} seeds)"

    for family, fam in out.groupby("family", sort=False):
        parts = [
            f"{v.value}: " + "; ".join(words(r, v) for r in fam[fam.verdict == v].itertuples())
            for v in (V.HOLDS, V.DOES_NOT_HOLD, V.NOT_RESOLVED)
            if (fam.verdict == v).any()
        ]
        missing = fam[fam.verdict == V.NO_RECORD].text.tolist()
        parts += [f"no pair yet: {', '.join(missing)}"] if missing else []
        bullets.append(f"* **{family}**: " + "; ".join(parts) + ".")
    return "\n".join(bullets)


def cpu_line(runs: pd.DataFrame, out: pd.DataFrame) -> str:
    """Which CPU models the verdicts rest on (amendment 6, item 7), one line per class of models whose runs
    pair (:data:`cbp.experiments.verdicts.ALIKE`), and the pairs left out for mixing two classes.

    Args:
        runs: :func:`verdict_records`.
        out: :func:`verdict_frame` of them.
    """
    counts = runs.cpu_model.value_counts()
    classes: dict[str, list[str]] = {}
    for m, n in counts.items():
        classes.setdefault(verdicts.cpu_class(m), []).append(f"{m} ({n} run{'s' * (n != 1)})")
    head = f"The verdicts rest on runs of {len(counts)} CPU model{'s' * (len(counts) != 1)}"
    if len(classes) < len(counts):
        head += (
            f" in {len(classes)} classes; runs pair only within a class (where a class holds two models, "
            "a record re-made on one equals the other's bit for bit)"
        )
    lines = [f"{head}:", *(f"- {' and '.join(ms)}" for ms in classes.values())]
    mixed = [f"{c} (seeds {', '.join(map(str, s))})" for c, s in zip(out.text, out.mixed) if len(s)]
    if mixed:
        lines.append(f"\nPairs left out for running on two classes of models: {'; '.join(mixed)}.")
    return "\n".join(lines)


def pending_line(profile: str, root: str | Path = ".") -> str:
    """What a phase without records is waiting for: the values it needs, or its runs (with the command)."""
    needs = {"a6-tune": "the regime", "a6-schedule": "the tuned values", VERDICT_PROFILE: "the schedule"}
    if _planned(profile) is None:
        return f"{profile}: not planned yet ({needs[profile]} is fixed first)"
    return (
        f"{profile}: {_recorded(profile, len(_records(profile, root)))} recorded; they run (and resume) with "
        f"`python -m cbp.experiments run ablations --profile {profile} --jobs 2`"
    )


def tuning_frame(root: str | Path = ".") -> pd.DataFrame:
    """The equal tuning budget (``a6-tune``) as the page shows it: per setting in the budget's order, the
    side tuned (baseline or CBP + OCCL), the setting, its final mIoU, mAcc and rarest-group F1 on the
    tuning set, and, once every setting has a record, ``chosen`` ("yes" on the values
    :func:`cbp.experiments.verdicts.tuned_values` picks). Empty before any record."""
    df = _records("a6-tune", root)
    tried = df.arm.map({t.name: t for t in study.TUNE_ARMS})  # each record's TuneRun
    side = {"linear": "baseline", "cbp_occl": "CBP + OCCL"}
    out = pd.DataFrame(
        {
            "tuned": tried.map(lambda t: side[t.arm]),
            "setting": tried.map(lambda t: t.setting),
            "mIoU": df.mIoU,
            "mAcc": df.mAcc,
            "rarest-group F1": df.f1_rarest_group,
        }
    )
    if len(df) == len(study.TUNE_ARMS):
        won = verdicts.tuned_values(df)  # (head lr, T) of each side; the baseline has no T
        picked = {"linear": (won["head_lr_mult"], None), "cbp_occl": (won["cbp_head_lr_mult"], won["length"])}
        out["chosen"] = ["yes" if (t.head_lr_mult, t.length) == picked[t.arm] else "" for t in tried]
    return out.iloc[tried.map(study.TUNE_ARMS.index).argsort()].reset_index(drop=True)  # the budget's order


def tuning_sentence(root: str | Path = ".") -> str:
    """What the tuning budget chose and why, in one sentence computed from the ``a6-tune`` records."""
    table = tuning_frame(root)
    if "chosen" not in table:
        return f"The tuning budget has {_recorded('a6-tune', len(table))} recorded; nothing is chosen yet."
    parts = []
    for side in ("baseline", "CBP + OCCL"):
        rows = table[table.tuned == side]
        won, best = rows[rows.chosen == "yes"].iloc[0], rows.loc[rows.mIoU.idxmax()]
        gap = f"{best.setting} was {best.mIoU - won.mIoU:.2f} higher, within 0.5: the paper's value"
        why = "the best" if won.setting == best.setting else gap
        parts.append(f"{side} {won.setting} ({won.mIoU:.2f} mIoU; {why})")
    return f"The tuning budget chose, for the {parts[0]}, and for {parts[1]}."


def schedule_frame(df: pd.DataFrame) -> pd.DataFrame:
    """The schedule check (item 3) on the ``a6-schedule`` records ``df`` (:func:`schedule_records`): per
    Table 3 arm, the seed-mean gain over the last quarter against the seed std
    (:func:`cbp.experiments.verdicts.schedule_check`; empty before)."""
    return verdicts.schedule_check(df) if len(df) else pd.DataFrame()


def schedule_sentence(check: pd.DataFrame) -> str:
    """The schedule check's outcome (``check``, :func:`schedule_frame`) in one sentence (item 3), or how
    many of its runs are recorded."""
    try:
        iters = verdicts.schedule_length(check)
    except (ValueError, AttributeError):  # a run of the check is missing (all of them: no columns)
        done = int(check.seeds.sum()) if len(check) else 0
        return f"The schedule check has {_recorded('a6-schedule', done)} recorded."
    slow = check[~check.long_enough].arm.tolist()
    why = "every arm's seed mean gained less than its seed std over the last quarter"
    if slow:
        why = f"not {why} ({', '.join(slow)} did not)"
    return f"The schedule check fixes the read-out at {iters} iterations: {why}."


def power_table(df: pd.DataFrame) -> pd.DataFrame:
    """The power statement (item 6) from the ``a6-schedule`` records ``df`` (:func:`schedule_records`): per
    claim, the planned pairs, family size, planned sd and smallest resolvable effect
    (:func:`cbp.experiments.verdicts.power_frame`; empty until every run of the check is recorded). The
    lr-swap control's claims appear when the tuned head lrs differ."""
    try:
        verdicts.schedule_length(verdicts.schedule_check(df))
    except (ValueError, AttributeError):  # not every run of the check is recorded: no planned sd yet
        return pd.DataFrame()
    claims = verdicts.planned_claims()
    return verdicts.power_frame(verdicts.planned_sds(df, claims), claims)


def _span(values: pd.Series, fmt: str = "{:.0f}") -> str:
    lo, hi = fmt.format(values.min()), fmt.format(values.max())
    return lo if lo == hi else f"{lo} to {hi}"


def calibration_sentence(root: str | Path = ".") -> str:
    """The calibration's state in one sentence (the README and the intro quote it; a test checks it)."""
    cal = calibration_table(Path(root) / "results")
    done = cal[cal.recorded]
    if study.REGIME6 is not None:
        row = done[done.candidate == study.REGIME6].iloc[0]
        return (
            f"of {len(done)} candidate sets, {study.REGIME6} puts the learnable baseline at {row.mIoU:.1f} mIoU "
            f"with rarest-group F1 {row.f1_rarest_group:.1f}, and is the benchmark"
        )
    return (
        f"{len(done)} candidate sets put the learnable baseline at {_span(done.mIoU)} mIoU with rarest-group "
        f"F1 {_span(done.f1_rarest_group)}; none meets all three targets yet"
    )


def progress_sentence(root: str | Path = ".") -> str:
    """The verdict runs' progress in one sentence (the README and the intro quote it; a test checks it):
    runs recorded of those planned, and seed pairs recorded of those the claims plan."""
    runs = verdict_records(root)
    out = verdicts.compare(runs, verdicts.planned_claims())  # the pairs only: no Holm intervals needed
    have, want = int(out.n.sum()), int(out.planned.sum())
    return (
        f"{len(runs)} of {_planned(VERDICT_PROFILE)} verdict runs are recorded ({have} of {want} planned seed "
        "pairs), and every verdict stays provisional until all are in"
    )


def premise_sentence(root: str | Path = ".") -> str:
    """The paper's premise on the calibration sets, in one sentence (quoted by the README and the intro)."""
    p = premise_frame(root)
    norm, bias = p["norm vs log pixels"], p["bias vs log pixels"]
    sign = "negatively" if (norm < 0).all() else ("positively" if (norm > 0).all() else "with either sign")
    words = _span(norm, "{:+.2f}").replace("-", "\u2212")
    return (
        f"on all {len(p)} calibration sets the learnable baseline's row norms correlate {sign} with class "
        f"frequency (r = {words} against log pixels; the paper: {PAPER_NORM_CORRELATION:+.2f}), its bias "
        f"{'positively' if (bias > 0).all() else 'with either sign'}"
    )


def mechanism_frame(df: pd.DataFrame) -> pd.DataFrame:
    """The mechanism beside the verdicts, per arm (mean ± std over seeds): mIoU, the rare and frequent
    thirds' IoU, the rarest frequency group's F1, and the classifier's row norm vs log pixel count (r).

    Args:
        df: :func:`cbp.experiments.verdicts.records` of the verdict runs.
    """
    cols = {"mIoU": "mIoU", "rare_third_IoU": "rare third IoU", "frequent_third_IoU": "frequent third IoU",
            "f1_rarest_group": "rarest-group F1", "norm_r": "norm vs log pixels (r)"}  # fmt: skip
    rows = []
    for arm, g in df.groupby("arm", sort=False):
        row = {"arm": arm, "seeds": len(g)}
        for col, name in cols.items():
            v = g[col].to_numpy(dtype=np.float64)
            row[name] = f"{np.nanmean(v):.2f} ± {np.nanstd(v, ddof=1):.2f}" if len(v) > 1 else f"{v[0]:.2f}"
        rows.append(row)
    return pd.DataFrame(rows)
