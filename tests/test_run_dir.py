"""The run directory under faults: logs cut back to the checkpoint on every start, a lock, two
checkpoints, a set-up that writes nothing until it succeeded, which config changes a resume accepts.

Runs are tiny (tests/tiny_run.py): cnn_tiny on a 12-class synthetic set of 32x32 images.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tiny_run import make_tiny_synthetic, tiny_args

import cbp.engine.train as train
from cbp.engine import checkpoint
from cbp.engine.config import ConfigError, get_preset, to_dict
from cbp.engine.run_dir import LOCK_NAME, ResumeRefused, RunLocked, check_resume_config, is_unused, locked
from cbp.io import write_json


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


def test_a_kill_between_a_checkpoint_and_its_evaluation_loses_no_eval_row(
    synth: Path, straight: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The checkpoint of iteration 4 is written, then the process dies before evaluating iteration 4:
    the resumed run evaluates iteration 4 first, so eval.jsonl and the weights equal the straight run's."""
    run = tmp_path / "run"
    real = train.maybe_evaluate

    def dies_at_4(state, **kw):
        if state.iteration == 4 and not kw.get("only_if_missing"):
            raise Crash("killed after the checkpoint of iteration 4, before its evaluation")
        return real(state, **kw)

    monkeypatch.setattr(train, "maybe_evaluate", dies_at_4)
    with pytest.raises(Crash):
        train.main(tiny_args(synth, run, *EVERY))
    assert checkpoint.load(run / "ckpt_last.pt")["iter"] == 4
    assert [r["iter"] for r in rows(run / "eval.jsonl")] == [1, 2, 3]
    monkeypatch.undo()
    train.main(tiny_args(synth, run, *EVERY))
    assert rows(run / "eval.jsonl") == rows(straight / "eval.jsonl")
    a = checkpoint.load(straight / "ckpt_last.pt")["model"]
    b = checkpoint.load(run / "ckpt_last.pt")["model"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)


# --------------------------------------------------------------------------------------------
# Lock


def hold_lock(run: Path, pid: int) -> int:
    """Lock ``run/.lock`` as another process would (flock is per open file) and write ``pid`` in it."""
    run.mkdir(parents=True, exist_ok=True)
    fd = os.open(run / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.write(fd, f"{pid}\n".encode())
    return fd


def test_a_second_process_on_a_locked_run_stops_at_once(synth: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    fd = hold_lock(run, 4242)
    try:
        with pytest.raises(RunLocked, match=r"process 4242 is training this run"):
            train.main(tiny_args(synth, run, "--train.iters=2"))
        assert sorted(p.name for p in run.iterdir()) == [LOCK_NAME]  # nothing written
    finally:
        os.close(fd)  # the holder ends: its lock goes with it, the file stays (stale)
    train.main(tiny_args(synth, run, "--train.iters=2"))
    assert checkpoint.load(run / "ckpt_last.pt")["iter"] == 2
    assert (run / LOCK_NAME).read_text() == f"{os.getpid()}\n"


def test_the_public_lock_refuses_a_second_process(tmp_path: Path) -> None:
    """:func:`cbp.engine.run_dir.locked` (what cbp.book.launch uses): a folder another process holds is
    refused at once with the holder's PID, and taken once that process has ended."""
    run = tmp_path / "run"
    holder = subprocess.Popen(  # the engine's lock, held by another process
        [sys.executable, "-c", "import sys, time; from pathlib import Path; from cbp.engine.run_dir import "
         "locked\nwith locked(Path(sys.argv[1])):\n    print('locked', flush=True); time.sleep(60)", str(run)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert is_unused(run)  # only the lock: a run folder that holds nothing yet
        with pytest.raises(RunLocked, match=f"process {holder.pid} is training this run") as e:
            with locked(run):
                pytest.fail("a locked run folder was entered")
        assert e.value.holder == str(holder.pid) and e.value.out == run
    finally:
        holder.kill()
        holder.wait()
    assert is_unused(tmp_path / "none") and not is_unused(tmp_path)
    with locked(run):  # the holder ended: the kernel released its lock
        assert (run / LOCK_NAME).read_text() == f"{os.getpid()}\n"


def test_a_resume_with_another_config_is_refused_with_the_differences(tmp_path: Path) -> None:
    """:func:`cbp.engine.run_dir.check_resume_config`: run-time and recovery keys may change, any other
    key is refused, and the refusal lists the differing keys (old -> new) and carries all of them."""
    run = tmp_path / "run"
    run.mkdir()
    assert check_resume_config(get_preset("synthetic"), run) == {}  # no config.json: a new run
    old = get_preset("synthetic")
    write_json(to_dict(old), run / "config.json")
    new = get_preset("synthetic")
    new.train.num_workers, new.optim.lr = 0, old.optim.lr / 2  # a run-time key and a recovery key
    assert check_resume_config(new, run) == {
        "train.num_workers": (old.train.num_workers, 0),
        "optim.lr": (old.optim.lr, old.optim.lr / 2),
    }
    new.loss.tau = 0.5
    with pytest.raises(
        ResumeRefused, match=rf"(?s)Differences:\n  loss\.tau: {old.loss.tau!r} \(in config\.json\) -> 0\.5"
    ) as e:
        check_resume_config(new, run)
    assert "train.num_workers" not in str(e.value).split("Differences:")[1]  # only the refused keys listed
    assert e.value.changed == {**check_resume_config(old, run), "train.num_workers": (old.train.num_workers, 0),
                               "optim.lr": (old.optim.lr, old.optim.lr / 2), "loss.tau": (old.loss.tau, 0.5)}  # fmt: skip
    assert isinstance(e.value, ConfigError)  # exit code 2, like any usage error


# --------------------------------------------------------------------------------------------
# A failed set-up writes nothing


@pytest.mark.parametrize("bad", ["--model.backbone=nonsense", "--model.pretrained=/no/such/encoder.pt"])
def test_failed_setup_leaves_nothing_and_the_fixed_command_runs(
    synth: Path, tmp_path: Path, bad: str
) -> None:
    run = tmp_path / "run"
    with pytest.raises(Exception):  # noqa: B017 (the kind of error is the CLI's business, tested there)
        train.main(tiny_args(synth, run, "--train.iters=2", bad))
    assert not run.exists()
    run.mkdir()  # an existing (empty) folder: still nothing but the lock file
    with pytest.raises(Exception):  # noqa: B017
        train.main(tiny_args(synth, run, "--train.iters=2", bad))
    assert [p.name for p in run.iterdir() if p.name != LOCK_NAME] == []
    train.main(tiny_args(synth, run, "--train.iters=2"))
    assert checkpoint.load(run / "ckpt_last.pt")["iter"] == 2


def test_failed_setup_on_an_existing_run_changes_nothing(synth: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    train.main(tiny_args(synth, run, "--train.iters=2"))
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    with pytest.raises(Exception):  # noqa: B017
        train.main(
            tiny_args(synth, run, "--train.iters=4", "--data.root=/no/such/folder", "--data.name=ade20k")
        )
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before


# --------------------------------------------------------------------------------------------
# Partial lines, temporary files, two checkpoints


def test_partial_log_line_and_stale_temp_files_are_cleaned(synth: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    train.main(tiny_args(synth, run, "--train.iters=4"))
    with open(run / "log.jsonl", "a") as f:
        f.write('{"iter": 6, "loss": 1.2')  # a kill (or a full disk) in the middle of a line
    (run / ".ckpt_last.pt.x1y2.tmp").write_bytes(b"half a checkpoint")
    (run / ".config.json.99.tmp").write_text("{")
    with pytest.warns(UserWarning, match=r"log\.jsonl: dropped 1 partial or unreadable line\(s\) \(line 3\)"):
        train.main(tiny_args(synth, run, "--train.iters=6"))
    assert [r["iter"] for r in rows(run / "log.jsonl")] == [2, 4, 6]
    assert not list(run.glob(".*.tmp"))


def test_two_checkpoints_and_fallback_to_the_previous(
    synth: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = ("--train.iters=6", "--train.log_every=1")
    straight = tmp_path / "straight"
    train.main(tiny_args(synth, straight, *args))
    assert checkpoint.load(straight / "ckpt_prev.pt")["iter"] == 4  # the one the last save replaced
    for name in ("ckpt_last.pt", "ckpt_prev.pt"):
        assert stat.S_IMODE((straight / name).stat().st_mode) == 0o644, name

    run = tmp_path / "run"
    crash_at(monkeypatch, 5)  # checkpoints at 2 and 4
    with pytest.raises(Crash):
        train.main(tiny_args(synth, run, *args))
    monkeypatch.undo()
    last = run / "ckpt_last.pt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])  # a truncated ckpt_last.pt
    crash_at(monkeypatch, 5)  # resume from ckpt_prev.pt, save at 4, die again
    with pytest.warns(
        UserWarning, match=r"ckpt_last\.pt is unreadable.*resumes from.*ckpt_prev\.pt \(iteration 2\)"
    ):
        with pytest.raises(Crash):
            train.main(tiny_args(synth, run, *args))
    monkeypatch.undo()
    # the unreadable file was set aside, so the save at 4 did not keep it as ckpt_prev.pt over the
    # good checkpoint of iteration 2: both checkpoints are readable again
    assert (run / "ckpt_last.pt.unreadable").is_file()
    assert checkpoint.load(run / "ckpt_prev.pt")["iter"] == 2
    assert checkpoint.load(run / "ckpt_last.pt")["iter"] == 4
    train.main(tiny_args(synth, run, *args))
    assert [r["iter"] for r in rows(run / "log.jsonl")] == list(range(1, 7))
    a, b = checkpoint.load(straight / "ckpt_last.pt"), checkpoint.load(run / "ckpt_last.pt")
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=0, atol=0, msg=k)


def test_no_readable_checkpoint_is_an_error_naming_both(synth: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    train.main(tiny_args(synth, run, "--train.iters=4"))
    for name in ("ckpt_last.pt", "ckpt_prev.pt"):
        (run / name).write_bytes(b"not a checkpoint")
    log = (run / "log.jsonl").read_bytes()
    with pytest.raises(ValueError, match=r"no usable checkpoint in .*ckpt_last\.pt.*ckpt_prev\.pt"):
        train.main(tiny_args(synth, run, "--train.iters=6"))
    assert (run / "log.jsonl").read_bytes() == log  # nothing cut, nothing started from scratch


# --------------------------------------------------------------------------------------------
# Which config changes a resume accepts


def test_run_time_keys_may_change_on_resume_without_changing_the_weights(
    synth: Path, straight: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "run"
    crash_at(monkeypatch, 6)
    with pytest.raises(Crash):
        train.main(tiny_args(synth, run, *EVERY))
    monkeypatch.undo()
    staged = tmp_path / "staged"  # e.g. the data copied to a per-job folder on a cluster
    shutil.copytree(synth, staged)
    moved = ("--train.log_every=2", "--train.eval_every=2", "--train.ckpt_every=3", "--train.device=cpu")
    train.main(tiny_args(synth, run, *EVERY, f"--data.root={staged}", *moved))
    a = checkpoint.load(straight / "ckpt_last.pt")["model"]
    b = checkpoint.load(run / "ckpt_last.pt")["model"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    assert [r["iter"] for r in rows(run / "log.jsonl")] == [1, 2, 3, 4, 6, 8]
    (change,) = rows(run / "changes.jsonl")
    assert change["iter"] == 4
    assert set(change["changed"]) == {
        "data.root",
        "train.log_every",
        "train.eval_every",
        "train.ckpt_every",
        "train.device",
    }
    assert change["changed"]["data.root"] == [str(synth), str(staged)]
    assert json.loads((run / "config.json").read_text())["data"]["root"] == str(staged)


def test_the_divergence_advice_works_a_lower_lr_resumes(
    synth: Path, straight: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "run"
    real = train.compute_loss
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        loss, terms = real(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 6:  # iteration 6, after the checkpoint of iteration 4
            loss, terms = loss * float("nan"), {**terms, "loss": terms["loss"] * float("nan")}
        return loss, terms

    monkeypatch.setattr(train, "compute_loss", poisoned)
    with pytest.raises(
        train.TrainingDiverged, match=r"Re-run the same command with a lower --optim\.lr \(now 0\.001\)"
    ):
        train.main(tiny_args(synth, run, *EVERY))
    monkeypatch.undo()
    train.main(tiny_args(synth, run, *EVERY, "--optim.lr=0.0005"))  # what the message advises
    log, want = rows(run / "log.jsonl"), rows(straight / "log.jsonl")
    assert [r["iter"] for r in log] == list(range(1, 9))
    assert [r["lr"] for r in log[:4]] == [r["lr"] for r in want[:4]]
    for r, w in zip(log[4:], want[4:]):  # the resumed iterations run at half the learning rate
        assert r["lr"] == pytest.approx(w["lr"] / 2, rel=1e-12)
    assert rows(run / "changes.jsonl") == [{"iter": 4, "changed": {"optim.lr": [0.001, 0.0005]}}]


def test_iters_may_grow_but_never_shrink_below_the_checkpoint(synth: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    train.main(tiny_args(synth, run, "--train.iters=4"))
    config = (run / "config.json").read_bytes()
    with pytest.raises(ConfigError, match=r"train\.iters=2 is below the iteration of .*ckpt_last\.pt \(4\)"):
        train.main(tiny_args(synth, run, "--train.iters=2"))
    assert (run / "config.json").read_bytes() == config  # a refused shrink rewrites nothing
    with pytest.raises(ConfigError, match=r"(?s)only run-time keys.*model\.update: 'frozen'"):
        train.main(tiny_args(synth, run, "--train.iters=6", "--model.update=ema"))
    train.main(tiny_args(synth, run, "--train.iters=6"))
    assert checkpoint.load(run / "ckpt_last.pt")["iter"] == 6
    assert json.loads((run / "config.json").read_text())["train"]["iters"] == 6


# --------------------------------------------------------------------------------------------
# A divergence: only finite checkpoints, and the advised change trains past it


def finite(path: Path) -> bool:
    """Whether every floating-point tensor of a checkpoint's model and optimiser state is finite."""
    ckpt = checkpoint.load(path)
    tensors = [*ckpt["model"].values(), *(t for s in ckpt["optimizer"]["state"].values() for t in s.values())]
    return all(torch.isfinite(t).all() for t in tensors if torch.is_tensor(t) and t.is_floating_point())


DIVERGE = ("--train.iters=12", "--train.log_every=1", "--train.ckpt_every=3", "--optim.warmup_iters=0")


def test_following_the_divergence_advice_trains_past_the_divergence(synth: Path, tmp_path: Path) -> None:
    """lr 1e3: BatchNorm's running_var is infinite after iteration 6, the loss at iteration 7. No
    checkpoint may hold the infinite state, and the advised lower lr must train to the end (it looped)."""
    run = tmp_path / "run"
    with pytest.raises(
        train.TrainingDiverged,
        match=r"non-finite.*ckpt_last\.pt keeps the last good state \(iteration 3\).*--optim\.lr \(now 1000\)",
    ):
        train.main(tiny_args(synth, run, *DIVERGE, "--optim.lr=1e3"))
    saved = [run / name for name in ("ckpt_last.pt", "ckpt_prev.pt") if (run / name).is_file()]
    assert saved and all(finite(p) for p in saved), "a non-finite state was saved as a checkpoint"
    train.main(tiny_args(synth, run, *DIVERGE, "--optim.lr=1e-3"))  # what the message advises
    assert checkpoint.load(run / "ckpt_last.pt")["iter"] == 12 and finite(run / "ckpt_last.pt")
    assert [r["iter"] for r in rows(run / "log.jsonl")] == list(range(1, 13))
    assert rows(run / "changes.jsonl") == [{"iter": 3, "changed": {"optim.lr": [1000.0, 0.001]}}]


def test_a_non_finite_checkpoint_of_an_older_engine_is_passed_over(synth: Path, tmp_path: Path) -> None:
    """A ``ckpt_last.pt`` with an infinite buffer (as engines before this check saved one): the resume
    warns, sets it aside and starts from the finite ``ckpt_prev.pt``."""
    run = tmp_path / "run"
    train.main(tiny_args(synth, run, "--train.iters=6"))  # checkpoints at 4 (prev) and 6 (last)
    ckpt = checkpoint.load(run / "ckpt_last.pt")
    var = next(k for k in ckpt["model"] if k.endswith("running_var"))
    ckpt["model"][var] = torch.full_like(ckpt["model"][var], float("inf"))
    torch.save(ckpt, run / "ckpt_last.pt")
    with pytest.warns(
        UserWarning,
        match=rf"ckpt_last\.pt holds non-finite values \(model\.{var}\).*ckpt_prev\.pt \(iteration 4\)",
    ):
        train.main(tiny_args(synth, run, "--train.iters=8"))
    assert (run / "ckpt_last.pt.nonfinite").is_file()
    assert checkpoint.load(run / "ckpt_last.pt")["iter"] == 8 and finite(run / "ckpt_last.pt")
    assert [r["iter"] for r in rows(run / "log.jsonl")] == [2, 4, 6, 8]


def test_a_divergence_before_the_first_checkpoint_says_there_is_none(
    synth: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = train.compute_loss

    def poisoned(*args, **kwargs):
        loss, terms = real(*args, **kwargs)
        return loss * float("nan"), {**terms, "loss": terms["loss"] * float("nan")}

    monkeypatch.setattr(train, "compute_loss", poisoned)
    with pytest.raises(train.TrainingDiverged) as e:
        train.main(tiny_args(synth, tmp_path / "run", *EVERY))
    message = str(e.value)
    assert "keeps the last good state" not in message and not (tmp_path / "run" / "ckpt_last.pt").exists()
    assert "no checkpoint was written yet" in message and "starts again from iteration 0" in message
