"""The Makefile's set-up: a full disk stops `make test` / `make book` before .venv is created, with a
message that says what is needed (the pinned CUDA torch pair takes ~6.5 GB)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _copy_makefiles(dest: Path) -> None:
    shutil.copy(ROOT / "Makefile", dest / "Makefile")
    (dest / "book").mkdir()
    for mk in (ROOT / "book").glob("*.mk"):
        shutil.copy(mk, dest / "book" / mk.name)


@pytest.mark.skipif(shutil.which("make") is None or shutil.which("df") is None, reason="needs make and df")
def test_too_little_disk_stops_before_the_venv(tmp_path: Path) -> None:
    _copy_makefiles(tmp_path)
    free_gib = shutil.disk_usage(tmp_path).free // 2**30
    proc = subprocess.run(
        ["make", ".venv/bin/activate", f"VENV_MIN_FREE_GB={free_gib + 1000}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    said = re.search(r"make: (\d+) GiB free on this disk", proc.stderr)
    assert said and abs(int(said.group(1)) - free_gib) <= 1  # other writers may move it meanwhile
    assert "VENV_MIN_FREE_GB=0" in proc.stderr
    assert not (tmp_path / ".venv").exists()  # nothing half-installed
    # the check's dry run with enough space goes on to create the venv (not run: -n)
    dry = subprocess.run(
        ["make", "-n", ".venv/bin/activate", "VENV_MIN_FREE_GB=0"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert dry.returncode == 0 and "-m venv .venv" in dry.stdout
