"""Validate the GitHub Actions workflows here, where no Actions runner exists (``make lint-workflows``).

Each ``.github/workflows/*.yml`` (or each FILE given) goes through two checks, and any problem
fails the run:

1. **The schema.** check-jsonschema with its vendored GitHub workflow schema
   (``--builtin-schema vendor.github-workflows``: shipped inside the package, no network): unknown
   keys, a job without ``runs-on`` or ``steps``, a wrong type, a misspelt trigger...
2. **This repository's rules**, which no schema knows:

   - every ``uses:`` (a step's action or a job's reusable workflow) is pinned to a version tag
     (``owner/repo@v4``, ``@v4.1``, ``@v4.1.7``) or a full 40-hex commit; a local ``./path`` exists;
     a ``docker://`` image names a tag other than ``latest`` (or a digest);
   - every job's ``needs:`` names a job of the same workflow;
   - every ``run:`` step's ``make`` targets are defined by the Makefile (make's own database,
     ``make -pRrq``, so ``include``\\ d files and pattern rules count), and every script it runs
     with ``bash``/``sh``/``python`` exists in the repository (relative to the step's
     ``working-directory``).

The tools come from the ``ci`` extra of ``pyproject.toml`` at the versions of ``requirements.lock``
(check-jsonschema, and ruamel.yaml, which reads YAML 1.2 as GitHub does: ``on:`` stays a key).

Usage: ``python ci/lint_workflows.py [--root DIR] [FILE ...]``. Exit 0 when every workflow passes,
1 with one line per problem, 2 when check-jsonschema or ruamel.yaml is not installed.
"""

from __future__ import annotations

import argparse
import fnmatch
import importlib.util
import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = "vendor.github-workflows"
MISSING_TOOLS = (
    "lint_workflows: {what} is not installed: `make lint-workflows` installs the ci extra of "
    "pyproject.toml (at requirements.lock's versions) into .venv"
)

PINNED = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+(?:/[^@\s]+)?@(?:v\d+(?:\.\d+){0,2}|[0-9a-f]{40})$")
EXPRESSION = re.compile(r"\$\{\{.*?\}\}", re.DOTALL)
# Shell words that start or join commands without being the command.
SEPARATORS = {";", "&&", "||", "|", "&", "(", ")", "{", "}", "\n", ";;", "|&", "fi", "done", "esac"}
PREFIXES = {"if", "then", "else", "elif", "do", "while", "until", "!", "time", "exec", "command", "sudo"}
MAKE_OPTS_WITH_ARG = {"-C", "-f", "-o", "-W", "-I", "-j", "-l", "--file", "--directory", "--makefile"}
PYTHONS = re.compile(r"^(?:.*/)?python(?:3(?:\.\d+)?)?$")


def tools_missing() -> str | None:
    """The name of a missing tool of the ci extra, or None when both are importable."""
    for module, name in (("check_jsonschema", "check-jsonschema"), ("ruamel.yaml", "ruamel.yaml")):
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            return name
    return None


def schema_problems(files: list[Path]) -> list[str]:
    """check-jsonschema's report on FILES against the vendored workflow schema ([] when all pass)."""
    cmd = [sys.executable, "-m", "check_jsonschema", "--builtin-schema", SCHEMA, *map(str, files)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode == 0:
        return []
    text = (proc.stdout + proc.stderr).strip()
    return [
        f"check-jsonschema --builtin-schema {SCHEMA} (exit {proc.returncode}):\n    "
        + text.replace("\n", "\n    ")
    ]


def make_targets(directory: Path, makefile: str | None = None) -> list[str] | None:
    """Targets (and pattern rules, with %) that make knows in DIRECTORY, or None without a Makefile."""
    names = [makefile] if makefile else ["GNUmakefile", "makefile", "Makefile"]
    if not any((directory / name).is_file() for name in names):
        return None
    cmd = ["make", "-pRrq", "-C", str(directory), *(["-f", makefile] if makefile else [])]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True)
    except FileNotFoundError:
        raise SystemExit("lint_workflows: `make` is not installed; it reads the Makefile's targets") from None
    targets: list[str] = []
    not_a_target = False
    for line in proc.stdout.splitlines():
        if line.startswith("# Not a target:"):
            not_a_target = True  # the next entry is a file make read, not a rule
            continue
        m = re.match(r"^([^\s#:=][^:=]*?)::?(?:\s|$)", line)
        if m:
            if not not_a_target:
                targets.extend(m.group(1).split())
            not_a_target = False
    return targets


def _has_target(target: str, targets: list[str]) -> bool:
    return any(
        target == t or ("%" in t and fnmatch.fnmatchcase(target, t.replace("%", "*"))) for t in targets
    )


def shell_commands(script: str) -> list[list[str]]:
    """The simple commands of a ``run:`` script, each as its words (expressions read as EXPR)."""
    script = EXPRESSION.sub("EXPR", script).replace("\\\n", " ")
    commands: list[list[str]] = []
    for line in script.splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        lexer.commenters = "#"
        try:
            words = list(lexer)
        except ValueError:  # an unclosed quote spanning lines (a here-string): not ours to judge
            continue
        current: list[str] = []
        for word in [*words, ";"]:
            if word in SEPARATORS:
                if current:
                    commands.append(current)
                current = []
            elif not current and (word in PREFIXES or re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", word)):
                continue  # `REQUIRE_BROWSER=1 make ...`, `if make ...`, `sudo bash ...`
            else:
                current.append(word)
    return commands


def _first_operand(args: list[str], with_arg: set[str]) -> tuple[str | None, list[str]]:
    """The first argument that is not an option (skipping options' own arguments), and the options before it."""
    options: list[str] = []
    takes_arg = False
    for a in args:
        if takes_arg:
            takes_arg = False
        elif a.startswith("-"):
            options.append(a)
            takes_arg = a in with_arg
        else:
            return a, options
    return None, options


def run_problems(script: str, cwd: Path, root: Path, where: str) -> list[str]:
    """Problems of one ``run:`` script: make targets the Makefile lacks, scripts that do not exist."""
    problems = []
    for words in shell_commands(script):
        cmd, args = words[0], words[1:]
        if cmd == "make":
            directory, makefile, goals, skip = cwd, None, [], None
            for a in args:
                if skip is not None:
                    if skip in ("-C", "--directory"):
                        directory = directory / a
                    elif skip in ("-f", "--file", "--makefile"):
                        makefile = a
                    skip = None
                elif a in MAKE_OPTS_WITH_ARG:
                    skip = a
                elif a.startswith("--directory="):
                    directory = directory / a.split("=", 1)[1]
                elif a.startswith("-") or "=" in a:
                    continue
                else:
                    goals.append(a)
            targets = make_targets(directory, makefile)
            if targets is None:
                problems.append(
                    f"{where}: `make` runs in {_rel(directory, root)}, which has no {makefile or 'Makefile'}"
                )
                continue
            for goal in goals:
                if "EXPR" in goal or "$" in goal:
                    continue
                if not _has_target(goal, targets):
                    problems.append(f"{where}: `make {goal}`: the Makefile has no target {goal!r}")
        elif cmd in ("bash", "sh") or PYTHONS.match(cmd):
            operand, options = _first_operand(args, {"-o", "-O", "-W", "-X", "-m"})
            if operand is None or "-c" in options or "-m" in options:
                continue  # `bash -c '...'`, `python -m module`, an interactive shell
            if PYTHONS.match(cmd) and not operand.endswith(".py"):
                continue
            if "EXPR" in operand or "$" in operand or operand.startswith("/"):
                continue  # a computed or system path
            if not (cwd / operand).is_file():
                problems.append(f"{where}: `{cmd} {operand}`: no such file in the repository")
    return problems


def _rel(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix() or "."
    except ValueError:
        return str(path)


def uses_problem(uses: str, root: Path, where: str) -> str | None:
    """Why a ``uses:`` value is not pinned (or does not exist), or None."""
    uses = uses.strip()
    if uses.startswith("./"):
        return None if (root / uses).exists() else f"{where}: uses {uses}: no such path in the repository"
    if uses.startswith("docker://"):
        image = uses[len("docker://") :]
        if "@sha256:" in image:
            return None
        tag = image.rsplit(":", 1)[1] if ":" in image.rsplit("/", 1)[-1] else ""
        return (
            None if tag and tag != "latest" else f"{where}: uses {uses}: pin the image to a tag (not latest)"
        )
    if not PINNED.match(uses):
        return f"{where}: uses {uses}: not pinned to a version tag (owner/repo@vN[.N[.N]]) or a full commit"
    return None


def workflow_problems(path: Path, root: Path) -> list[str]:
    """This repository's rules on one workflow file (the schema is checked by schema_problems)."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    name = _rel(path, root)
    try:
        doc = YAML(typ="safe", pure=True).load(path.read_text(encoding="utf-8"))
    except YAMLError as e:
        return [f"{name}: not valid YAML: {str(e).splitlines()[0]}"]
    if not isinstance(doc, dict) or not isinstance(doc.get("jobs"), dict):
        return [f"{name}: no jobs"]
    problems = []
    jobs = doc["jobs"]
    default_wd = ((doc.get("defaults") or {}).get("run") or {}).get("working-directory")
    for job_id, job in jobs.items():
        if not isinstance(job, dict):
            continue
        needs = job.get("needs", [])
        for need in [needs] if isinstance(needs, str) else needs or []:
            if need not in jobs:
                problems.append(f"{name}: job {job_id}: needs {need!r}, which is not a job of this workflow")
        if isinstance(job.get("uses"), str):
            p = uses_problem(job["uses"], root, f"{name}: job {job_id}")
            if p:
                problems.append(p)
        job_wd = ((job.get("defaults") or {}).get("run") or {}).get("working-directory", default_wd)
        for i, step in enumerate(job.get("steps") or [], start=1):
            if not isinstance(step, dict):
                continue
            where = f"{name}: job {job_id}, step {i}" + (f" ({step['name']})" if step.get("name") else "")
            if isinstance(step.get("uses"), str):
                p = uses_problem(step["uses"], root, where)
                if p:
                    problems.append(p)
            if isinstance(step.get("run"), str):
                wd = step.get("working-directory", job_wd) or "."
                if "${{" in str(wd):
                    continue
                problems.extend(run_problems(step["run"], root / wd, root, where))
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "files", nargs="*", type=Path, help="default: ROOT/.github/workflows/*.yml and *.yaml"
    )
    parser.add_argument("--root", type=Path, default=ROOT, help="the repository (Makefile, scripts)")
    args = parser.parse_args(argv)
    missing = tools_missing()
    if missing:
        print(MISSING_TOOLS.format(what=missing), file=sys.stderr)
        return 2
    root = args.root.resolve()
    files = args.files or sorted((root / ".github" / "workflows").glob("*.y*ml"))
    if not files:
        print(f"lint_workflows: no workflow files under {root / '.github' / 'workflows'}", file=sys.stderr)
        return 1
    problems = schema_problems(files)
    for f in files:
        problems.extend(workflow_problems(f, root))
    if problems:
        print("\n".join(problems), file=sys.stderr)
        print(f"lint_workflows: {len(problems)} problem(s) in {len(files)} workflow(s)", file=sys.stderr)
        return 1
    print(f"lint_workflows: {len(files)} workflow(s) pass ({', '.join(f.name for f in files)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
