"""Nothing is executed on load: a pickle whose ``__reduce__`` runs a shell command is refused everywhere a
user can hand the engine a torch file (pretrained weights, class embeddings, a checkpoint to resume,
``cbp.evaluate --ckpt``), with a clear error, and the command never runs."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tiny_run import make_tiny_synthetic, tiny_args

from cbp.engine.build import build_model
from cbp.engine.command import parse_args
from cbp.engine.config import get_preset, to_dict
from cbp.io import UnreadableFileError

ROOT = Path(__file__).resolve().parents[1]


class _Payload:
    """Unpickling this calls ``os.system("touch MARKER")``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


def write_malicious(path: Path, marker: Path) -> Path:
    """A torch file that runs ``touch marker`` when unpickled without ``weights_only``."""
    torch.save({"model": {"w": _Payload(marker)}, "iter": 1}, path)
    return path


@pytest.fixture
def evil(tmp_path: Path) -> tuple[Path, Path]:
    marker = tmp_path / "PWNED"
    path = write_malicious(tmp_path / "evil.pt", marker)
    return path, marker


def test_the_payload_really_runs_code_when_unpickled(evil: tuple[Path, Path]) -> None:
    """The fixture is a real attack: the unsafe load runs the command (so the other tests can fail)."""
    path, marker = evil
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_pretrained_and_embeddings_files_are_refused(evil: tuple[Path, Path]) -> None:
    path, marker = evil
    cfg = get_preset("synthetic")
    cfg.model.pretrained = str(path)
    with pytest.raises(UnreadableFileError, match=f"{path} was not loaded.*could run code"):
        build_model(cfg, 50)
    cfg = get_preset("synthetic")
    cfg.model.embeddings = str(path)
    cfg.model.init = "text"
    with pytest.raises(UnreadableFileError, match=f"{path} was not loaded"):
        build_model(cfg, 50)
    assert not marker.exists()


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


@pytest.mark.slow
def test_resume_and_evaluate_refuse_a_malicious_checkpoint(evil: tuple[Path, Path], tmp_path: Path) -> None:
    """``ckpt_last.pt`` of a run with a valid config.json, and ``cbp.evaluate --ckpt FILE``: exit code 4,
    one line naming the file, and the payload never runs."""
    path, marker = evil
    data = make_tiny_synthetic(tmp_path / "syn12")
    run = tmp_path / "run"
    run.mkdir()
    cfg, _ = parse_args(tiny_args(data, run))
    (run / "config.json").write_text(json.dumps(to_dict(cfg)))
    write_malicious(run / "ckpt_last.pt", marker)

    resume = _cli("-m", "cbp.train", "--config", str(run / "config.json"), "--out", str(run))
    evaluate = _cli("-m", "cbp.evaluate", str(run), "--ckpt", str(path))
    for r, name in ((resume, run / "ckpt_last.pt"), (evaluate, path)):
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 4, r.stderr
        assert "Traceback" not in r.stderr and lines[-1].startswith("[cbp."), r.stderr
        assert f"{name} was not loaded" in r.stderr and "could run code" in r.stderr
    assert not marker.exists()
    assert not list(run.glob("eval-*.json"))


def _torch_load_calls(path: Path) -> list[tuple[int, bool]]:
    """(line, has weights_only=True) of every ``torch.load(...)`` call in a Python file."""
    calls = []
    for node in ast.walk(ast.parse(path.read_text())):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "load"
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "torch"
        ):
            safe = any(
                k.arg == "weights_only" and isinstance(k.value, ast.Constant) and k.value.value is True
                for k in node.keywords
            )
            calls.append((node.lineno, safe))
    return calls


def test_every_torch_load_is_weights_only() -> None:
    """Library, benchmarks and notebooks: every torch.load passes weights_only=True (most go through
    cbp.io.load_torch, which does)."""
    files = [p for d in ("cbp", "benchmarks", "notebooks", "ci") for p in (ROOT / d).rglob("*.py")]
    unsafe = [
        f"{p.relative_to(ROOT)}:{line}" for p in files for line, safe in _torch_load_calls(p) if not safe
    ]
    assert not unsafe, f"torch.load without weights_only=True: {unsafe}"
    # the check itself sees an unsafe call
    probe = ROOT / "tests" / "test_safe_loading.py"
    assert any(not safe for _, safe in _torch_load_calls(probe))  # the payload test above
