"""Sphinx extension of the book.

1. Pages whose notebook ``ci/execute_notebooks.py`` has just executed are read again.
   That script stores executed notebooks in the jupyter-cache before Sphinx runs; a notebook
   re-executed because the library or ``results/`` changed has an unchanged source file, so
   Sphinx would otherwise keep the page it read last time. The script lists them in
   ``_build/notebook-status.json`` (``status``: ``executed`` or ``failed``).
2. Each notebook page offers its executed ``.ipynb`` for download.

sphinx-book-theme's download menu lists an ``.ipynb`` only when the page context names one
(``ipynb_source``), which it sets for ``.md`` notebooks with launch buttons only. Our chapters
are Jupytext ``.py`` files; ``ci/execute_notebooks.py`` writes each executed notebook, outputs
included, to ``_build/executed/<page>.ipynb`` (MyST-NB's own copy in ``_build/jupyter_execute``
has no outputs when they come from the cache). This copies it next to the page's sources
(``_build/html/_sources/<page>.ipynb``) and names it in the context, before the theme builds its
buttons (priority 500 < the theme's 501), so the menu reads ".ipynb, .py, .pdf".
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path


def _reexecuted(app, env, added, changed, removed) -> list[str]:
    status = Path(app.outdir).parent / "notebook-status.json"
    if not status.is_file():
        return []
    notebooks = json.loads(status.read_text(encoding="utf-8")).get("notebooks", {})
    return [
        v["docname"]
        for v in notebooks.values()
        if v.get("status") in ("executed", "failed") and v.get("docname") in env.found_docs
    ]


def _offer_ipynb(app, pagename, templatename, context, doctree) -> None:
    if doctree is None or app.builder.format != "html":
        return
    executed = Path(app.outdir).parent / "executed" / f"{pagename}.ipynb"
    if not executed.is_file():
        return
    target = Path(app.outdir) / "_sources" / f"{pagename}.ipynb"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(executed, target)
    context["ipynb_source"] = f"{pagename}.ipynb"


def _copy_all(app, exception) -> None:
    """Also refresh the copies of pages Sphinx did not write again this time."""
    executed = Path(app.outdir).parent / "executed"
    if exception is not None or app.builder.format != "html" or not executed.is_dir():
        return
    for nb in executed.rglob("*.ipynb"):
        target = Path(app.outdir) / "_sources" / nb.relative_to(executed)
        if target.parent.is_dir():
            shutil.copyfile(nb, target)


def setup(app):
    app.connect("env-get-outdated", _reexecuted)
    app.connect("html-page-context", _offer_ipynb, priority=500)
    app.connect("build-finished", _copy_all)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
