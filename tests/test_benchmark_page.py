"""The synthetic benchmark page's helpers (cbp.book.benchmark) on hand-made calibration records."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

from records import train_record  # noqa: E402

from cbp.book import benchmark  # noqa: E402
from cbp.experiments import study  # noqa: E402


def _write(folder: Path, miou: float, f1: float, rare: float, frequent: float) -> None:
    folder.mkdir(parents=True)
    counts = [1000 - 6 * i for i in range(150)]
    (folder / "data.json").write_text(json.dumps({"kind": "data", "data": {"pixel_counts": counts}}))
    analysis = {"f1_groups": [f1] + [60.0] * 14, "rare_third_IoU": rare, "frequent_third_IoU": frequent}
    rec = train_record("linear_lr10", 0, miou, iters=4000, macc=miou + 10, analysis=analysis)
    (folder / "pretrained-linear_lr10-s0.json").write_text(json.dumps(rec))


def test_calibration_table_in_the_order_judged(tmp_path: Path) -> None:
    _write(benchmark.calibration_folder("c1", tmp_path), 45.0, 35.0, 30.0, 60.0)  # too easy
    _write(benchmark.calibration_folder("c2", tmp_path), 33.0, 28.0, 20.0, 45.0)  # meets every target
    table = benchmark.calibration_table(tmp_path)
    assert table.candidate.tolist() == list(study.CALIBRATION_CANDIDATES)
    assert table.recorded.tolist()[:2] == [True, True] and not table.recorded.iloc[2:].any()
    assert table.meets.tolist()[:2] == [False, True] and table.rare_gap.iloc[1] == 25.0
    shares = benchmark.pixel_shares("c1", tmp_path)
    assert abs(shares.sum() - 1) < 1e-12 and (shares[:-1] >= shares[1:]).all()
    fig = benchmark.plot_calibration(tmp_path, "c2")
    left, right = fig.axes[:2]
    assert len(left.lines) == 2 and len(right.patches) == 15
    labels = [t.get_text() for t in right.get_legend().get_texts()]
    assert any("paper" in x for x in labels) and any("SYNTHETIC" in x for x in labels)
    assert benchmark.plot_calibration(tmp_path / "none") is None
