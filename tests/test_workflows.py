"""The GitHub workflows, checked here where no Actions runner exists (ci/lint_workflows.py, `make
lint-workflows`): the real ones pass, and a copy broken in each of the ways the check knows fails
with a message that names the problem. The validator comes from the ci extra (check-jsonschema,
ruamel.yaml); without it these tests skip, except in CI (CI=true), where .ci/run installs it
first and a missing validator is a failure."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / ".github" / "workflows"
SCRIPT = ROOT / "ci" / "lint_workflows.py"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "ci" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


lint_workflows = _load("lint_workflows")
MISSING = lint_workflows.tools_missing()


@pytest.fixture
def validator() -> None:
    if MISSING is None:
        return
    message = f"{MISSING} is not installed: `make lint-workflows` installs the ci extra of pyproject.toml"
    if os.environ.get("CI"):
        pytest.fail(f"{message} (.ci/run runs it before the tests)")
    pytest.skip(message)


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--root", str(ROOT), *args], capture_output=True, text=True, timeout=120
    )


def test_the_real_workflows_pass(validator) -> None:
    files = sorted(p.name for p in WORKFLOWS.glob("*.yml"))
    assert files == ["book.yml", "ci.yml"]
    proc = _run()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 workflow(s) pass (book.yml, ci.yml)" in proc.stdout


# (workflow, text in it, its broken replacement, what the report must say)
BREAKAGES = {
    "schema: a misspelt key": ("book.yml", "    runs-on: ubuntu-latest", "    run-on: ubuntu-latest", "'runs-on' is a required property"),
    "schema: a misspelt trigger": ("ci.yml", "  pull_request:\n", "  pull-request:\n", "$.on: {'push'"),
    "an action on a branch": ("book.yml", "actions/checkout@v4", "actions/checkout@main", "uses actions/checkout@main: not pinned"),
    "an action without a version": ("ci.yml", "actions/setup-python@v5", "actions/setup-python", "uses actions/setup-python: not pinned"),
    "a make target that does not exist": ("book.yml", "run: make book\n", "run: make bok\n", "`make bok`: the Makefile has no target 'bok'"),
    "a script that does not exist": ("ci.yml", "run: bash .ci/run", "run: bash .ci/runner", "`bash .ci/runner`: no such file in the repository"),
    "needs a job that does not exist": ("book.yml", "    needs: build\n", "    needs: biuld\n", "needs 'biuld', which is not a job of this workflow"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(BREAKAGES))
def test_a_broken_copy_fails(validator, tmp_path: Path, case: str) -> None:
    name, good, bad, said = BREAKAGES[case]
    text = (WORKFLOWS / name).read_text()
    assert good in text, f"the real {name} no longer has {good!r}: update the test"
    broken = tmp_path / name
    broken.write_text(text.replace(good, bad, 1))
    proc = _run(str(broken))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert said in proc.stderr, proc.stderr


def test_untouched_copies_pass(validator, tmp_path: Path) -> None:
    """The broken copies above fail for their change, not for where they lie."""
    for path in WORKFLOWS.glob("*.yml"):
        shutil.copy(path, tmp_path / path.name)
    proc = _run(*sorted(str(p) for p in tmp_path.glob("*.yml")))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_missing_validator_is_exit_2_with_a_reason(tmp_path: Path) -> None:
    """Without the ci extra the script says how to get it (exit 2), it does not pass silently."""
    # an interpreter that cannot import check_jsonschema: -I ignores PYTHONPATH and user site-packages,
    # -S the site-packages of the venv
    proc = subprocess.run(
        [sys.executable, "-I", "-S", str(SCRIPT), "--root", str(ROOT)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "make lint-workflows" in proc.stderr


def test_shell_commands_of_a_run_script() -> None:
    script = (
        "sudo apt-get update -qq && REQUIRE_BROWSER=1 make book-check\n"
        "if ! make -C . lint; then bash ci/gpu_check.sh --dry-run; fi  # a comment: make nothing\n"
        "make dist ${{ matrix.flags }} | tee log; .venv/bin/python -m pytest -q\n"
    )
    assert lint_workflows.shell_commands(script) == [
        ["apt-get", "update", "-qq"],
        ["make", "book-check"],
        ["make", "-C", ".", "lint"],
        ["bash", "ci/gpu_check.sh", "--dry-run"],
        ["make", "dist", "EXPR"],
        ["tee", "log"],
        [".venv/bin/python", "-m", "pytest", "-q"],
    ]


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_run_problems_read_the_real_makefile() -> None:
    ok = "make book && make -j2 test lint-workflows PYTEST_ARGS=-x\nbash .ci/run\npython3 ci/make_dist.py --no-pdf"
    assert lint_workflows.run_problems(ok, ROOT, ROOT, "w") == []
    # a pattern rule counts: notebooks/%.ipynb
    assert lint_workflows.run_problems("make notebooks/01_ambiguity.ipynb", ROOT, ROOT, "w") == []
    bad = "make serve book-chek\nsh ci/nothing.sh\n.venv/bin/python ci/nothing.py\nmake -C docs html"
    assert lint_workflows.run_problems(bad, ROOT, ROOT, "w") == [
        "w: `make book-chek`: the Makefile has no target 'book-chek'",
        "w: `sh ci/nothing.sh`: no such file in the repository",
        "w: `.venv/bin/python ci/nothing.py`: no such file in the repository",
        "w: `make` runs in docs, which has no Makefile",
    ]


@pytest.mark.parametrize(
    ("uses", "pinned"),
    [
        ("actions/checkout@v4", True),
        ("actions/checkout@v4.1.7", True),
        ("github/codeql-action/init@v3", True),
        ("actions/checkout@" + "0" * 40, True),
        ("docker://alpine:3.20", True),
        ("actions/checkout@main", False),
        ("actions/checkout@v4-beta", False),
        ("actions/checkout", False),
        ("docker://alpine", False),
        ("docker://alpine:latest", False),
        ("./.github/actions/nothing-here", False),
    ],
)
def test_uses_must_be_pinned(uses: str, pinned: bool) -> None:
    assert (lint_workflows.uses_problem(uses, ROOT, "w") is None) == pinned
