"""The history appendix's reading of the superseded studies: arms per seed, and the current claims re-read."""

from __future__ import annotations

import numpy as np
import pytest
from records import train_record

from cbp.book import current_study, past_studies
from cbp.experiments import verdicts


def frame(recs: list[dict]):
    return verdicts.frame([verdicts.Record.from_json(r) for r in recs])


def test_arm_table_is_mean_and_std_per_regime_and_arm() -> None:
    recs = [train_record("linear", s, v) for s, v in enumerate([30.0, 31.0, 35.0])]
    recs += [train_record("cbp_occl", s, v, regime="scratch") for s, v in enumerate([20.0, 22.0])]
    recs.append(train_record("views_random", 0, 40.0))  # a reading outside the current study, one seed
    table = past_studies.arm_table(frame(recs)).set_index(["regime", "arm"])
    base = table.loc[("pretrained", "baseline (learnable + bias)")]
    assert base.seeds == 3 and base.mIoU == f"{32.0:.2f} ± {np.std([30, 31, 35], ddof=1):.2f}"
    assert base["mIoU per seed"] == "30.00, 31.00, 35.00" and base.mAcc.startswith("37.00 ± ")
    assert table.loc[("scratch", "CBP + OCCL (frozen, orthogonal + equal, T = 2)"), "mIoU"] == "21.00 ± 1.41"
    one = table.xs("pretrained").iloc[-1]  # the current study's arms first, then the others
    assert one.seeds == 1 and one.mIoU == "40.00"  # one seed: no std


def test_judge_recorded_tests_only_the_claims_both_arms_ran_per_regime() -> None:
    recs = []
    for s in range(3):
        recs += [train_record("linear", s, 30.0 + s), train_record("cbp_occl", s, 31.0 + s + 0.1 * s)]
        recs += [train_record("linear", s, 50.0 + s, regime="scratch")]  # no partner in this regime
    out = verdicts.judge_recorded(frame(recs))
    assert set(out.regime) == {"pretrained"}
    assert set(out.key) == {c.key for c in verdicts.CLAIMS if {c.a, c.b} == {"linear", "cbp_occl"}}
    row = out.set_index("key").loc["t3_both"]
    d = np.array([1.0, 1.1, 1.2])
    assert row.n == 3 and row["mean"] == pytest.approx(d.mean())
    # alone in its family (T3 has one testable claim here), Holm changes nothing
    assert row.p_holm == pytest.approx(row.p)
    assert verdicts.judge_recorded(frame([train_record("linear", 0, 1.0)])).empty


def test_the_verdict_table_shows_a_dash_for_a_claim_without_records() -> None:
    recs = [train_record("linear", s, 30.0 + s) for s in range(2)]
    recs += [train_record("cbp_occl", s, 31.0 + s) for s in range(2)]
    out = verdicts.holm_intervals(verdicts.compare(frame(recs)))
    table = current_study.verdict_table(out).set_index("claim")
    assert table.loc["frozen > EMA", "mean"] == "–" and table.loc["frozen > EMA", "verdict"] == "no record"
    assert table.loc["CBP + OCCL > baseline", "mean"] == "+1.00"
