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


# --------------------------------------------------------------------------------------------
# Parameters: the hints a page prints name its real parameters, and their types are checked

BOOK = ROOT / "cbp" / "book"
#: A hint that names a page parameter, in what a page prints: Papermill's ``-p name``, ``name=True`` /
#: ``name=False`` / ``name=None``, "the page's parameter `name`"; in a page's markdown ``-p name``, the
#: parameter and ``name = value`` in backticks (``normalize=True`` there is a function's argument).
HINT = re.compile(r"-p ([a-z_]\w*)|\b([a-z_]\w*)=(?:True|False|None)\b|parameter `([a-z_]\w*)`")
MARKDOWN_HINT = re.compile(r"-p ([a-z_]\w*)|parameter `([a-z_]\w*)`|`([a-z_]\w*) = [^`]+`")


def _parameters(path: Path) -> list[str]:
    """The names the parameters cell of a notebook assigns, in order."""
    cells = _cells(path.read_text(encoding="utf-8"))
    body = next(body for header, body in cells if "parameters" in header)
    names = []
    for node in ast.parse(body).body:
        for target in node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]:
            elts = target.elts if isinstance(target, ast.Tuple) else [target]
            names += [e.id for e in elts if isinstance(e, ast.Name)]
    return names


def _strings(node: ast.AST) -> list[str]:
    """The text of the string constants under ``node`` (f-strings' literal parts), docstrings left out."""
    docs = {
        id(n.body[0].value)
        for n in ast.walk(node)
        if isinstance(n, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
        and n.body
        and isinstance(n.body[0], ast.Expr)
        and isinstance(n.body[0].value, ast.Constant)
    }
    return [
        n.value
        for n in ast.walk(node)
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs
    ]


def _book_aliases(tree: ast.Module) -> dict[str, str]:
    """Local name -> module of ``from cbp.book import module [as name]`` in ``tree``."""
    aliases = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "cbp.book":
            aliases.update({a.asname or a.name: a.name for a in node.names})
    return aliases


def _book_functions_called(tree: ast.Module) -> dict[str, set[str]]:
    """``module -> functions`` of :mod:`cbp.book` a notebook calls (``launch.train_runs(...)``), with the
    functions those call, in the same module or through ``from cbp.book import module`` in another
    (``training_page.train_and_read`` -> ``launch.train_runs``), and so on."""
    modules: dict[str, tuple[dict[str, ast.AST], dict[str, str]]] = {}

    def module(name: str) -> tuple[dict[str, ast.AST], dict[str, str]]:
        if name not in modules:
            source = ast.parse((BOOK / f"{name}.py").read_text())
            defs = {n.name: n for n in source.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
            modules[name] = (defs, _book_aliases(source))
        return modules[name]

    def references(node: ast.AST, aliases: dict[str, str]) -> list[tuple[str | None, str]]:
        """(module, name) of ``alias.name`` under ``node``, and (None, name) of every bare name."""
        found: list[tuple[str | None, str]] = []
        for n in ast.walk(node):
            if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id in aliases:
                found.append((aliases[n.value.id], n.attr))
            elif isinstance(n, ast.Name):
                found.append((None, n.id))
        return found

    called: dict[str, set[str]] = {}
    todo = [(m, name) for m, name in references(tree, _book_aliases(tree)) if m is not None]
    while todo:
        name_module, name = todo.pop()
        defs, aliases = module(name_module)
        if name not in defs or name in called.setdefault(name_module, set()):
            continue
        called[name_module].add(name)
        for m, n in references(defs[name], aliases):
            todo.append((m or name_module, n))
    return {m: names for m, names in called.items() if names}


def _hints(path: Path) -> dict[str, str]:
    """Parameter name -> where a hint printed or shown by the page names it."""
    text = path.read_text(encoding="utf-8")
    found: dict[str, str] = {}
    for header, body in _cells(text):
        if "parameters" in header:
            continue
        if "[markdown]" in header:
            for m in MARKDOWN_HINT.finditer(body):
                found.setdefault(next(g for g in m.groups() if g), f"{path.name} markdown: {m.group(0)!r}")
        else:
            for s in _strings(ast.parse(body)):
                for m in HINT.finditer(s):
                    found.setdefault(next(g for g in m.groups() if g), f"{path.name}: {s!r}")
    for module, functions in _book_functions_called(ast.parse(text)).items():
        tree = ast.parse((BOOK / f"{module}.py").read_text())
        for node in tree.body:
            if getattr(node, "name", None) in functions:
                for s in _strings(node):
                    for m in HINT.finditer(s):
                        where = f"cbp/book/{module}.py {node.name}: {s!r}"
                        found.setdefault(next(g for g in m.groups() if g), where)
    return found


PAGES = [p for p in NOTEBOOKS if re.search(r'^# %% tags=\["parameters"\]', p.read_text(), re.MULTILINE)]


def test_the_training_pages_hints_are_found() -> None:
    """The check below sees the hints it is about: chapter 5's `-p` lines and what cbp.book.launch prints."""
    hints = _hints(ROOT / "notebooks" / "05_train_ade.py")
    assert {"backbone", "iters", "dataset", "data_root", "gpus", "pretrained", "resume"} <= set(hints), hints
    assert hints["resume"].startswith("cbp/book/launch.py"), hints["resume"]  # what train_runs prints


@pytest.mark.parametrize("path", PAGES, ids=lambda p: p.name)
def test_every_hint_names_a_parameter_of_the_page(path: Path) -> None:
    """Every ``-p NAME`` or ``NAME=...`` a page shows, or prints through cbp.book, names one of its parameters."""
    params = set(_parameters(path))
    wrong = {name: where for name, where in _hints(path).items() if name not in params}
    assert not wrong, f"{path.name}: hints name parameters the page does not have ({sorted(params)}): {wrong}"


def _check_cell(path: Path) -> str:
    """The body of the cell right after the parameters cell (where Papermill's injected cell goes before it)."""
    cells = _cells(path.read_text(encoding="utf-8"))
    i = next(i for i, (header, _) in enumerate(cells) if "parameters" in header)
    return cells[i + 1][1]


def _run_parameters(path: Path, **injected: object) -> dict:
    """The parameters cell, Papermill's injected values, then the check cell, in one namespace."""
    cells = _cells(path.read_text(encoding="utf-8"))
    namespace: dict = {}
    exec(next(body for header, body in cells if "parameters" in header), namespace)
    namespace.update(injected)
    exec(_check_cell(path), namespace)
    return namespace


@pytest.mark.parametrize("path", PAGES, ids=lambda p: p.name)
def test_the_parameters_types_are_checked_right_after_them(path: Path) -> None:
    """The cell after the parameters cell checks every parameter's type (and only the parameters);
    the defaults pass; a value of the wrong type is a one-line TypeError naming it and its value."""
    calls = [
        n
        for n in ast.walk(ast.parse(_check_cell(path)))
        if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "check_parameters"
    ]
    assert len(calls) == 1, f"{path.name}: the cell after the parameters cell must call check_parameters"
    namespace: dict = {}  # the cell's imports, then its types argument (a dict literal or a shared table)
    for node in ast.parse(_check_cell(path)).body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            exec(compile(ast.Module([node], []), path.name, "exec"), namespace)
    checked = list(eval(ast.unparse(calls[0].args[1]), namespace))
    assert sorted(checked) == sorted(_parameters(path)), f"{path.name}: checks {checked}"
    defaults = _run_parameters(path)
    for name in _parameters(path):
        wrong = 12 if isinstance(defaults[name], str) else "abc"
        with pytest.raises(TypeError) as e:
            _run_parameters(path, **{name: wrong})
        assert str(e.value).startswith(f"parameter {name}={wrong!r} is a") and "\n" not in str(e.value)


def test_papermill_values_of_chapter_5() -> None:
    """``-p iters abc`` (a string) is refused in one line where it used to fail cells later
    (``TypeError: unsupported operand type(s) for //``); ints, bools and None pass where they fit."""
    page = ROOT / "notebooks" / "05_train_ade.py"
    with pytest.raises(
        TypeError, match=r"^parameter iters='abc' is a str: expected an integer, e.g. -p iters 20$"
    ):
        _run_parameters(page, iters="abc")
    with pytest.raises(TypeError, match=r"^parameter occl=1 is an int: expected True or False"):
        _run_parameters(page, occl=1)  # a bool is a bool only
    with pytest.raises(
        TypeError, match=r"data_root=2024 .* -r data_root TEXT \(Papermill's -p reads 2024 as a number"
    ):
        _run_parameters(page, data_root=2024)
    _run_parameters(page, iters=20, occl=False, baseline=None, backbone="swin_b", gpus=8)


def test_check_parameters() -> None:
    from cbp.book.parameters import check_parameters

    types = {"lr": float, "n": int, "flag": bool, "auto": (bool, None), "ts": list[float], "name": str}
    good = {"lr": 1, "n": 3, "flag": True, "auto": None, "ts": [0.1, 2], "name": "x"}
    check_parameters(good, types)  # an int is a float here (Papermill reads -p lr 1 as an int)
    for name, value, expected in (
        ("lr", True, "a number"),
        ("n", 2.0, "an integer"),
        ("n", False, "an integer"),
        ("flag", "true", "True or False"),
        ("auto", 0, "True or False or None"),
        ("ts", [0.1, "x"], "a list of numbers"),
        ("name", None, "a string"),
    ):
        with pytest.raises(
            TypeError, match=f"parameter {name}={re.escape(repr(value))} .*expected {expected}"
        ):
            check_parameters({**good, name: value}, types)
    for value in (float("nan"), float("inf"), [1.0, float("nan")]):
        with pytest.raises(ValueError, match="expected a finite number"):
            check_parameters({**good, "ts" if isinstance(value, list) else "lr": value}, types)
    with pytest.raises(ValueError, match="parameter fresh is not set"):
        check_parameters(good, {**types, "fresh": bool})


def _exercises(path: Path) -> str:
    """The markdown of a chapter's "## Exercises" cell, uncommented."""
    for header, body in _cells(path.read_text(encoding="utf-8")):
        if "[markdown]" in header and re.search(r"^# ## Exercises$", body, re.MULTILINE):
            lines = body.strip("\n").splitlines()
            return "\n".join(line[2:] if line.startswith("# ") else line.lstrip("#") for line in lines)
    raise AssertionError(f"{path.name}: no '## Exercises' markdown cell")


ANSWER_OPEN = "<details><summary>Worked answer</summary>"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_exercise_asks_for_a_prediction_and_folds_its_answer(path: Path) -> None:
    """Each exercise asks for a prediction before its run, and its worked answer is an HTML
    ``<details>`` block, which JupyterLab, VS Code and the web book all show folded (a MyST dropdown
    is folded on the web only: JupyterLab shows it as raw text under the question)."""
    md = _exercises(path)
    assert ":class: dropdown" not in md and "{admonition}" not in md
    blocks = re.split(r"^\*\*(\d+)\. ", md, flags=re.MULTILINE)
    numbers = [int(n) for n in blocks[1::2]]
    assert numbers == list(range(1, len(numbers) + 1)) and len(numbers) >= 2, numbers
    for n, block in zip(numbers, blocks[2::2]):
        question, sep, answer = block.partition(ANSWER_OPEN)
        assert sep, f"{path.name}, exercise {n}: no '{ANSWER_OPEN}' answer"
        assert re.search(r"\bpredict", question, re.IGNORECASE), (
            f"{path.name}, exercise {n}: no prediction asked"
        )
        # CommonMark: the HTML lines must stand alone, between blank lines, for the markdown
        # between them to render (and not show as raw text)
        assert question.endswith("\n\n") and answer.startswith("\n\n"), f"{path.name}, exercise {n}"
        assert answer.count("</details>") == 1 and "\n\n</details>\n" in answer + "\n", f"{path.name}, {n}"
        assert answer.split("</details>")[1].strip() == "", f"{path.name}, {n}: text after the answer"
    # Rendered as CommonMark (markdown-it-py, the parser under MyST; JupyterLab's is CommonMark too):
    # each answer's text is inside its folded <details>, rendered as markdown, and no question is.
    from markdown_it import MarkdownIt

    html = MarkdownIt("commonmark").render(md)
    folded = re.findall(r"<details><summary>Worked answer</summary>\n(.*?)</details>", html, re.DOTALL)
    assert len(folded) == len(numbers)
    for body in folded:
        assert body.strip().startswith(("<p>", "<pre>")) and "Predict" not in body
        assert "<details>" not in body and "**" not in body  # no raw markdown left
    outside = re.sub(r"<details>.*?</details>", "", html, flags=re.DOTALL)
    assert len(re.findall(r"<strong>\d+\. ", outside)) == len(numbers)
