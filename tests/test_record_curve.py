"""A record of a run with ``train.eval_every`` holds its validation curve (amendment 5's end points)."""

from __future__ import annotations

import json
from pathlib import Path

from tiny_run import make_tiny_synthetic, tiny_args

from cbp.engine import train
from cbp.experiments.record import record_train
from cbp.experiments.study import Run


def test_record_holds_the_curve_ending_in_the_final_evaluation(tmp_path: Path) -> None:
    data = make_tiny_synthetic(tmp_path / "syn12")
    out = tmp_path / "run"
    args = tiny_args(data, out, "--train.iters=6", "--train.eval_every=2")
    train.main(args)
    rec = record_train(Run(name="r", kind="train", command=tuple(args), run_dir=str(out)), 1.0)
    metrics = json.loads((out / "metrics.json").read_text())
    evals = [json.loads(line) for line in (out / "eval.jsonl").read_text().splitlines()]
    assert [e["iter"] for e in rec["curve"]] == [2, 4, 6]
    assert rec["curve"][:2] == evals
    assert rec["curve"][-1]["mIoU"] == metrics["mIoU"]
    # without intermediate evaluations there is no curve
    plain = tmp_path / "plain"
    train.main(tiny_args(data, plain, "--train.iters=2"))
    assert "curve" not in record_train(Run(name="p", kind="train", command=(), run_dir=str(plain)), 1.0)
