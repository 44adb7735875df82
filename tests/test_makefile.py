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
    # with enough space the check passes and make goes on (python and pip stubbed by `true`)
    ok = subprocess.run(
        ["make", ".venv/bin/activate", "VENV_MIN_FREE_GB=0", "PYTHON=true", "PIP=true"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ok.returncode == 0 and "GiB free" not in ok.stderr, ok.stderr


@pytest.mark.skipif(shutil.which("make") is None or shutil.which("df") is None, reason="needs make and df")
def test_an_install_into_a_venv_that_has_torch_is_not_blocked(tmp_path: Path) -> None:
    """Re-installing (pyproject changed) needs little space once torch is in: no disk check then; a venv
    without torch (an install that died halfway) is checked again."""
    _copy_makefiles(tmp_path)
    for name in ("pyproject.toml", "requirements.lock"):
        shutil.copy(ROOT / name, tmp_path / name)
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    (tmp_path / ".venv" / "bin" / "activate").touch()
    huge = f"VENV_MIN_FREE_GB={shutil.disk_usage(tmp_path).free // 2**30 + 1000}"
    cmd = ["make", ".venv/.test-installed", huge, "PIP=true"]
    half = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert half.returncode != 0 and "GiB free on this disk" in half.stderr
    (tmp_path / ".venv" / "lib" / "python3.11" / "site-packages" / "torch").mkdir(parents=True)
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / ".venv" / ".test-installed").exists()


def test_every_requirement_of_every_extra_is_pinned_in_the_lock() -> None:
    """`pip install -c requirements.lock` pins only what the lock lists: an extra compiled out of it
    (e.g. the workshop's JupyterLab) would install at whatever version PyPI has that day."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pinned = {
        re.sub(r"[-_.]+", "-", m.group(1)).lower()
        for m in re.finditer(
            r"^([A-Za-z0-9][A-Za-z0-9._-]*)==", (ROOT / "requirements.lock").read_text(), re.M
        )
    }
    extras = project["optional-dependencies"]
    assert {"test", "book", "ci", "workshop"} <= set(extras)
    for extra, reqs in {"dependencies": project["dependencies"], **extras}.items():
        for req in reqs:
            name = re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", req).group(0)).lower()
            assert name in pinned, (
                f"{extra}: {req} is not pinned in requirements.lock (refresh it: CONTRIBUTING.md)"
            )
    assert any(r.startswith("jupyterlab") for r in extras["workshop"])


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_workshop_installs_jupyterlab_on_the_book_environment(tmp_path: Path) -> None:
    """`make workshop` (dry run): the book's stamp first (test and book extras, as `make book`),
    then the workshop extra at the lock's versions, the kernel, and every notebook paired."""
    _copy_makefiles(tmp_path)
    for name in ("pyproject.toml", "requirements.lock"):
        shutil.copy(ROOT / name, tmp_path / name)
    (tmp_path / "notebooks").mkdir()
    for nb in ROOT.glob("notebooks/[0-9][0-9]_*.py"):
        shutil.copy(nb, tmp_path / "notebooks" / nb.name)
    dry = subprocess.run(
        ["make", "--no-print-directory", "-n", "workshop"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert dry.returncode == 0, dry.stderr
    lines = dry.stdout.splitlines()
    book = lines.index('.venv/bin/pip install -c requirements.lock -e ".[test,book]"')
    workshop = lines.index('.venv/bin/pip install -c requirements.lock -e ".[workshop]"')
    kernel = next(i for i, line in enumerate(lines) if "ipykernel install" in line)
    assert book < workshop < kernel
    paired = [line for line in lines if line.startswith(".venv/bin/jupytext") and "--to ipynb" in line]
    assert len(paired) == len(list(ROOT.glob("notebooks/[0-9][0-9]_*.py"))) > 0
    assert "jupyter lab notebooks/" in lines[-1]
    # `make book` and `make test` install what they did before: no workshop extra
    for target, extra in (("book", ".[test,book]"), ("test", ".[test]")):
        out = subprocess.run(
            ["make", "--no-print-directory", "-n", target],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
        assert f'-e "{extra}"' in out and ".[workshop]" not in out, target
