"""The book's study tables (cbp.experiments.tables) from hand-made result records."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from records import train_record, write_records

from cbp.experiments import claims, study, tables
from cbp.experiments.study import reading_arms


def _record(arm: str, seed: int, miou: float, iters: int = 500, regime: str = "pretrained") -> dict:
    return train_record(
        arm, seed, miou, regime=regime, iters=iters,
        commit="abc123", seconds=60.0,
        config={"train": {"iters": iters}, "model": {"backbone": "cnn_tiny"}},
        hardware={"cpu": "x86_64", "cpu_count": 2, "threads_per_run": 1, "torch": "2.14.1", "gpu": None},
        data={"num_classes": 3, "params": {"size": 64, "train": 10, "val": 5, "seed": 0}},
        metrics={"mIoU": miou, "mAcc": miou + 5, "IoU": [miou, None, miou - 1]},
        analysis={"f1_groups": [miou] * 15},
    )  # fmt: skip


def _results(tmp_path: Path, recs: list[dict]) -> dict:
    return claims.load_results(write_records(tmp_path, recs))


def test_reading_rows_compare_each_reading_with_its_reference(tmp_path: Path) -> None:
    recs = []
    for seed, jitter in enumerate((0.0, 0.1, -0.1)):  # std 0.1 in every arm
        recs += [
            _record("cbp_occl", seed, 30 + jitter),
            _record("views_random", seed, 31 + jitter),  # +1.0 > 2s = 0.2: higher
            _record("no_normalize", seed, 29 + jitter),  # -1.0: lower
            _record("class_sum", seed, 30.05 + jitter),  # within noise
            _record("ema", seed, 36 + jitter),
            _record("ema_m0.9", seed, 34 + jitter),  # against ema, not cbp_occl: lower
        ]
    rows = {r["reading"]: r for r in tables.reading_rows(_results(tmp_path, recs))}
    assert len(rows) == len(reading_arms())
    labels = {a.name: a.label for a in reading_arms()}
    assert rows[labels["views_random"]]["verdict"] == tables.HIGHER
    assert rows[labels["views_random"]]["d"] == pytest.approx(1.0)
    assert rows[labels["views_random"]]["2s"] == pytest.approx(0.2)
    assert rows[labels["no_normalize"]]["verdict"] == tables.LOWER
    assert rows[labels["class_sum"]]["verdict"] == claims.NOISE
    assert rows[labels["ema_m0.9"]]["verdict"] == tables.LOWER
    assert rows[labels["ema_m0.9"]]["d"] == pytest.approx(-2.0)
    assert rows[labels["ema_m0.9"]]["reference"] == "36.00 ± 0.10"
    assert (
        rows[labels["penalty_abs"]]["verdict"] == claims.MISSING and rows[labels["penalty_abs"]]["seeds"] == 0
    )
    assert rows[labels["ddp2_batch"]]["compared with"] == "CBP + OCCL, 1 process"
    assert rows[labels["views_random"]]["compared with"] == "CBP + OCCL"
    assert rows[labels["ddp2_global"]]["compared with"] == labels["ddp2_batch"]
    assert rows[labels["no_normalize"]]["override"] == "loss.normalize=false"


def test_ablation_and_schedule_rows(tmp_path: Path) -> None:
    short = [_record("linear", s, 20 + s) for s in range(3)] + [
        _record("cbp_occl", s, 25 + s) for s in range(3)
    ]
    results = _results(tmp_path / "short", short)
    rows = {r["arm"]: r for r in tables.ablation_rows(results, "3")}
    base = rows[study.ARM_LABELS["linear"]]
    assert base["paper mIoU"] == "33.4" and base["paper mAcc"] == "44.4"
    assert base["ours mIoU, pretrained"] == "21.00 ± 1.00" and base["ours mAcc, pretrained"] == "26.00 ± 1.00"
    assert base["seeds (scratch / pretrained)"] == "0 / 3"
    assert rows[study.ARM_LABELS["cbp"]]["ours mIoU, pretrained"] == "–"

    assert tables.schedule_rows(results, {"runs": {}, "by_arm": {}}) == ([], [])
    long = [_record("linear", s, 70 + s, iters=2000) for s in range(2)] + [
        _record("cbp_occl", 0, 64, iters=2000)
    ]
    arms, verdicts = tables.schedule_rows(results, _results(tmp_path / "long", long))
    by_arm = {r["arm"]: r for r in arms}
    assert by_arm[study.ARM_LABELS["linear"]]["ours pretrained, 2000 iters"] == "70.50 ± 0.71"
    assert by_arm[study.ARM_LABELS["cbp_occl"]]["seeds, 2000 iters"] == 1
    headline = next(v for v in verdicts if v["claim"] == "CBP + OCCL beats baseline")
    assert headline["verdict, 500 iters"] == claims.HOLDS
    assert headline["d, 2000 iters"] == pytest.approx(64 - 70.5)


def test_seed_and_occl_rows_pair_seeds(tmp_path: Path) -> None:
    # with OCCL: seeds 0, 1, 2; without: seeds 1, 2, 3 -> pairs (1, 1) and (2, 2) only
    recs = [_record("linear_occl", s, v) for s, v in ((0, 10.0), (1, 15.0), (2, 17.0))]
    recs += [_record("linear", s, v) for s, v in ((1, 20.0), (2, 21.0), (3, 30.0))]
    recs += [_record("cbp", 0, 30.0)]  # frozen CBP without its OCCL arm: no row
    results = _results(tmp_path, recs)
    rows = tables.occl_rows(results)
    assert len(rows) == 1 and rows[0]["classifier"] == "learnable" and rows[0]["regime"] == "pretrained"
    assert rows[0]["OCCL − no OCCL, per seed (mIoU)"] == "s1: -5.00, s2: -4.00"
    verdict, d, s = claims.decide(np.array([10.0, 15.0, 17.0]), np.array([20.0, 21.0, 30.0]))
    assert rows[0]["mean d"] == pytest.approx(d) and rows[0]["verdict (OCCL helps)"] == verdict
    assert rows[0]["2s"] == pytest.approx(2 * s)
    seeds = tables.seed_rows(results, arms=("linear",))
    assert [(r["seed"], r["mIoU"]) for r in seeds] == [(1, 20.0), (2, 21.0), (3, 30.0)]
    assert {r["arm"] for r in seeds} == {"baseline"}


def test_facts_label_and_per_class_means(tmp_path: Path) -> None:
    results = _results(tmp_path, [_record("linear", s, 20 + 2 * s) for s in range(2)])
    facts = tables.study_facts(results, "default")
    assert "SYNTHETIC" in facts["data"] and "[500]" in facts["iterations"] and "[0, 1]" in facts["seeds"]
    assert tables.ours_label(results) == "ours (synthetic, cnn_tiny, 500 iters, CPU, 2 seeds)"
    iou = tables.per_seed(results, "pretrained", "linear", "IoU")
    assert iou.shape == (2, 3) and np.isnan(iou[:, 1]).all()
    np.testing.assert_allclose(tables.class_mean(results, "pretrained", "linear", "IoU", 3), [21, np.nan, 20])
    assert np.isnan(tables.class_mean(results, "scratch", "linear", "IoU", 3)).all()
    assert tables.per_seed(results, "pretrained", "linear", "f1_groups").shape == (2, 15)
