"""Fault injection for the engine: ``python -m cbp.train`` killed (SIGKILL, as ``kill -9``) at a chosen
point, and the scenarios that check a re-run recovers; and three ways a user could lose data (a
training page's ``resume=False`` on a folder that is not a run, ``cbp.evaluate --out`` over a run's
files, a divergence whose advice looped), which must lose nothing. Used by tests/test_faults.py and
benchmarks/faults.py.

As a script, one training process with one fault::

    python tests/fault_driver.py KIND ITER TRAIN_ARGS...

KIND is where the process kills itself in iteration ITER:

* ``step``: at the start of the iteration (after ITER - 1 was logged);
* ``log``: half-way through writing the iteration's line of ``log.jsonl``;
* ``ckpt``: half-way through ``torch.save`` of the iteration's checkpoint (into the temporary file);
* ``rotate``: after ``ckpt_prev.pt`` was made, before the new ``ckpt_last.pt`` is moved into place;
* ``slow``: no kill; every iteration sleeps 0.3 s (a run that is still going when another starts);
* ``none``: no fault.

The process runs :func:`cbp.engine.train.cli`, so its exit code is the command line's.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
KINDS = ("step", "log", "ckpt", "rotate")


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def install(kind: str, iteration: int) -> None:
    """Patch the engine so that this process dies at ``kind`` in ``iteration`` (see the module)."""
    import cbp.engine.checkpoint as checkpoint
    import cbp.engine.train as train

    if kind in ("step", "slow"):
        real_set_lr = train.set_lr

        def set_lr(optimizer, it, total, cfg):
            if kind == "slow":
                time.sleep(0.3)
            elif it == iteration - 1:
                _die()
            return real_set_lr(optimizer, it, total, cfg)

        train.set_lr = set_lr
    elif kind == "log":
        real_append = train.append_jsonl

        def append_jsonl(path, record):
            if Path(path).name == "log.jsonl" and record.get("iter") == iteration:
                line = json.dumps(record) + "\n"
                with open(path, "a") as f:
                    f.write(line[: len(line) // 2])
                    f.flush()
                _die()
            real_append(path, record)

        train.append_jsonl = append_jsonl
    elif kind in ("ckpt", "rotate"):
        real_save, real_keep = torch.save, getattr(checkpoint, "_keep", None)
        saving = {"iter": -1}

        def save(obj, f, *args, **kwargs):
            saving["iter"] = obj.get("iter", -1) if isinstance(obj, dict) else -1
            if kind == "ckpt" and saving["iter"] == iteration:
                buf = io.BytesIO()
                real_save(obj, buf, *args, **kwargs)
                f.write(buf.getvalue()[: len(buf.getvalue()) // 2])
                f.flush()
                os.fsync(f.fileno())
                _die()
            return real_save(obj, f, *args, **kwargs)

        def keep(path, previous):
            real_keep(path, previous)
            if kind == "rotate" and saving["iter"] == iteration:
                _die()

        torch.save = save
        if real_keep is not None:  # engines before ckpt_prev.pt have no _keep
            checkpoint._keep = keep
    elif kind != "none":
        raise SystemExit(f"unknown fault kind {kind!r}; one of {KINDS + ('slow', 'none')}")


# --------------------------------------------------------------------------------------------
# Running and checking


def command(args: list[str], kind: str = "none", iteration: int = 0) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), kind, str(iteration), *args]


def run(
    args: list[str], kind: str = "none", iteration: int = 0, timeout: float = 600
) -> subprocess.CompletedProcess:
    """One training process with one fault; its exit code (-9 when it killed itself) and output."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        command(args, kind, iteration), cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def logged(path: Path) -> list[int]:
    """The iterations recorded in a JSON-lines log (every line must be whole JSON)."""
    if not path.is_file():
        return []
    return [json.loads(line)["iter"] for line in path.read_text().splitlines()]


def same_weights(a: Path, b: Path) -> bool:
    """Whether two runs' ``ckpt_last.pt`` hold bit-identical model weights."""
    wa = torch.load(a / "ckpt_last.pt", weights_only=True)["model"]
    wb = torch.load(b / "ckpt_last.pt", weights_only=True)["model"]
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


@dataclass
class Outcome:
    """What a scenario did and how the run came out of it."""

    name: str
    faults: int  # faults injected
    recovered: bool  # the last command exited 0, weights bit-identical to an uninterrupted run
    lost: int  # iterations missing from log.jsonl / eval.jsonl (or not trained) at the end
    duplicates: int  # iterations logged more than once
    detail: str = ""
    notes: list[str] = field(default_factory=list)
    files_lost: int = 0  # files of the user's or of a run deleted or overwritten

    def line(self) -> str:
        status = "recovered" if self.recovered else "NOT RECOVERED"
        return (
            f"{self.name:60s} faults {self.faults}  {status:13s} iterations lost {self.lost}  "
            f"files lost {self.files_lost}  duplicate log rows {self.duplicates}  {self.detail}"
        )


@dataclass
class Plan:
    """A tiny run (tests/tiny_run.py) with every iteration logged and a checkpoint every 3."""

    data: Path
    iters: int = 16
    ckpt_every: int = 3
    eval_every: int = 2

    def args(self, out: Path) -> list[str]:
        sys.path.insert(0, str(HERE))
        from tiny_run import tiny_args

        return tiny_args(
            self.data,
            out,
            f"--train.iters={self.iters}",
            "--train.log_every=1",
            f"--train.ckpt_every={self.ckpt_every}",
            f"--train.eval_every={self.eval_every}",
        )

    def want_log(self) -> list[int]:
        return list(range(1, self.iters + 1))

    def want_eval(self) -> list[int]:
        return list(range(self.eval_every, self.iters, self.eval_every))  # the last one is metrics.json


def judge(
    name: str, faults: int, plan: Plan, run_dir: Path, reference: Path, last: subprocess.CompletedProcess
) -> Outcome:
    """Compare a run after its faults with the uninterrupted ``reference``."""
    try:
        log, ev = logged(run_dir / "log.jsonl"), logged(run_dir / "eval.jsonl")
    except json.JSONDecodeError as e:
        return Outcome(
            name, faults, False, 0, 0, f"a log holds an unreadable line ({e}); rc {last.returncode}"
        )
    lost = len(set(plan.want_log()) - set(log)) + len(set(plan.want_eval()) - set(ev))
    duplicates = (len(log) - len(set(log))) + (len(ev) - len(set(ev)))
    ok = last.returncode == 0 and (run_dir / "ckpt_last.pt").is_file() and same_weights(run_dir, reference)
    ok = ok and log == plan.want_log() and ev == plan.want_eval()
    detail = "" if last.returncode == 0 else f"last rc {last.returncode}: {last.stderr.strip()[-300:]}"
    return Outcome(name, faults, ok, lost, duplicates, detail)


def random_kills(seed: int, k: int, plan: Plan) -> list[tuple[str, int]]:
    """``k`` kill points at increasing random iterations, every kind at least once when ``k >= 4``
    (``ckpt`` / ``rotate`` at checkpoint iterations, ``rotate`` once a previous checkpoint exists)."""
    rng = random.Random(seed)
    kinds = list(KINDS) + [rng.choice(KINDS) for _ in range(max(0, k - len(KINDS)))]
    rng.shuffle(kinds)
    kinds = kinds[:k]
    points, last = [], 0
    for kind in kinds:
        it = last + 1 + rng.randrange(2)
        while (kind in ("ckpt", "rotate") and it % plan.ckpt_every) or (
            kind == "rotate" and it < 2 * plan.ckpt_every
        ):
            it += 1
        points.append((kind, it))
        last = it
    if last > plan.iters:
        raise ValueError(f"{k} kill points need more than train.iters={plan.iters} iterations: {points}")
    return points


def kill_and_resume(
    plan: Plan, run_dir: Path, reference: Path, points: list[tuple[str, int]], name: str
) -> Outcome:
    """Kill the run at each point in turn (re-running the same command after each), then finish it."""
    args = plan.args(run_dir)
    for kind, it in points:
        r = run(args, kind, it)
        if r.returncode != -signal.SIGKILL:
            return Outcome(
                name,
                len(points),
                False,
                0,
                0,
                f"{kind}@{it}: rc {r.returncode}, not killed: {r.stderr[-300:]}",
            )
    return judge(name, len(points), plan, run_dir, reference, run(args))


def concurrent_starts(plan: Plan, run_dir: Path, reference: Path) -> Outcome:
    """Two processes started at once on one run: one trains, the other exits 2 naming the first's PID."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = plan.args(run_dir)
    procs = [
        subprocess.Popen(
            command(args, "slow"),
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    codes = sorted(p.returncode for p in procs)
    name = "two concurrent starts"
    if codes != [0, 2]:
        return Outcome(name, 1, False, 0, 0, f"exit codes {codes}: {outs[0][1][-200:]} {outs[1][1][-200:]}")
    winner = next(p for p in procs if p.returncode == 0)
    loser_err = outs[[p.returncode for p in procs].index(2)][1]
    outcome = judge(name, 1, plan, run_dir, reference, subprocess.CompletedProcess([], 0, "", ""))
    if f"process {winner.pid} is training this run" not in loser_err:
        outcome.recovered, outcome.detail = (
            False,
            f"the second did not name PID {winner.pid}: {loser_err[-300:]}",
        )
    else:
        outcome.detail = "second exits 2 naming the first's PID"
    return outcome


def truncated_checkpoint(plan: Plan, run_dir: Path, reference: Path) -> Outcome:
    """``ckpt_last.pt`` cut in half after a kill: the re-run resumes from ``ckpt_prev.pt``, with a warning."""
    args = plan.args(run_dir)
    r = run(args, "step", 2 * plan.ckpt_every + 2)
    last = run_dir / "ckpt_last.pt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    r = run(args)
    outcome = judge("truncated ckpt_last.pt", 1, plan, run_dir, reference, r)
    if "ckpt_last.pt is unreadable" not in r.stderr:
        outcome.recovered, outcome.detail = False, "no warning naming ckpt_last.pt"
    return outcome


def partial_log_line(plan: Plan, run_dir: Path, reference: Path) -> Outcome:
    """A log line cut short (as a full disk leaves it) after a kill: dropped with a warning."""
    args = plan.args(run_dir)
    run(args, "step", plan.ckpt_every + 2)
    with open(run_dir / "log.jsonl", "a") as f:
        f.write('{"iter": 99, "loss": 0.5')
    r = run(args)
    outcome = judge("partial log line", 1, plan, run_dir, reference, r)
    if "partial or unreadable line" not in r.stderr:
        outcome.recovered, outcome.detail = False, "no warning about the partial line"
    return outcome


def full_disk(plan: Plan, mount_point: Path, reference: Path) -> Outcome:
    """The run's disk fills up (a tmpfs with room for two checkpoints but not a third being written):
    exit code 4 and a message saying so; after space is freed, the same command resumes.

    Needs root (mount); the caller skips otherwise. The tmpfs is unmounted at the end.
    """
    mount_point.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=40m", "tmpfs", str(mount_point)], check=True)
    try:
        run_dir = mount_point / "run"
        args = plan.args(run_dir)
        full = run(args)
        name = "disk full (tmpfs 40 MB), then space freed"
        if full.returncode != 4 or "disk full" not in full.stderr:
            return Outcome(
                name, 1, False, 0, 0, f"rc {full.returncode}, stderr: {full.stderr.strip()[-300:]}"
            )
        subprocess.run(["mount", "-o", "remount,size=200m", str(mount_point)], check=True)
        outcome = judge(name, 1, plan, run_dir, reference, run(args))
        said = full.stderr.strip().splitlines()[-1].replace(str(run_dir), "RUN")
        outcome.detail = f"rc 4: {said[:100]}"
        return outcome
    finally:
        subprocess.run(["umount", str(mount_point)], check=False)


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative path -> content)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def files_lost(before: dict[str, bytes], folder: Path) -> int:
    """How many files of ``before`` are gone from ``folder`` or changed."""
    after = snapshot(folder) if folder.is_dir() else {}
    return sum(after.get(name) != content for name, content in before.items())


def folder_not_a_run(plan: Plan, run_dir: Path, reference: Path) -> Outcome:
    """A training page with ``resume=False`` (``launch.train_runs(resume=False)``) given a folder that is
    not a run (a ``config.json`` of no run, a thesis, a sub-folder): refused in one line naming the
    foreign files, nothing deleted, nothing trained."""
    from cbp.book import launch

    (run_dir / "chapters").mkdir(parents=True)
    (run_dir / "config.json").write_text("{}\n")
    (run_dir / "thesis.txt").write_text("keep\n")
    (run_dir / "chapters" / "1.txt").write_text("keep\n")
    before = snapshot(run_dir)
    spec = launch.RunSpec(
        iters=2, out_dir=str(run_dir), data_root=str(plan.data), batch_size=4, eval_points=0
    )
    name = "resume=False on a folder that is not a run"
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            launch.train_runs(spec, baseline=False, resume=False, root=ROOT)
        said = "not refused"
    except (launch.RunDirConflict, launch.RunFailed) as e:
        said = str(e)
    lost = files_lost(before, run_dir)
    ok = not lost and said.startswith(
        f"{run_dir} holds files the engine does not write (chapters/, thesis.txt)"
    )
    return Outcome(name, 1, ok, 0, 0, said.replace(str(run_dir), "DIR")[:100], files_lost=lost)


def evaluate_over_run_files(plan: Plan, run_dir: Path, reference: Path) -> Outcome:
    """``cbp.evaluate --out`` naming a run's checkpoint, its config.json and (the run given by
    ``--config`` / ``--ckpt``) its metrics.json: each refused with exit code 2, the run unchanged."""
    shutil.copytree(reference, run_dir)
    before = snapshot(run_dir)
    by_config = ["--config", str(run_dir / "config.json"), "--ckpt", str(run_dir / "ckpt_last.pt")]
    attempts = [
        [str(run_dir), "--out", str(run_dir / "ckpt_last.pt")],
        [str(run_dir), "--out", str(run_dir / "config.json")],
        [*by_config, "--out", str(run_dir / "metrics.json")],
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    codes = [
        subprocess.run(
            [sys.executable, "-m", "cbp.evaluate", *a, "--train.progress=false"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            timeout=600,
        ).returncode
        for a in attempts
    ]
    lost = files_lost(before, run_dir)
    ok = codes == [2] * len(attempts) and not lost
    name = "cbp.evaluate --out over a run's ckpt, config, metrics"
    return Outcome(name, len(attempts), ok, 0, 0, f"exit codes {codes}", files_lost=lost)


def divergence_advice(plan: Plan, run_dir: Path, reference: Path) -> Outcome:
    """``--optim.lr=1e3`` (no warm-up) diverges (exit code 3); re-running with the advised lower lr must
    train to the end, each iteration logged once (the weights differ from the reference: another lr)."""
    args = [*plan.args(run_dir), "--optim.warmup_iters=0"]
    first = run([*args, "--optim.lr=1e3"])
    last = run([*args, "--optim.lr=1e-3"])
    log, ev = logged(run_dir / "log.jsonl"), logged(run_dir / "eval.jsonl")
    lost = len(set(plan.want_log()) - set(log)) + len(set(plan.want_eval()) - set(ev))
    duplicates = (len(log) - len(set(log))) + (len(ev) - len(set(ev)))
    ok = first.returncode == 3 and last.returncode == 0 and log == plan.want_log() and ev == plan.want_eval()
    said = (first.stderr.strip().splitlines() or [""])[-1].split("error: ", 1)[-1]
    detail = f"rc {first.returncode} then {last.returncode}: {said.replace(str(run_dir), 'RUN')[:80]}"
    return Outcome("divergence (lr 1e3), then the advised lower lr", 1, ok, lost, duplicates, detail)


def reference_run(plan: Plan, run_dir: Path) -> Path:
    r = run(plan.args(run_dir))
    if r.returncode != 0:
        raise RuntimeError(f"the uninterrupted reference run failed: {r.stderr[-1000:]}")
    return run_dir


def can_mount() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0 and sys.platform.startswith("linux")


SCENARIOS: dict[str, Callable[..., Outcome]] = {
    "concurrent": concurrent_starts,
    "truncated": truncated_checkpoint,
    "partial": partial_log_line,
    "not a run": folder_not_a_run,
    "evaluate --out": evaluate_over_run_files,
    "divergence": divergence_advice,
}


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))  # the engine of the checkout this file is in
    kind_arg, iter_arg, *train_args = sys.argv[1:]
    install(kind_arg, int(iter_arg))
    from cbp.engine.train import cli

    cli(train_args)
