"""Fault injection (issue 9): kill -9 anywhere, two starts at once, a truncated checkpoint, a partial
log line, a full disk; after each, re-running the same command ends with the weights of an
uninterrupted run, bit for bit, and each iteration once in ``log.jsonl`` and ``eval.jsonl``. And the
data-loss cases of "Trust, second pass": a page's resume=False on a folder that is not a run,
``cbp.evaluate --out`` over a run's files, a divergence re-run as advised; none loses a file.

Every scenario runs real processes (tests/fault_driver.py), so the module is ``slow``; CI runs it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from fault_driver import (
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
from tiny_run import make_tiny_synthetic

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def plan(tmp_path_factory: pytest.TempPathFactory) -> Plan:
    return Plan(make_tiny_synthetic(tmp_path_factory.mktemp("data") / "syn12"))


@pytest.fixture(scope="module")
def reference(plan: Plan, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return reference_run(plan, tmp_path_factory.mktemp("reference") / "run")


def assert_recovered(outcome: Outcome) -> None:
    assert outcome.recovered, outcome.line()
    assert outcome.lost == 0 and outcome.duplicates == 0 and outcome.files_lost == 0, outcome.line()


def test_random_kill_points_cover_every_kind(plan: Plan) -> None:
    for seed in range(20):
        points = random_kills(seed, 4, plan)
        assert {k for k, _ in points} == set(KINDS)
        its = [it for _, it in points]
        assert its == sorted(set(its)) and its[-1] <= plan.iters
        assert all(it % plan.ckpt_every == 0 for k, it in points if k in ("ckpt", "rotate"))


def test_kill_9_at_random_points_then_resume(plan: Plan, reference: Path, tmp_path: Path) -> None:
    points = random_kills(
        0, 4, plan
    )  # mid-iteration, mid-log-line, inside the checkpoint write, between the two
    assert_recovered(kill_and_resume(plan, tmp_path / "run", reference, points, f"kill -9 at {points}"))


def test_two_concurrent_starts(plan: Plan, reference: Path, tmp_path: Path) -> None:
    assert_recovered(concurrent_starts(plan, tmp_path / "run", reference))


def test_truncated_checkpoint(plan: Plan, reference: Path, tmp_path: Path) -> None:
    assert_recovered(truncated_checkpoint(plan, tmp_path / "run", reference))


def test_partial_log_line(plan: Plan, reference: Path, tmp_path: Path) -> None:
    assert_recovered(partial_log_line(plan, tmp_path / "run", reference))


@pytest.mark.skipif(not can_mount(), reason="needs root to mount a small tmpfs")
def test_full_disk(plan: Plan, reference: Path, tmp_path: Path) -> None:
    assert_recovered(full_disk(plan, tmp_path / "disk", reference))


@pytest.mark.parametrize("scenario", [folder_not_a_run, evaluate_over_run_files, divergence_advice])
def test_a_users_mistake_loses_nothing(
    plan: Plan, reference: Path, tmp_path: Path, scenario: Callable[..., Outcome]
) -> None:
    assert_recovered(scenario(plan, tmp_path / "run", reference))
