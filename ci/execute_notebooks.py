"""Execute the book's notebooks one by one, outside Sphinx, into the book's jupyter-cache.

``make book`` runs this first, then ``jupyter-book build``. Every notebook of ``book/_toc.yml``
(the Jupytext ``py:percent`` files) is executed in its own kernel, in ``notebooks/``, and the
executed notebook is stored in ``book/_build/.jupyter_cache``, where MyST-NB (execution mode
``cache``) finds it, so that Sphinx executes nothing itself.

- **Cache key.** A notebook is re-executed when its code changes (jupyter-cache's hash of the
  code cells) *or* when anything it may read changes: the library (``cbp/**/*.py``), its data
  tables (``cbp/**/*.tsv``) and the recorded study (``results/**``, without ``tmp/`` folders).
  Their digest is stored with each cached notebook.
- **No fixed timeout.** A cell runs as long as it takes; a cell may set its own limit in seconds
  with the cell metadata ``timeout`` (e.g. ``# %% timeout=900`` in the ``.py`` file).
- **One failure does not take the book away.** A notebook whose cell fails is stored with the
  outputs it produced up to the failing cell (its traceback included) and a box at the top of the
  page that says what failed and how to retry; the other notebooks go on. The next run
  re-executes it. The script exits 1 when a notebook failed.

``--summary`` (after the Sphinx build) prints the one-line summary of the last run and exits
non-zero when a notebook failed or Sphinx did.

Usage::

    python ci/execute_notebooks.py [--book book] [--force] [NAME ...]   # NAME: e.g. 05_train_ade
    python ci/execute_notebooks.py --summary --sphinx-rc RC [--executor-rc RC] [--seconds S]
"""

from __future__ import annotations

import argparse
import hashlib
import html
import json
import os
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# What a notebook may read besides its own code: (label, folder, glob patterns).
DEPENDENCIES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("the cbp library", "cbp", ("**/*.py",)),
    ("the data tables", "cbp", ("**/*.tsv",)),
    ("the recorded study (results/)", "results", ("**/*",)),
)
SKIP_PARTS = {"__pycache__", "tmp", ".ipynb_checkpoints"}
STATUS_NAME = "notebook-status.json"
EXECUTED_DIR = "executed"  # book/_build/executed/<page>.ipynb: the executed notebooks, outputs included
MARKER_CLASS = "cbp-notebook-failed"


def dependency_digests(root: Path = ROOT) -> dict[str, str]:
    """One sha256 (16 hex digits) per dependency group, over sorted relative paths + contents."""
    digests: dict[str, str] = {}
    for label, folder, patterns in DEPENDENCIES:
        base = root / folder
        files = sorted(
            {
                p
                for pattern in patterns
                for p in base.glob(pattern)
                if p.is_file() and not SKIP_PARTS.intersection(p.relative_to(base).parts)
            }
        )
        h = hashlib.sha256()
        for p in files:
            h.update(p.relative_to(root).as_posix().encode() + b"\0")
            h.update(hashlib.sha256(p.read_bytes()).digest())
        digests[label] = h.hexdigest()[:16]
    return digests


def toc_notebooks(book: Path) -> list[Path]:
    """The Jupytext ``.py`` sources of the pages in ``_toc.yml``, in reading order."""
    import yaml

    toc = yaml.safe_load((book / "_toc.yml").read_text(encoding="utf-8"))
    files: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("file"), str):
                files.append(node["file"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(toc)
    out = []
    for f in files:
        path = book / (f if f.endswith(".py") else f + ".py")
        if path.is_file():
            out.append(path)
    return out


def read_notebook(path: Path):
    """The notebook exactly as MyST-NB reads it (``nb_custom_formats``: jupytext, py:percent)."""
    import jupytext

    return jupytext.reads(path.read_text(encoding="utf-8"), fmt="py:percent")


def _cell_timeout(cell) -> int | None:
    value = cell.get("metadata", {}).get("timeout")
    return int(value) if isinstance(value, (int, float)) and value > 0 else None


def _first_error(nb) -> tuple[int, str]:
    """(1-based code-cell number, 'Name: message') of the first error output, or (0, '')."""
    n = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        n += 1
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                return n, f"{out.get('ename', 'Error')}: {out.get('evalue', '')}".strip()
    return 0, ""


def failure_marker(name: str, cell_no: int, error: str) -> dict:
    """A display_data output that marks a page whose notebook failed."""
    where = f"code cell {cell_no}" if cell_no else "a cell"
    retry = "make book"
    work = f"make notebooks, then open notebooks/{name}.ipynb in Jupyter"
    text = (
        f"THIS PAGE DID NOT FINISH EXECUTING: {where} raised {error}\n"
        "Its traceback is shown at that cell; the cells after it did not run and show no output.\n"
        f"Retry: `{retry}` (re-executes this page, reuses every page that built). "
        f"To work on it: {work}."
    )
    body = (
        f'<div class="admonition error {MARKER_CLASS}">'
        '<p class="admonition-title">This page did not finish executing</p>'
        f"<p>When the book was built, {where} raised <code>{html.escape(error)}</code>. Its "
        "traceback is shown at that cell; the cells after it did not run and show no output.</p>"
        f"<p>Retry with <code>{retry}</code>: it re-executes this page and reuses every page that "
        f"built. To work on it: <code>make notebooks</code>, then open "
        f"<code>notebooks/{name}.ipynb</code> in Jupyter.</p></div>"
    )
    return {
        "output_type": "display_data",
        "metadata": {},
        "data": {"text/html": body, "text/plain": text},
    }


def _mark_failed(nb, marker: dict) -> None:
    """Put the marker first in the output of the first code cell that shows its output."""
    import nbformat

    hidden = {"remove-output", "remove-cell", "hide-output", "hide-cell"}
    for cell in nb.cells:
        if cell.cell_type == "code" and not hidden.intersection(cell.metadata.get("tags", [])):
            cell.outputs.insert(0, nbformat.from_dict(marker))
            return


def execute(path: Path, cwd: Path) -> tuple[object, float, str | None]:
    """Execute one notebook; returns (notebook with outputs, seconds, error text or None).

    The returned notebook is the source notebook with the outputs copied in, so that its
    jupyter-cache hash (code, cell metadata and kernelspec) is the one MyST-NB computes from the
    source.
    """
    import copy

    from nbclient import NotebookClient

    source = read_notebook(path)
    nb = copy.deepcopy(source)
    kernel = nb.metadata.get("kernelspec", {}).get("name", "python3")
    client = NotebookClient(
        nb,
        timeout=None,
        timeout_func=_cell_timeout,
        kernel_name=kernel,
        allow_errors=False,
        record_timing=False,
        resources={"metadata": {"path": str(cwd)}},
    )
    start = time.perf_counter()
    error = None
    try:
        client.execute()
    except KeyboardInterrupt:
        raise  # Ctrl-C: the caller stops the build (run() turns it into exit 130)
    except Exception as exc:  # CellExecutionError, CellTimeoutError, DeadKernelError, ...
        _, first = _first_error(nb)
        last = str(exc).strip().splitlines()[-1] if str(exc).strip() else ""
        error = first or f"{type(exc).__name__}: {last}"
        if not first:  # e.g. a timeout or a dead kernel: no error output in the notebook
            traceback.print_exc()
    seconds = time.perf_counter() - start
    for src, done in zip(source.cells, nb.cells):
        if src.cell_type == "code":
            src.outputs = done.get("outputs", [])
            src.execution_count = done.get("execution_count")
    if "language_info" in nb.metadata:
        source.metadata["language_info"] = nb.metadata["language_info"]
    return source, seconds, error


def write_executed(build: Path, rel: Path, nb) -> None:
    """Write the executed notebook (outputs included) where the book's download button and
    ``make dist`` take it from."""
    import copy

    import nbformat

    nb = copy.deepcopy(nb)
    nb.metadata.pop("jupytext", None)
    target = build / EXECUTED_DIR / rel.with_suffix(".ipynb")
    target.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(target))


def run(book: Path, names: list[str], force: bool) -> int:
    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn

    build = book / "_build"
    build.mkdir(parents=True, exist_ok=True)
    cache = get_cache(str(build / ".jupyter_cache"))
    deps = dependency_digests()
    status_path = build / STATUS_NAME
    previous = json.loads(status_path.read_text()) if status_path.is_file() else {}
    old_deps = previous.get("dependencies", {})
    changed = [k for k, v in deps.items() if old_deps and old_deps.get(k) != v]
    if changed:
        print(f"execute_notebooks: {', '.join(changed)} changed since the last build: re-executing")

    notebooks = toc_notebooks(book)
    if names:
        wanted = {n.removesuffix(".py").split("/")[-1] for n in names}
        unknown = wanted - {p.stem for p in notebooks}
        if unknown:
            print(f"execute_notebooks: not in _toc.yml: {', '.join(sorted(unknown))}", file=sys.stderr)
            return 2
    results: dict[str, dict] = dict(previous.get("notebooks", {}))
    results = {k: v for k, v in results.items() if k in {p.stem for p in notebooks}}
    current_keys = set()
    failed = 0
    interrupted = False
    for i, path in enumerate(notebooks, 1):
        name = path.stem
        nb = read_notebook(path)
        hashed_key = cache.create_hashed_notebook(nb)[1]
        current_keys.add(hashed_key)
        selected = not names or name in wanted
        record = None
        try:
            record = cache.match_cache_notebook(nb)
        except KeyError:
            pass
        fresh = (
            record is not None
            and record.data.get("dependencies") == deps
            and record.data.get("succeeded", True)
        )
        if fresh and not (force and selected):
            write_executed(build, path.relative_to(book), cache.merge_match_into_notebook(nb)[1])
            print(f"[{i}/{len(notebooks)}] {name}: cached")
            results[name] = {
                **results.get(name, {}),
                "status": "cached",
                "docname": path.relative_to(book).with_suffix("").as_posix(),
            }
            continue
        if not selected:
            # not asked for now: leave it as it is (Sphinx shows what the cache holds)
            print(f"[{i}/{len(notebooks)}] {name}: not selected, left as it is")
            continue
        print(f"[{i}/{len(notebooks)}] {name}: executing ...", flush=True)
        try:
            nb, seconds, error = execute(path, path.resolve().parent)
        except KeyboardInterrupt:
            interrupted = True
        if interrupted or (error or "").startswith("KeyboardInterrupt"):
            # Ctrl-C (the kernel, in our process group, may have got it first and failed a cell): nothing
            # of this notebook goes into the cache, the ones done so far keep theirs, and the build stops
            print(
                f"[{i}/{len(notebooks)}] {name}: interrupted (Ctrl-C); not cached, build stopped", flush=True
            )
            interrupted = True
            break
        if error:
            cell_no, _ = _first_error(nb)
            _mark_failed(nb, failure_marker(name, cell_no, error))
            failed += 1
            print(f"[{i}/{len(notebooks)}] {name}: FAILED after {seconds:.0f} s: {error}", flush=True)
        else:
            print(f"[{i}/{len(notebooks)}] {name}: ok in {seconds:.0f} s", flush=True)
        cache.cache_notebook_bundle(
            CacheBundleIn(
                nb,
                str(path.absolute()),
                data={"execution_seconds": seconds, "dependencies": deps, "succeeded": error is None},
            ),
            check_validity=False,
            overwrite=True,
        )
        write_executed(build, path.relative_to(book), nb)
        results[name] = {
            "status": "failed" if error else "executed",
            "seconds": round(seconds, 1),
            "error": error,
            "docname": path.relative_to(book).with_suffix("").as_posix(),
        }
    if interrupted:
        status_path.write_text(json.dumps({"dependencies": old_deps, "notebooks": results}, indent=1) + "\n")
        return INTERRUPTED
    # Drop cached versions of our notebooks that no longer match their code.
    ours = {str(p.absolute()) for p in notebooks}
    for record in cache.list_cache_records():
        if record.uri in ours and record.hashkey not in current_keys:
            cache.remove_cache(record.pk)
    failed_now = [k for k, v in results.items() if v.get("status") == "failed"]
    status_path.write_text(json.dumps({"dependencies": deps, "notebooks": results}, indent=1) + "\n")
    return 1 if failed_now else 0


def summary(book: Path, sphinx_rc: int, seconds: int | None, executor_rc: int = 0) -> int:
    """Print the one-line summary of the last build; non-zero when anything failed."""
    status_path = book / "_build" / STATUS_NAME
    results = json.loads(status_path.read_text()).get("notebooks", {}) if status_path.is_file() else {}
    failed = {k: v for k, v in results.items() if v.get("status") == "failed"}
    site = book / "_build" / "html" / "index.html"
    took = f" in {seconds} s" if seconds is not None else ""
    parts = []
    if failed:
        names = ", ".join(f"{k} ({v.get('error', '')[:80]})" for k, v in failed.items())
        parts.append(
            f"{len(failed)} of {len(results)} notebooks FAILED: {names}; their pages say so, retry with `make book`"
        )
    if executor_rc not in (0, 1):
        parts.append(f"the notebook executor stopped with exit {executor_rc} (see above)")
    if sphinx_rc:
        parts.append(f"jupyter-book exited {sphinx_rc} (warnings are errors: see above)")
    if parts:
        built = f"the other pages are in {site}" if site.is_file() else "no site was written"
        print(f"make book: FAILED{took}: " + "; ".join(parts) + f"; {built}")
        return 1
    print(f"make book: OK{took}, {len(results)} notebooks: open file://{site.resolve()}")
    return 0


#: The exit code of a build stopped by Ctrl-C (128 + SIGINT, as a shell reports it); make-book.mk stops on it.
INTERRUPTED = 130


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="notebooks to execute (default: all that are stale)")
    parser.add_argument("--book", type=Path, default=ROOT / "book")
    parser.add_argument("--force", action="store_true", help="re-execute the named (or all) notebooks")
    parser.add_argument("--summary", action="store_true", help="print the summary of the last build")
    parser.add_argument("--sphinx-rc", type=int, default=0)
    parser.add_argument("--executor-rc", type=int, default=0)
    parser.add_argument("--seconds", type=int, default=None)
    args = parser.parse_args(argv)
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    # One torch thread in the kernels (and the runs they start) unless the caller sets another
    # number: on a busy machine a thread per core spins against the other load (see cbp.book.launch.run).
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    # The build's kernel has no ipywidgets: tqdm.auto (imported by timm) warns about it with the
    # absolute path of the building machine, on every page that imports the models. That says
    # nothing about the page; a reader's own Jupyter does not show it.
    os.environ.setdefault("PYTHONWARNINGS", "ignore:IProgress not found")
    if args.summary:
        return summary(args.book, args.sphinx_rc, args.seconds, args.executor_rc)
    return run(args.book, args.names, args.force)


if __name__ == "__main__":
    sys.exit(main())
