"""The run directory under faults: logs cut back to the checkpoint on every start, a lock, two
checkpoints, a set-up that writes nothing until it succeeded, which config changes a resume accepts.

Runs are tiny (tests/tiny_run.py): cnn_tiny on a 12-class synthetic set of 32x32 images.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tiny_run import make_tiny_synthetic, tiny_args

import cbp.engine.train as train
from cbp.engine import checkpoint


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_synthetic(tmp_path_factory.mktemp("data") / "syn12")


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


class Crash(Exception):
    """Stands for a kill: raised inside the loop, it skips every save."""


def crash_at(monkeypatch: pytest.MonkeyPatch, iteration: int) -> None:
    """Make the run die at the start of ``iteration`` (1-based), after iteration - 1 was logged."""
    real = train.set_lr

    def set_lr(optimizer, it, total, cfg):
        if it == iteration - 1:
            raise Crash(f"killed in iteration {iteration}")
        return real(optimizer, it, total, cfg)

    monkeypatch.setattr(train, "set_lr", set_lr)


EVERY = ("--train.iters=8", "--train.log_every=1", "--train.ckpt_every=4", "--train.eval_every=1")


@pytest.fixture(scope="module")
def straight(synth: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("straight") / "run"
    train.main(tiny_args(synth, run, *EVERY))
    return run


@pytest.mark.parametrize("crash", [6, 3])  # after the checkpoint of iteration 4; before the first one
def test_resume_cuts_logs_back_to_the_checkpoint(
    synth: Path, straight: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, crash: int
) -> None:
    run = tmp_path / "run"
    crash_at(monkeypatch, crash)
    with pytest.raises(Crash):
        train.main(tiny_args(synth, run, *EVERY))
    assert [r["iter"] for r in rows(run / "log.jsonl")] == list(range(1, crash))  # logged past the checkpoint
    assert [r["iter"] for r in rows(run / "eval.jsonl")] == list(range(1, crash))
    monkeypatch.undo()
    train.main(tiny_args(synth, run, *EVERY))
    log, want = rows(run / "log.jsonl"), rows(straight / "log.jsonl")
    assert [r["iter"] for r in log] == list(range(1, 9))  # each iteration once
    assert [r["loss"] for r in log] == [r["loss"] for r in want]
    ev, want_ev = rows(run / "eval.jsonl"), rows(straight / "eval.jsonl")
    assert [r["iter"] for r in ev] == list(range(1, 8))  # the last evaluation is metrics.json
    assert ev == want_ev
    a = checkpoint.load(straight / "ckpt_last.pt")["model"]
    b = checkpoint.load(run / "ckpt_last.pt")["model"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
