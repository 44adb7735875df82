"""Amendment 5's other tables (profile ``tables``): the paired rule per table, one Holm family each,
against hand-computed cases, and the run bookkeeping against the plan."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.stats
from records import train_record, write_records

from cbp.experiments import claims, other_tables, study

TUNED = {"linear": {"head_lr_mult": 10}, "cbp_occl": {"length": 2, "head_lr_mult": 30}}


def _results(tmp_path: Path, values: dict[str, list[float]], analysis=None) -> dict:
    """Records of ``{arm: [mIoU by seed]}``; ``analysis(arm, seed, miou)`` gives each one's analysis."""
    recs = [
        train_record(arm, seed, v, analysis=analysis(arm, seed, v) if analysis else None)
        for arm, vs in values.items()
        for seed, v in enumerate(vs)
    ]
    return claims.load_results(write_records(tmp_path, recs))


def test_lengths_read_as_ties_against_t2_with_one_holm_family(tmp_path: Path) -> None:
    base = [80.0, 81.0, 79.5]
    res = _results(
        tmp_path,
        {
            "cbp_occl": base,
            "length1": [b - 2.0 + e for b, e in zip(base, (0.1, -0.1, 0.05))],  # clearly lower
            "length3": [b + e for b, e in zip(base, (0.1, -0.1, 0.05))],  # the same within ±0.5
            "length4": [b + e for b, e in zip(base, (1.5, -1.0, 0.5))],  # wide: not resolved
        },
    )
    rows = {r["claim"]: r for r in other_tables.verdict_rows(res, "9")}
    assert rows["T = 1 vs T = 2"]["verdict"] == other_tables.LOWER
    assert rows["T = 3 vs T = 2"]["verdict"] == other_tables.SAME
    assert rows["T = 4 vs T = 2"]["verdict"] == claims.NOT_RESOLVED
    assert rows["T = 5 vs T = 2"]["verdict"] == other_tables.NOT_RECORDED
    # the interval is the t interval of the paired differences (length1 - cbp_occl), by hand
    d = np.array([-1.9, -2.1, -1.95])
    half = scipy.stats.t.ppf(0.975, 2) * d.std(ddof=1) / np.sqrt(3)
    assert (
        rows["T = 1 vs T = 2"]["d [95% CI]"]
        == f"{d.mean():+.2f} [{d.mean() - half:+.2f}, {d.mean() + half:+.2f}], 3 seeds"
    )
    # one Holm family of the three tests: length1's p-value is multiplied by 3 (the smallest of three)
    raw = [
        scipy.stats.ttest_1samp(np.array(v) - np.array(base), 0).pvalue
        for v in (
            [b - 2.0 + e for b, e in zip(base, (0.1, -0.1, 0.05))],
            [b + e for b, e in zip(base, (0.1, -0.1, 0.05))],
            [b + e for b, e in zip(base, (1.5, -1.0, 0.5))],
        )
    ]
    got = claims.paired_verdict_rows(res, claims=other_tables.length_claims())
    assert got[0]["p_holm"] == pytest.approx(min(1.0, 3 * min(raw)))


def test_readings_compare_with_their_own_reference(tmp_path: Path) -> None:
    # EMA m = 0.9 is compared with EMA, not with CBP + OCCL: it is 3 points above EMA and 3 below CBP + OCCL
    res = _results(
        tmp_path,
        {"cbp_occl": [80.0, 81.0, 80.5], "ema": [74.0, 75.2, 74.4], "ema_m0.9": [77.1, 78.1, 77.45]},
    )
    rows = {r["claim"]: r for r in other_tables.verdict_rows(res, "R")}
    ema = rows[study.arm_label("ema_m0.9")]
    assert ema["arms"] == "vs EMA" and ema["verdict"] == other_tables.HIGHER
    assert ema["d [95% CI]"].startswith("+3.")
    assert rows[study.arm_label("views_batch")]["verdict"] == other_tables.NOT_RECORDED
    # two processes with image halves against one process with image halves (not the object views)
    assert rows[study.arm_label("ddp2_batch")]["arms"] == "vs views: image halves, 1 process"
    assert rows[study.arm_label("ddp2_global")]["arms"] == "vs 2 processes, views per process"


def test_two_processes_are_compared_with_one_process_of_the_same_views(tmp_path: Path) -> None:
    # views_batch and ddp2_batch equal within ±0.1, both 3 points below CBP + OCCL (object views)
    res = _results(
        tmp_path,
        {
            "cbp_occl": [80.0, 81.0, 80.5],
            "views_batch": [77.0, 78.0, 77.5],
            "ddp2_batch": [77.05, 77.92, 77.51],
        },
    )
    row = next(r for r in other_tables.verdict_rows(res, "R") if r["claim"] == study.arm_label("ddp2_batch"))
    assert row["verdict"] == other_tables.SAME


def test_table5_keeps_the_papers_directions_and_reads_the_analysis_metrics(tmp_path: Path) -> None:
    # the orthogonal-only init 2 points below CBP + OCCL on every seed: "equalisation matters" holds;
    # its rarest-group F1 is 5 points *above* CBP + OCCL's on every seed: Fig. 5's claim does not hold
    def analysis(arm: str, seed: int, miou: float) -> dict:
        f1_rarest = 40.0 + seed * 0.7 + (5.0 + 0.1 * seed if arm == "orthogonal" else 0.0)
        return {"f1_groups": [f1_rarest, 90.0], "rare_third_IoU": miou - 10, "confusable_IoU": miou - 5}

    res = _results(tmp_path, {"cbp_occl": [80.0, 81.0, 80.5], "orthogonal": [78.0, 79.1, 78.4]}, analysis)
    rows = {r["claim"]: r for r in other_tables.verdict_rows(res, "5")}
    assert rows["equalisation matters"]["verdict"] == claims.HOLDS
    f1 = rows["rarest-group F1: CBP+OCCL beats no equalisation"]
    assert f1["verdict"] == claims.FAILS and f1["d [95% CI]"].startswith("-5.10 [")
    assert f1["arms"].endswith("(f1_rarest_group)")
    assert rows["rare classes gain from equalisation (rare-third IoU)"]["verdict"] == claims.HOLDS
    assert rows["masked init hurts"]["verdict"] == other_tables.NOT_RECORDED
    with pytest.raises(ValueError, match="unknown table"):
        other_tables.verdict_rows(res, "4")


def test_count_and_missing_runs_follow_the_plan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(study, "TUNED", TUNED)
    res = _results(tmp_path, {"cbp_occl": [80.0], "linear": [79.0, 78.0]})
    planned = [r.name for r in study.plan("ablations", "tables") if r.kind == "train"]
    missing = other_tables.missing_runs(res)
    assert set(missing) == set(planned) - {
        "pretrained-cbp_occl-s0",
        "pretrained-linear-s0",
        "pretrained-linear-s1",
    }
    assert missing == [n for n in planned if n in missing]  # the runner's order
    assert other_tables.count_line(res).startswith(f"3 of {len(planned)} runs recorded at 2000 iterations")
    rows = {r["arm"]: r for r in other_tables.arm_rows(res)}
    assert rows[study.arm_label("linear")]["CS"] == "–"  # no analysis in these records
    assert (
        rows[study.arm_label("linear")]["seeds"] == 2
        and rows[study.arm_label("linear")]["mIoU"] == "78.50 ± 0.71"
    )


def test_table8_order_needs_every_seed(tmp_path: Path) -> None:
    def analysis(cs: dict[str, list[float]]):
        return lambda arm, seed, miou: {"class_separability": cs[arm][seed]}

    arms = {"linear": [80.0, 80.0], "equal": [80.0, 80.0], "cbp_occl": [80.0, 80.0]}
    holds = _results(
        tmp_path / "a", arms, analysis({"linear": [70, 80], "equal": [6, 7], "cbp_occl": [0, 1e-5]})
    )
    row = other_tables.cs_order_row(holds)
    assert row["verdict"] == claims.HOLDS and row["ours"].startswith("75.0 ± 7.1 > 6.5 ± 0.7 > ")
    # one seed of equal-only above the baseline breaks the order
    fails = _results(
        tmp_path / "b", arms, analysis({"linear": [70, 80], "equal": [6, 90], "cbp_occl": [0, 0]})
    )
    assert other_tables.cs_order_row(fails)["verdict"] == claims.FAILS
    assert other_tables.cs_order_row(_results(tmp_path / "c", {}))["verdict"] == other_tables.NOT_RECORDED


def test_length_claims_name_the_tuned_t(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(other_tables, "TUNED", {"cbp_occl": {"length": 2, "head_lr_mult": 30}})
    assert [c.text for c in other_tables.length_claims()][0] == "T = 1 vs T = 2"
    monkeypatch.setattr(other_tables, "TUNED", {"cbp_occl": {"length": 3, "head_lr_mult": 30}})
    with pytest.raises(ValueError, match="also one of Table 9's arms"):
        other_tables.length_claims()
