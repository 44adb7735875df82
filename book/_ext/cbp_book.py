"""Sphinx extension of the book.

1. Pages whose notebook ``ci/execute_notebooks.py`` has just executed are read again.
   That script stores executed notebooks in the jupyter-cache before Sphinx runs; a notebook
   re-executed because the library or ``results/`` changed has an unchanged source file, so
   Sphinx would otherwise keep the page it read last time. The script lists them in
   ``_build/notebook-status.json`` (``status``: ``executed`` or ``failed``).
2. Each notebook page offers its executed ``.ipynb`` for download.
3. Every page says what it is: its footer names the commit the site was built from ("+ local
   changes" when tracked files differed), the build date (UTC) and the study it reports (the
   newest ``results/`` folder with training records, and their dates); ``book/teaching.md``'s
   substitutions ``{{ book_published }}`` and ``{{ cbp_clone }}`` say where the book is published
   and how to get the code, from ``git remote get-url origin``. All of it is computed at build time
   by ``ci/build_info.py``, which also writes ``_build/build-info.json`` and the site's
   ``handout/index.html`` (the intro links it; ``make dist`` puts the archive of this build there).

sphinx-book-theme's download menu lists an ``.ipynb`` only when the page context names one
(``ipynb_source``), which it sets for ``.md`` notebooks with launch buttons only. Our chapters
are Jupytext ``.py`` files; ``ci/execute_notebooks.py`` writes each executed notebook, outputs
included, to ``_build/executed/<page>.ipynb`` (MyST-NB's own copy in ``_build/jupyter_execute``
has no outputs when they come from the cache). This copies it next to the page's sources
(``_build/html/_sources/<page>.ipynb``) and names it in the context, before the theme builds its
buttons (priority 500 < the theme's 501), so the menu reads ".ipynb, .py, .pdf".
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path


def _load_build_info():
    """ci/build_info.py, beside the book (a script folder, not a package)."""
    path = Path(__file__).resolve().parents[2] / "ci" / "build_info.py"
    spec = importlib.util.spec_from_file_location("cbp_build_info", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


build_info = _load_build_info()


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


def _root(app) -> Path:
    return Path(app.config.cbp_repository_root or Path(app.srcdir).parent).resolve()


def _describe_build(app, config) -> None:
    """The footer of every page and the publication substitutions, computed now."""
    root = _root(app)
    info = build_info.collect(root)
    app.cbp_build_info = info
    options = dict(config.html_theme_options or {})
    footer = build_info.footer_html(info)
    extra = options.get("extra_footer") or ""
    options["extra_footer"] = f"{extra}\n{footer}" if extra and footer not in extra else footer
    config.html_theme_options = options
    if hasattr(config, "myst_substitutions"):
        ours = build_info.substitutions(build_info.remote_url(root))
        config.myst_substitutions = {**ours, **(config.myst_substitutions or {})}


def _write_handout(app, exception) -> None:
    """``_build/build-info.json`` and the site's handout page (no archive yet: ``make dist`` adds it)."""
    if exception is not None or app.builder.format != "html":
        return
    info = app.cbp_build_info
    build_info.write_build_info(Path(app.outdir).parent, info)
    handout = Path(app.outdir) / build_info.HANDOUT_DIR
    shutil.rmtree(handout, ignore_errors=True)  # an archive of an earlier build does not belong here
    handout.mkdir(parents=True)
    (handout / "index.html").write_text(build_info.handout_page(info, "built"), encoding="utf-8")


def setup(app):
    app.add_config_value("cbp_repository_root", None, "env")  # default: the folder above the book
    app.connect("config-inited", _describe_build)
    app.connect("env-get-outdated", _reexecuted)
    app.connect("html-page-context", _offer_ipynb, priority=500)
    app.connect("build-finished", _copy_all)
    app.connect("build-finished", _write_handout)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
