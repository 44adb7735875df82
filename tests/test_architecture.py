"""The package layout's one-way import rule (see the docstring of ``cbp/__init__.py``).

Every ``import`` / ``from ... import`` of every module under ``cbp/`` is read with ``ast`` (also the
ones inside functions, so that a function-level import cannot hide a cycle) and each ``cbp``
import must go to the same layer or a lower one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import cbp

ROOT = Path(cbp.__file__).parent

#: Layer of each top-level module / sub-package of cbp (higher may import lower, never the reverse).
LAYERS: dict[str, int] = {
    **dict.fromkeys(["__init__", "prototypes", "heads", "losses", "metrics", "analysis", "paper"], 1),
    **dict.fromkeys(["distributed", "io", "cli"], 1),
    "models": 2,
    "data": 2,
    "adapt": 2,  # cbp.adapt: puts the method's head and loss into other libraries' models
    "engine": 3,
    "train": 3,  # entry modules: python -m cbp.train / cbp.evaluate
    "evaluate": 3,
    "experiments": 4,
    "book": 5,
}


def _part(module: str) -> str:
    """'cbp.engine.train' -> 'engine'; 'cbp' -> '__init__'."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    return ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported module) for every cbp import in ``path``, relative ones resolved."""
    tree = ast.parse(path.read_text())
    here = _module_name(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "cbp"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.split(".")[0] != "cbp":
                continue
            if mod == "cbp":  # from cbp import engine / metrics ...: each name is a module or a re-export
                out += [
                    (node.lineno, f"cbp.{a.name}" if f"cbp.{a.name}".split(".")[1] in LAYERS else "cbp")
                    for a in node.names
                ]
            else:
                out.append((node.lineno, mod))
    return out


def _violations(files: list[Path]) -> list[str]:
    bad = []
    for path in files:
        src = _module_name(path)
        layer = LAYERS[_part(src)]
        for line, mod in _imports(path):
            target = LAYERS.get(_part(mod))
            if target is None:
                bad.append(f"{path.relative_to(ROOT.parent)}:{line} imports {mod}, which has no layer")
            elif target > layer:
                bad.append(
                    f"{path.relative_to(ROOT.parent)}:{line} ({src}, layer {layer}) imports {mod} (layer {target})"
                )
    return bad


def test_every_module_has_a_layer() -> None:
    missing = sorted({_part(_module_name(p)) for p in ROOT.rglob("*.py")} - set(LAYERS))
    assert not missing, f"modules without a layer in LAYERS: {missing}"


def test_imports_run_one_way() -> None:
    bad = _violations(sorted(ROOT.rglob("*.py")))
    assert not bad, "imports against the layer rule:\n" + "\n".join(bad)


@pytest.mark.parametrize(
    ("source", "line"),
    [
        ("cbp/losses.py", "from cbp.engine.loss import compute_loss"),  # method -> engine
        ("cbp/engine/train.py", "def f():\n    from cbp.book import launch\n"),  # hidden in a function
        ("cbp/models/builder.py", "from ..engine import config"),  # relative import
    ],
)
def test_the_rule_catches_an_upward_import(tmp_path: Path, source: str, line: str, monkeypatch) -> None:
    """The check is not vacuous: a planted upward import is reported."""
    fake_root = tmp_path / "cbp"
    target = fake_root / Path(source).relative_to("cbp")
    target.parent.mkdir(parents=True)
    (fake_root / "__init__.py").write_text("")
    if target.parent != fake_root:
        (target.parent / "__init__.py").write_text("")
    target.write_text(line + "\n")
    monkeypatch.setattr(__import__(__name__), "ROOT", fake_root)
    assert _violations([target]), f"{line!r} in {source} was not reported"
