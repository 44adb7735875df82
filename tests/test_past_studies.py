"""The history appendix's reading of the superseded studies: arms per seed, and the current claims re-read."""

from __future__ import annotations

import numpy as np
import pytest
from records import train_record

from cbp.book import current_study, past_studies
from cbp.experiments import study, verdicts


def frame(recs: list[dict]):
    return verdicts.frame([verdicts.Record.from_json(r) for r in recs])


def test_arm_table_is_mean_and_std_per_regime_and_arm() -> None:
    recs = [train_record("category_printed", 0, 40.0)]  # a reading outside the current study, one seed
    recs += [train_record("cbp", s, v) for s, v in enumerate([28.0, 29.0])]
    recs += [train_record("linear", s, v) for s, v in enumerate([30.0, 31.0, 35.0])]
    recs += [train_record("cbp_occl", s, v, regime="scratch") for s, v in enumerate([20.0, 22.0])]
    table = past_studies.arm_table(frame(recs))
    # regime by name, then the current study's arms in its order (linear before cbp), then the others
    assert table.arm.tolist() == [
        "baseline (learnable + bias)", "+CBP", study.arm_label("category_printed"),
        "CBP + OCCL (frozen, orthogonal + equal, T = 2)",
    ]  # fmt: skip
    assert table.regime.tolist() == ["pretrained"] * 3 + ["scratch"]
    base = table.set_index(["regime", "arm"]).loc[("pretrained", "baseline (learnable + bias)")]
    assert base.seeds == 3 and base.mIoU == f"{32.0:.2f} ± {np.std([30, 31, 35], ddof=1):.2f}"
    assert base["mIoU per seed"] == "30.00, 31.00, 35.00" and base.mAcc.startswith("37.00 ± ")
    assert table.mIoU.tolist()[2:] == ["40.00", "21.00 ± 1.41"]  # one seed: no std


def test_judge_recorded_tests_only_the_claims_both_arms_ran_one_family_per_table_and_regime() -> None:
    recs = []
    for s in range(3):
        recs += [train_record("linear", s, 30.0 + s), train_record("cbp_occl", s, 31.0 + s + 0.1 * s)]
        recs += [train_record("linear_occl", s, 30.5 + s + 0.3 * s), train_record("cbp", s, 29.0 + s * 1.5)]
        recs += [train_record("linear", s, 50.0 + s, regime="scratch")]
        recs += [train_record("cbp_occl", s, 52.0 + s - 0.2 * s, regime="scratch")]
        recs += [train_record("ema", s, 40.0 + s, regime="scratch")]  # no partner for T4 in "pretrained"
    df = frame(recs)
    out = verdicts.judge_recorded(df)
    pre, scr = (out[out.regime == r].set_index("key") for r in ("pretrained", "scratch"))
    assert set(pre.index) == {"t3_cbp", "t3_occl", "t3_both", "t3_adds", "m_f1_base", "m_rare_base"}
    assert set(scr.index) == {"t3_both", "t4_ema", "m_f1_base", "m_rare_base"}
    # each regime's T3 family is Holm-corrected on its own: the pretrained one over its 4 claims
    t3 = pre.loc[["t3_cbp", "t3_occl", "t3_both", "t3_adds"]]
    assert t3.p_holm.tolist() == pytest.approx(verdicts.holm(t3.p.tolist()))
    assert (t3.p_holm > t3.p).any()  # the correction bites
    assert scr.loc["t3_both", "p_holm"] == pytest.approx(scr.loc["t3_both", "p"])  # alone in its family
    d = verdicts.pairs(df[df.regime == "scratch"], "cbp_occl", "linear")[0]
    assert scr.loc["t3_both", "mean"] == pytest.approx(d.mean()) and d.tolist() == pytest.approx(
        [2.0, 1.8, 1.6]
    )
    assert verdicts.judge_recorded(frame([train_record("linear", 0, 1.0)])).empty


def test_the_table_command_re_reads_a_superseded_profile(tmp_path, capsys) -> None:
    from records import write_records

    from cbp.experiments.__main__ import main

    recs = [train_record("linear", s, 30.0 + s) for s in range(3)]
    recs += [train_record("cbp_occl", s, 33.0 + s + 0.1 * s) for s in range(3)]
    write_records(tmp_path / "ablations-v2-endpoints", recs)
    assert main(["table", "ablations", "--profile", "endpoints", "--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if "CBP + OCCL > baseline" in ln)
    assert line.split()[0] == "pretrained" and "+3.10" in line and line.rstrip().endswith("holds")
    write_records(tmp_path / "ablations-v2-hard150", recs[:3])  # one arm only
    assert main(["table", "ablations", "--profile", "hard150", "--results", str(tmp_path)]) == 0
    assert "no claim's two arms are recorded" in capsys.readouterr().out


def test_the_verdict_table_shows_a_dash_for_a_claim_without_records() -> None:
    recs = [train_record("linear", s, 30.0 + s) for s in range(2)]
    recs += [train_record("cbp_occl", s, 31.0 + s) for s in range(2)]
    out = verdicts.holm_intervals(verdicts.compare(frame(recs)))
    table = current_study.verdict_table(out).set_index("claim")
    assert table.loc["frozen > EMA", "mean"] == "–" and table.loc["frozen > EMA", "verdict"] == "no record"
    assert table.loc["CBP + OCCL > baseline", "mean"] == "+1.00"
