"""Fault injection against the training engine: how many faults a run survives, and what it loses.

Each scenario trains the tiny run of tests/tiny_run.py (16 iterations, every one logged, a checkpoint
every 3, an evaluation every 2), injects its faults (a process killed with SIGKILL mid-iteration,
half-way through a log line, inside the checkpoint write or between keeping ``ckpt_prev.pt`` and
replacing ``ckpt_last.pt``; two processes started at once; a checkpoint cut in half; a partial log
line; a full disk, as root), re-runs the same command, and compares with an uninterrupted run:
recovered means exit code 0 and bit-identical weights; lost and duplicate count the iterations
missing from, or repeated in, ``log.jsonl`` and ``eval.jsonl``. Three more scenarios are a user's
mistakes that could lose data: a training page's ``resume=False`` on a folder that is not a run,
``cbp.evaluate --out`` over a run's files, and a divergence re-run with the advised lower lr;
recovered means refused (or trained to the end), with no file lost (deleted or overwritten). One
line a scenario, then the total::

    python benchmarks/faults.py [--seed 0] [--kills 4]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # the engine and the tests of this checkout

from fault_driver import (  # noqa: E402 (tests/ is put on the path just above)
    KINDS,
    Outcome,
    Plan,
    can_mount,
    concurrent_starts,
    divergence_advice,
    evaluate_over_run_files,
    folder_not_a_run,
    full_disk,
    kill_and_resume,
    partial_log_line,
    random_kills,
    reference_run,
    truncated_checkpoint,
)
from tiny_run import make_tiny_synthetic  # noqa: E402

WHERE = {
    "step": "mid-iteration",
    "log": "half-way through a log line",
    "ckpt": "inside the checkpoint write",
    "rotate": "between ckpt_prev.pt and ckpt_last.pt",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0, help="seed of the random kill points")
    parser.add_argument("--kills", type=int, default=4, help="kills in a row in the random scenario")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cbp-faults-") as tmp:
        base = Path(tmp)
        plan = Plan(make_tiny_synthetic(base / "syn12"))
        reference = reference_run(plan, base / "reference")
        first = {kind: it for kind, it in random_kills(args.seed, len(KINDS), plan)}
        chain = random_kills(args.seed + 1, args.kills, plan)
        scenarios = [
            *(
                (f"kill -9 {WHERE[kind]} (iteration {it})", kill_and_resume, [(kind, it)])
                for kind, it in sorted(first.items(), key=lambda kv: kv[1])
            ),
            (
                f"kill -9 x{args.kills} in a row ({' '.join(f'{k}@{i}' for k, i in chain)})",
                kill_and_resume,
                chain,
            ),
        ]
        outcomes: list[Outcome] = []
        for i, (name, fn, points) in enumerate(scenarios):
            t0 = time.time()
            outcomes.append(fn(plan, base / f"kill{i}", reference, points, name))
            print(f"{outcomes[-1].line()} ({time.time() - t0:.0f} s)", flush=True)
        others = (
            concurrent_starts,
            truncated_checkpoint,
            partial_log_line,
            folder_not_a_run,
            evaluate_over_run_files,
            divergence_advice,
        )
        for i, fn in enumerate(others):
            t0 = time.time()
            outcomes.append(fn(plan, base / f"other{i}", reference))
            print(f"{outcomes[-1].line()} ({time.time() - t0:.0f} s)", flush=True)
        if can_mount():
            t0 = time.time()
            outcomes.append(full_disk(plan, base / "disk", reference))
            print(f"{outcomes[-1].line()} ({time.time() - t0:.0f} s)", flush=True)
        else:
            print("disk full: skipped (needs root to mount a small tmpfs)", flush=True)
    injected = sum(o.faults for o in outcomes)
    recovered = sum(o.faults for o in outcomes if o.recovered)
    lost = sum(o.lost for o in outcomes)
    files = sum(o.files_lost for o in outcomes)
    duplicates = sum(o.duplicates for o in outcomes)
    print(
        f"faults injected {injected}, recovered {recovered}, iterations lost {lost}, files lost {files}, "
        f"duplicate log rows {duplicates}"
    )
    raise SystemExit(0 if recovered == injected and not lost and not files and not duplicates else 1)


if __name__ == "__main__":
    main()
