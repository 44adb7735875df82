"""Table 4's prototype updates as protocol amendment 5 fixes them, in short training runs of the engine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tiny_run import make_tiny_synthetic, tiny_args

from cbp.engine import train
from cbp.engine.config import ModelConfig


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_synthetic(tmp_path_factory.mktemp("table4") / "syn12")


def _cs(data: Path, out: Path, *extra: str) -> float:
    train.main(tiny_args(data, out, "--train.iters=20", "--train.ckpt_every=100", *extra))
    return json.loads((out / "metrics.json").read_text())["class_separability"]


def test_penalty_weight_default_is_the_amendment_s() -> None:
    assert ModelConfig().penalty_weight == 1.0


def test_penalty_lowers_class_separability_against_plain_gradient(tiny_data: Path, tmp_path: Path) -> None:
    """Same data, init, seeds and schedule; only the update differs. From random rows (CS far from 0)
    the penalty at its default weight must at least halve the CS that plain gradient descent leaves."""
    start = "--model.init=random"
    gradient = _cs(tiny_data, tmp_path / "gradient", start, "--model.update=gradient")
    penalty = _cs(tiny_data, tmp_path / "penalty", start, "--model.update=penalty")
    assert gradient > 0.1  # random rows of 12 classes in a narrow embedding: clearly not orthogonal
    print(f"CS after 20 iterations: gradient {gradient:.4f}, penalty {penalty:.4f}")
    assert penalty < 0.5 * gradient, (penalty, gradient)
