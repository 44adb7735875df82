"""The book build's own logic (ci/execute_notebooks.py): what re-executes a notebook, and how a
failed notebook's page is marked. The end-to-end behaviour (a failing notebook in a book whose
other pages still build) needs Jupyter and is exercised by `make book`."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "ci" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


execute_notebooks = _load("execute_notebooks")


def _tree(root: Path) -> None:
    (root / "cbp" / "data").mkdir(parents=True)
    (root / "cbp" / "engine").mkdir()
    (root / "cbp" / "__init__.py").write_text("x = 1\n")
    (root / "cbp" / "engine" / "train.py").write_text("y = 2\n")
    (root / "cbp" / "data" / "classes.tsv").write_text("a\tb\n")
    (root / "results" / "ablations" / "tmp").mkdir(parents=True)
    (root / "results" / "ablations" / "run.json").write_text("{}\n")


def test_dependency_digest_follows_library_tables_and_results(tmp_path: Path) -> None:
    _tree(tmp_path)
    base = execute_notebooks.dependency_digests(tmp_path)
    assert set(base) == {label for label, _, _ in execute_notebooks.DEPENDENCIES}
    assert execute_notebooks.dependency_digests(tmp_path) == base  # deterministic

    changes = {
        "the cbp library": ("cbp/engine/train.py", "y = 3\n"),  # a sub-package module
        "the data tables": ("cbp/data/classes.tsv", "a\tc\n"),
        "the recorded study (results/)": ("results/ablations/run.json", '{"miou": 1}\n'),
    }
    for label, (rel, text) in changes.items():
        path = tmp_path / rel
        old = path.read_text()
        path.write_text(text)
        now = execute_notebooks.dependency_digests(tmp_path)
        assert now[label] != base[label], label
        assert {k: v for k, v in now.items() if k != label} == {k: v for k, v in base.items() if k != label}
        path.write_text(old)
    assert execute_notebooks.dependency_digests(tmp_path) == base


def test_dependency_digest_ignores_scratch_files(tmp_path: Path) -> None:
    _tree(tmp_path)
    base = execute_notebooks.dependency_digests(tmp_path)
    (tmp_path / "results" / "ablations" / "tmp" / "partial.json").write_text("{}\n")
    (tmp_path / "cbp" / "__pycache__").mkdir()
    (tmp_path / "cbp" / "__pycache__" / "x.py").write_text("")
    assert execute_notebooks.dependency_digests(tmp_path) == base


def test_a_renamed_file_changes_the_digest(tmp_path: Path) -> None:
    _tree(tmp_path)
    base = execute_notebooks.dependency_digests(tmp_path)
    (tmp_path / "results" / "ablations" / "run.json").rename(tmp_path / "results" / "ablations" / "run2.json")
    assert (
        execute_notebooks.dependency_digests(tmp_path)["the recorded study (results/)"]
        != base["the recorded study (results/)"]
    )


def test_failed_page_is_marked_at_its_first_shown_output() -> None:
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# Title"),
        nbformat.v4.new_code_cell("import os", metadata={"tags": ["remove-cell"]}),
        nbformat.v4.new_code_cell("n = 3", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("1 / 0"),
    ]
    nb.cells[3].outputs = [
        nbformat.v4.new_output("error", ename="ZeroDivisionError", evalue="division by zero", traceback=[])
    ]
    cell_no, error = execute_notebooks._first_error(nb)
    assert (cell_no, error) == (3, "ZeroDivisionError: division by zero")
    marker = execute_notebooks.failure_marker("05_train_ade", cell_no, error)
    execute_notebooks._mark_failed(nb, marker)
    assert nb.cells[1].get("outputs", []) == []  # a removed cell cannot carry the box
    assert nb.cells[2].outputs[0]["data"]["text/html"].startswith('<div class="admonition error')
    text = nb.cells[2].outputs[0]["data"]["text/plain"]
    assert "code cell 3 raised ZeroDivisionError: division by zero" in text
    assert "make book" in text and "notebooks/05_train_ade.ipynb" in text
    nbformat.validate(nb)


NOTEBOOK = """# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %%
import pathlib
import time

pathlib.Path({marker!r}).write_text("started")
time.sleep({sleep})
"""


@pytest.mark.slow
def test_ctrl_c_stops_the_build_and_caches_nothing_half_done(tmp_path: Path) -> None:
    """Ctrl-C (SIGINT to the executor's process group, as a terminal sends it) during the first notebook:
    exit 130, the second notebook never starts, and the interrupted one is not cached as executed or
    failed, so the next `make book` executes it again."""
    import json
    import os
    import signal
    import subprocess
    import sys
    import time

    pytest.importorskip("jupyter_cache")
    pytest.importorskip("ipykernel")
    book = tmp_path / "book"
    book.mkdir()
    (book / "_toc.yml").write_text("format: jb-book\nroot: intro\nchapters:\n- file: a\n- file: b\n")
    started = tmp_path / "started"
    (book / "a.py").write_text(NOTEBOOK.format(marker=str(started), sleep=60))
    (book / "b.py").write_text(NOTEBOOK.format(marker=str(tmp_path / "b-started"), sleep=0))
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "ci" / "execute_notebooks.py"), "--book", str(book)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while not started.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert started.exists(), proc.communicate()[0] if proc.poll() is not None else "the kernel did not start"
    os.killpg(proc.pid, signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == execute_notebooks.INTERRUPTED == 130, out
    assert "a: interrupted" in out and "[2/2]" not in out and not (tmp_path / "b-started").exists()
    status = json.loads((book / "_build" / execute_notebooks.STATUS_NAME).read_text())
    assert "a" not in status["notebooks"]  # neither "executed" nor "failed": the next build runs it again
    from jupyter_cache import get_cache

    assert get_cache(str(book / "_build" / ".jupyter_cache")).list_cache_records() == []
