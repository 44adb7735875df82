"""Amendment 5's read-out: the plateau rule, values at an evaluation, the tie rule and the verdicts
at two end points, against hand-computed cases."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from records import train_record, write_records

from cbp.experiments import claims, endpoints, study

ITERS = [500, 1000, 1500, 2000]


def _curve_record(arm: str, seed: int, miou: list[float], regime: str = "pretrained") -> dict:
    analysis = {"norm_correlation": {"pearson_log": -0.5 + 0.1 * seed}, "rare_third_IoU": miou[-1] - 3}
    return train_record(
        arm, seed, miou[-1], regime=regime, iters=ITERS[-1], analysis=analysis, curve=list(zip(ITERS, miou))
    )


def _results(tmp_path: Path, records: list[dict]) -> dict:
    return claims.load_results(write_records(tmp_path, records))


def _loop_plateau(values: np.ndarray) -> int:
    """The protocol's sentence, evaluation by evaluation: the first t after which no later
    evaluation of the seed mean improves by more than the seed std at t."""
    S, T = values.shape
    for t in range(T):
        m_t = sum(values[s, t] for s in range(S)) / S
        sd_t = math.sqrt(sum((values[s, t] - m_t) ** 2 for s in range(S)) / (S - 1))
        if all(sum(values[s, u] for s in range(S)) / S - m_t <= sd_t for u in range(t + 1, T)):
            return t
    raise AssertionError


def test_plateau_by_hand() -> None:
    # seed means 50, 60, 60.8, 60.9 with seed std 1 everywhere: after 1000 nothing improves by > 1
    v = np.array([[49, 59, 59.8, 59.9], [50, 60, 60.8, 60.9], [51, 61, 61.8, 61.9]], dtype=float)
    assert endpoints.plateau_index(v) == 1
    v[:, 3] += 0.5  # 61.4 - 60 > 1: the plateau moves to 1500 (61.4 - 60.8 <= 1)
    assert endpoints.plateau_index(v) == 2
    # still rising by more than the std at the end: the last evaluation, i.e. not reached
    rising = np.array([[10, 20, 30, 40], [11, 21, 31, 41]], dtype=float)
    assert endpoints.plateau_index(rising) == 3
    assert endpoints.plateau_index(rising[:1]) is None  # one seed: no std, no plateau


def test_plateau_matches_a_loop_version_on_random_curves() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        S, T = int(rng.integers(2, 5)), int(rng.integers(1, 12))
        v = np.cumsum(rng.normal(0.5, 1.0, size=(S, T)), axis=1)
        assert endpoints.plateau_index(v) == _loop_plateau(v)


def test_value_at_reads_the_curve_and_the_final_value(tmp_path: Path) -> None:
    rec = _curve_record("linear", 0, [10.0, 20.0, 30.0, 40.0])
    assert claims.value_at(rec, "mIoU", 1000) == 20.0
    assert claims.value_at(rec, "mIoU", None) == 40.0 == claims.value_at(rec, "mIoU", 2000)
    assert math.isnan(claims.value_at(rec, "mIoU", 750))  # never evaluated there
    assert math.isnan(claims.value_at(rec, "confusable_IoU", 1000))  # not in the curve


def _tie_claim() -> claims.Claim:
    return next(c for c in claims.CLAIMS if c.key == "t3_cbp")


def test_tie_rule_needs_the_whole_interval_inside_the_margin() -> None:
    tie = _tie_claim()
    tight = claims.paired_test(np.array([0.1, 0.15, 0.05]))  # interval about [-0.02, 0.22]
    assert claims.paired_verdict(tie, tight, p_holm=0.2).startswith(claims.HOLDS)
    wide = claims.paired_test(np.array([0.1, 1.5, -1.2]))
    assert claims.paired_verdict(tie, wide, p_holm=0.9) == claims.NOT_RESOLVED
    gain = claims.paired_test(np.array([2.0, 2.1, 1.9]))
    assert claims.paired_verdict(tie, gain, p_holm=0.001) == claims.FAILS + " (significant gain; paper: tie)"
    loss = claims.paired_test(np.array([-2.0, -2.1, -1.9]))
    assert claims.paired_verdict(tie, loss, p_holm=0.001) == claims.FAILS + " (significant loss; paper: tie)"
    # a "diff" claim with a significant gain holds (the tie rule is not applied to it)
    diff = next(c for c in claims.CLAIMS if c.key == "t3_both")
    assert claims.paired_verdict(diff, gain, p_holm=0.001) == claims.HOLDS


def test_verdicts_at_500_and_at_the_plateau_can_differ(tmp_path: Path) -> None:
    # CBP + OCCL starts 5 points ahead of the baseline at 500; both end at the same level, the
    # baseline a little later. Seed effects are shared by the arms (paired).
    recs = []
    for s in range(3):
        e = 0.3 * s
        recs.append(_curve_record("linear", s, [40 + e, 55 + e, 60 + e, 60.1 + e]))
        recs.append(_curve_record("cbp_occl", s, [45 + e + 0.01 * s, 58 + e, 60 + e, 60.1 + e + 0.01 * s]))
        recs.append(_curve_record("cbp", s, [45 + e + 0.02 * s, 58 + e, 60 + e, 60.1 + e]))
    results = _results(tmp_path, recs)
    assert endpoints.plateau(results, "pretrained", "linear") == 1500
    assert endpoints.plateau(results, "pretrained", "cbp_occl") == 1500
    rows = {r["claim"]: r for r in endpoints.verdict_rows(results)}
    both = rows["CBP + OCCL beats baseline"]
    assert both["verdict at 500"] == claims.HOLDS
    assert both["plateau iteration"] == 1500
    assert both["differs"] == "yes" and both["verdict at plateau"] != claims.HOLDS
    # the final models: paired differences 0, 0.01, 0.02 -> mean +0.01, not significant
    assert both["d at final [95% CI]"].startswith("+0.01 [") and both["rule at final"] == claims.NOT_RESOLVED
    # +CBP alone: a clear gain at 500 contradicts the paper's tie; at the plateau the paired
    # differences are exactly 0, so no interval, and the tie is not resolved
    cbp = rows["+CBP alone ≈ baseline"]
    assert cbp["verdict at 500"] == claims.FAILS + " (significant gain; paper: tie)"
    # Table 4's variants have no run: missing at both end points, no plateau
    ema = rows["frozen beats EMA"]
    assert ema["verdict at 500"] == endpoints.NOT_RUN_YET and ema["differs"] == "–"


def test_holm_family_is_per_end_point(tmp_path: Path) -> None:
    recs = []
    for s in range(3):
        recs.append(_curve_record("linear", s, [40 + s, 50 + s, 55 + s, 56 + s]))
        recs.append(_curve_record("cbp_occl", s, [41 + s + 0.1 * s, 50.5 + s, 55 + s, 56 + s + 0.2 * s]))
    results = _results(tmp_path, recs)
    at500 = claims.paired_verdict_rows(results, at=500, claim_keys=endpoints.ENDPOINT_CLAIMS)
    tested = [r for r in at500 if not math.isnan(r["p"])]
    # two claims have both arms (CBP + OCCL vs baseline, in mIoU and mAcc): Holm multiplies the
    # smaller p by 2 and keeps the order
    assert len(tested) == 2
    lo, hi = sorted(tested, key=lambda r: r["p"])
    assert lo["p_holm"] == pytest.approx(min(1.0, 2 * lo["p"]))
    assert hi["p_holm"] == pytest.approx(max(lo["p_holm"], hi["p"]))


def test_endpoint_rows_report_best_final_and_plateau(tmp_path: Path) -> None:
    recs = [_curve_record("linear", s, [40 + s, 62 + s, 61 + s, 61.5 + s]) for s in range(3)] + [
        _curve_record("cbp", 0, [45, 50, 55, 60])
    ]
    results = _results(tmp_path, recs)
    rows = {r["arm"]: r for r in endpoints.endpoint_rows(results, arms=("linear", "cbp", "ema"))}
    lin = rows["baseline"]
    assert lin["best"] == claims.fmt(np.array([62.0, 63.0, 64.0]))  # each seed's highest evaluation
    assert lin["final (2000)"] == claims.fmt(np.array([61.5, 62.5, 63.5]))
    assert lin["plateau at"] == "1000" and lin["at 500"] == claims.fmt(np.array([40.0, 41.0, 42.0]))
    assert rows["+CBP"]["plateau at"] == "needs 2 seeds"
    assert rows["EMA"]["seeds"] == 0


def test_mechanism_rows_average_over_seeds(tmp_path: Path) -> None:
    recs = [_curve_record("linear", s, [40, 50, 55, 60 + s]) for s in range(3)]
    results = _results(tmp_path, recs)
    row = endpoints.mechanism_rows(results, arms=("linear",))[0]
    assert row["row norm vs log pixel count (Pearson)"] == claims.fmt(np.array([-0.5, -0.4, -0.3]))
    assert row["rare-third IoU"] == claims.fmt(np.array([57.0, 58.0, 59.0]))
    assert row["bias vs log pixel count (Pearson)"] == "–"  # not in these records


def test_premise_rows_pair_arms_by_seed(tmp_path: Path) -> None:
    recs = []
    for s in range(3):
        lin = _curve_record("linear", s, [40, 50, 55, 60])
        lin["analysis"] |= {
            "group_cosine": {"within": 0.5 + 0.1 * s, "between": 0.2},
            "confusable_IoU": 70.0 + s,
        }
        lin["posthoc_equalisation"] = {"delta": {"mIoU": -0.5, "rare_third_IoU": 1.0 * s}}
        cbp = _curve_record("cbp", s, [40, 50, 55, 60])
        cbp["analysis"] |= {"confusable_IoU": 69.0 + 2 * s}
        recs += [lin, cbp]
    rows = {r["step of the argument"][:2]: r for r in endpoints.premise_rows(_results(tmp_path, recs))}
    assert (
        rows["1."]["ours"] == claims.fmt(np.array([-0.5, -0.4, -0.3]))
        and rows["1."]["as the argument needs"] == "no"
    )
    assert rows["2."]["as the argument needs"] == "no" and rows["2'"]["as the argument needs"] == "yes"
    assert rows["3."]["ours"] == claims.fmt(np.array([0.3, 0.4, 0.5]))
    # confusable IoU, +CBP - baseline per seed: -1, 0, +1
    assert rows["5."]["ours"] == claims.fmt(np.array([-1.0, 0.0, 1.0])) and rows["5."]["seeds"] == 3
    assert rows["1'"]["as the argument needs"] == "–"  # no bias correlation recorded


def test_tuning_rows_mark_the_committed_choice() -> None:
    folder = Path(__file__).resolve().parents[1] / "results" / "ablations-v2-tune"
    rows = endpoints.tuning_rows(claims.load_results(folder))
    assert len(rows) == 8
    chosen = [r for r in rows if r["chosen"]]
    assert len(chosen) == 2 and {r["tuned arm"] for r in chosen} == {r["tuned arm"] for r in rows}
    from cbp.experiments.study import TUNED

    lin = next(r for r in chosen if r["tuned arm"].startswith("baseline"))
    assert lin["setting"] == f"head lr x{TUNED['linear']['head_lr_mult']}"
    both = next(r for r in chosen if not r["tuned arm"].startswith("baseline"))
    assert (
        both["setting"] == f"T = {TUNED['cbp_occl']['length']}, head lr x{TUNED['cbp_occl']['head_lr_mult']}"
    )


def test_runs_without_a_curve_count_with_their_final_value(tmp_path: Path) -> None:
    recs = []
    for s in range(2):
        r = _curve_record("linear", s, [40, 50, 55, 60 + s])
        del r["curve"]  # e.g. the quick profile: no periodic evaluation
        recs.append(r)
    results = _results(tmp_path, recs)
    iters, values, seeds = endpoints.curves(results, "pretrained", "linear")
    assert list(iters) == [2000] and values.tolist() == [[60.0], [61.0]] and seeds == [0, 1]
    row = endpoints.endpoint_rows(results, arms=("linear",))[0]
    assert row["final (2000)"] == claims.fmt(np.array([60.0, 61.0])) and row["at 500"] == "–"
    assert row["plateau at"] == "no curve (final only)" and row["at plateau"] == "–"


def test_missing_runs_and_final_verdicts(tmp_path: Path) -> None:
    recs = [_curve_record("linear", s, [40, 50, 55, 60 + s]) for s in range(3)]
    recs += [_curve_record("cbp_occl", s, [40, 50, 55, 62 + s + 0.1 * s]) for s in range(3)]
    results = _results(tmp_path, recs)
    missing = endpoints.missing_runs(results)
    assert len(missing) == 21 - 6 and "pretrained-ema-s1" in missing and "pretrained-linear-s0" not in missing
    rows = {r["claim"]: r for r in endpoints.final_verdict_rows(results)}
    assert len(rows) == 5  # Table 3's claims
    assert rows["CBP + OCCL beats baseline"]["verdict"] == claims.HOLDS
    assert rows["+OCCL beats baseline"]["verdict"] == endpoints.NOT_RUN_YET


def test_plateau_uses_the_std_at_t_not_at_later_evaluations() -> None:
    # means 50, 52, 53; std at 0 is 3 (so 53 - 50 <= 3: plateau at 0), but if the rule used the std
    # of the later evaluation (0) it would have to move on
    v = np.array([[47.0, 52.0, 53.0], [53.0, 52.0, 53.0]])  # std(t=0) = 4.24, later stds 0
    assert endpoints.plateau_index(v) == 0
    v = np.array([[50.0, 51.0, 53.0], [50.0, 53.0, 53.0]])  # std(t=0) = 0: 53 - 50 > 0; t=1: std 1.41
    assert endpoints.plateau_index(v) == 1


def test_pairs_are_matched_by_seed_not_by_position(tmp_path: Path) -> None:
    recs = [_curve_record("linear", s, [40, 50, 55, 60 + 10 * s]) for s in (0, 1, 2)]
    recs += [_curve_record("cbp_occl", s, [40, 50, 55, 61 + 10 * s + 0.1 * s]) for s in (1, 2)]
    results = _results(tmp_path, recs)
    d = claims.paired_differences(results, "pretrained", "cbp_occl", "linear")
    np.testing.assert_allclose(d, [1.1, 1.2])  # seeds 1 and 2; by position it would be 11.1, 11.2


def test_holm_families_are_separate_per_end_point(tmp_path: Path) -> None:
    recs = []
    for s in range(3):
        lin = _curve_record("linear", s, [40 + s, 50 + s, 55 + s, 55.2 + s])
        both = _curve_record("cbp_occl", s, [42 + 1.3 * s, 50.5 + 1.1 * s, 55.5 + 1.2 * s, 55.8 + 1.1 * s])
        for rec, gap in ((lin, 5.0), (both, 7.0 + 0.9 * s)):  # mAcc differences differ from mIoU's
            for row in rec["curve"]:
                row["mAcc"] = row["mIoU"] + gap
            rec["metrics"]["mAcc"] = rec["curve"][-1]["mAcc"]
        recs += [lin, both]
    results = _results(tmp_path, recs)
    for at in (500, lambda c: endpoints.claim_plateau(results, "pretrained", c)):
        rows = claims.paired_verdict_rows(results, at=at, claim_keys=endpoints.ENDPOINT_CLAIMS)
        tested = sorted((r for r in rows if not math.isnan(r["p"])), key=lambda r: r["p"])
        assert len(tested) == 2 and tested[0]["p"] != tested[1]["p"]
        # Holm over this end point's two tests only: the smaller p doubled, the larger kept (monotone)
        assert tested[0]["p_holm"] == pytest.approx(min(1.0, 2 * tested[0]["p"]))
        assert tested[1]["p_holm"] == pytest.approx(max(tested[0]["p_holm"], tested[1]["p"]))


def test_a_plateau_at_the_last_evaluation_is_marked_not_reached(tmp_path: Path) -> None:
    recs = []
    for s in range(3):
        recs.append(_curve_record("linear", s, [40 + s, 45 + s, 50 + s, 60 + s]))  # still rising
        recs.append(_curve_record("cbp_occl", s, [41 + s, 46 + s + 0.1 * s, 51 + s, 61 + s + 0.2 * s]))
    rows = {r["claim"]: r for r in endpoints.verdict_rows(_results(tmp_path, recs))}
    cell = rows["CBP + OCCL beats baseline"]["d at plateau [95% CI]"]
    assert cell.startswith("at 2000 (not reached): ") and cell.endswith("3 seeds")


def test_seeds_evaluated_on_other_grids_are_refused(tmp_path: Path) -> None:
    a, b = _curve_record("linear", 0, [40, 50, 55, 60]), _curve_record("linear", 1, [40, 50, 55, 60])
    b["curve"] = b["curve"][1:]  # seed 1 lacks the 500 evaluation
    with pytest.raises(ValueError, match="other iterations"):
        endpoints.curves(_results(tmp_path, [a, b]), "pretrained", "linear")


def test_progress_text_lists_missing_runs_and_the_resume_command(tmp_path: Path) -> None:
    planned = [r.name for r in study.plan("ablations", "endpoints") if r.kind == "train"]
    for sub in "abc":
        (tmp_path / sub).mkdir()
    none = endpoints.progress_text(_results(tmp_path / "a", []), "endpoints", count="C")
    assert none.splitlines()[0] == "C" and "not recorded yet" not in none  # the list would be the plan
    assert none.endswith("python -m cbp.experiments run ablations --profile endpoints --jobs 1")
    some = endpoints.progress_text(
        _results(tmp_path / "b", [_curve_record("linear", 1, [40, 50])]), "endpoints", count="C"
    )
    listed = " ".join(some.split("not recorded yet (")[1].split("they run")[0].split())
    assert listed.startswith(f"{len(planned) - 1}): ") and "pretrained-linear-s1" not in listed
    assert listed.split("): ")[1].split(", ") == [n for n in planned if n != "pretrained-linear-s1"]
    every = [
        _curve_record(arm, s, [40, 50])
        for arm in study.ENDPOINT_ARMS
        for s in study.PROFILES["endpoints"].seeds
    ]
    assert endpoints.progress_text(_results(tmp_path / "c", every), "endpoints", count="C") == "C"
    assert (
        endpoints.progress_text(_results(tmp_path / "c", every), "endpoints")
        == f"{len(planned)} of {len(planned)} runs recorded"
    )
