"""Light checks of the book's notebooks (no execution: `make book` and CI execute them).

Every ``notebooks/NN_*.py`` is a jupytext percent file with a python3 kernelspec header, exactly
one cell tagged ``parameters`` (what Papermill injects after), a title, and valid Python; every
notebook the table of contents names exists, and every notebook is in the table of contents.
The format is checked with a small parser of its own, and with jupytext when the book extra is
installed (``make test`` installs only the test extra).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py"))
CELL = re.compile(r"^# %%(.*)$", re.MULTILINE)


def _cells(text: str) -> list[tuple[str, str]]:
    """(cell header, body) for each ``# %%`` cell of a percent-format file."""
    marks = list(CELL.finditer(text))
    return [
        (m.group(1), text[m.end() : nxt.start() if nxt else len(text)])
        for m, nxt in zip(marks, marks[1:] + [None])
    ]


def test_there_are_notebooks() -> None:
    assert NOTEBOOKS, "no notebooks/NN_*.py found"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_format(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    header = text.split("# %%", 1)[0]
    assert re.search(r"^#   kernelspec:\n(#     .*\n)*#     name: python3$", header, re.MULTILINE), (
        f"{path.name}: the jupytext header needs a kernelspec with name: python3 (jupytext --set-kernel python3)"
    )
    assert "format_name: percent" in header, f"{path.name}: must be a jupytext py:percent file"
    cells = _cells(text)
    tagged = [h for h, _ in cells if re.search(r"""tags=\[[^\]]*["']parameters["']""", h)]
    assert len(tagged) == 1, f"{path.name}: expected exactly one cell tagged parameters, found {len(tagged)}"
    assert cells[0][0].strip() == "[markdown]" and re.search(r"^# # \S", cells[0][1], re.MULTILINE), (
        f"{path.name}: the first cell must be markdown with a '# Title'"
    )
    ast.parse(text, filename=str(path))  # the whole file is valid Python
    params = next(body for h, body in cells if "parameters" in h)
    for node in ast.parse(params).body:
        assert isinstance(node, (ast.Assign, ast.AnnAssign, ast.Expr)), (
            f"{path.name}: the parameters cell may only assign values (Papermill overrides them)"
        )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_reads_with_jupytext(path: Path) -> None:
    jupytext = pytest.importorskip("jupytext")
    nb = jupytext.read(path)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and tagged[0].cell_type == "code"


def test_toc_matches_notebooks() -> None:
    toc = (ROOT / "book" / "_toc.yml").read_text(encoding="utf-8")
    listed = re.findall(r"^\s*-?\s*file:\s*(\S+)\s*$", toc, re.MULTILINE)
    listed += re.findall(r"^root:\s*(\S+)\s*$", toc, re.MULTILINE)
    for entry in listed:
        candidates = [ROOT / "book" / f"{entry}{ext}" for ext in (".md", ".py", ".ipynb")]
        assert any(c.exists() for c in candidates), f"book/_toc.yml names {entry!r} but no such page exists"
    in_toc = {Path(e).name for e in listed if e.startswith("notebooks/")}
    missing = [p.stem for p in NOTEBOOKS if p.stem not in in_toc]
    assert not missing, f"notebooks missing from book/_toc.yml (add them under a part): {missing}"
