"""The shape of the library's code: no function in ``cbp/`` is longer than :data:`MAX_LINES` lines.

A function's length runs from its ``def`` line to its last line, docstring included (methods and
nested functions count on their own).
"""

from __future__ import annotations

import ast
from pathlib import Path

MAX_LINES = 60
PACKAGE = Path(__file__).resolve().parents[1] / "cbp"


def long_functions(root: Path = PACKAGE, limit: int = MAX_LINES) -> list[str]:
    """``"cbp/x.py:12 name (N lines)"`` for every function under ``root`` longer than ``limit`` lines."""
    out = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > limit:
                    where = path.relative_to(root.parent).as_posix()
                    out.append(f"{where}:{node.lineno} {node.name} ({lines} lines)")
    return out


def test_long_functions_finds_a_long_function(tmp_path: Path) -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(60))
    (tmp_path / "m.py").write_text(f"def short():\n    return 1\n\n\ndef long():\n{body}\n")
    assert long_functions(tmp_path) == [f"{tmp_path.name}/m.py:5 long (61 lines)"]


def test_no_function_is_longer_than_60_lines() -> None:
    long = long_functions()
    assert not long, "functions longer than 60 lines:\n" + "\n".join(long)
