"""Pack a built book into one archive to hand out: the offline site, the executed notebooks, a PDF.

``make dist`` runs this after ``make book``. It writes, into ``book/_build/dist/``:

- ``cbp-book-<version>.zip`` holding one folder ``cbp-book-<version>/`` with
  ``site/`` (the HTML book; it loads nothing from the network and opens from ``file://`` as well
  as from any static server such as ``python3 -m http.server``), ``notebooks/`` (the executed
  ``.ipynb`` of every chapter, outputs included, as the book shows them), ``index.html`` (opens the
  site), ``cbp-book.pdf`` (every
  page printed by headless Chromium and joined; left out with a message when Chromium or
  pdfunite/qpdf are missing, or with ``--no-pdf``), ``source/`` (what running the notebooks needs:
  the library ``cbp/``, ``pyproject.toml``, ``requirements.lock``, the ``Makefile`` with
  ``book/make-book.mk``, ``README.md``, ``LICENSE``, ``CITATION.cff``, the notebooks' sources
  ``notebooks/*.py``, the recorded study ``results/`` that chapters 7 and 8 read, and the protocol
  ``experiments/``; ``make workshop`` there sets a laptop up) and ``README.txt`` (how to open each);
- ``cbp-book-<version>.zip.sha256``, in the format ``sha256sum -c`` reads;

and puts a copy of both into the built site's ``handout/`` folder with a page that offers them
(``handout/index.html``, which the intro links; ``make book`` writes that page without an archive,
and the copy of the site inside the archive gets one that points at the archive's other parts).

``<version>`` is the one the build recorded in ``_build/build-info.json`` (``git describe --always
--dirty`` of the tree the book was built from, by ``ci/build_info.py``), so the archive is named
after the build it packs; without that file, ``git describe`` now (or the date outside git).
The script refuses a book whose last build had a failing notebook (``--allow-failed`` to pack it
anyway) and checks the packed site with ``ci/check_offline.py``.

Usage: ``python ci/make_dist.py [--book book] [--out book/_build/dist] [--no-pdf]``
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

import browser_check  # noqa: E402
import build_info  # noqa: E402
import check_offline  # noqa: E402

README = """\
{title}
{underline}

Built on {date} from version {version} of the repository; every page with code was executed then,
on a CPU, with the book's default settings.

site/        the book as a web site. Open index.html (beside this file) or site/index.html in a
             browser (double-click it), or serve the folder and open http://localhost:8000 :
                 python3 -m http.server 8000 --directory site
             It needs no network: MathJax and every figure are inside the folder.
notebooks/   the executed notebook of each chapter, with its outputs (figures, tables, logs):
             open them in Jupyter, VS Code or any notebook viewer to read them as they ran.
source/      the repository's files that running the notebooks needs ({source_version}): the cbp
             library, pyproject.toml and requirements.lock, the Makefile, the notebooks' sources
             (source/notebooks/*.py) and the recorded study (source/results/). One command sets a
             laptop up (python3 3.10+ and make; about {venv_gb} GB of disk for .venv, and PyPI
             reachable while it installs):
                 cd source && make workshop
             then start JupyterLab with  .venv/bin/jupyter lab notebooks/  and open a chapter.
             Each notebook's first code cell lists its parameters. "Teaching with this book"
             (site/teaching.html) has the workshop plan and measured times.
{pdf_line}
Check the archive: sha256sum -c {archive}.sha256
"""


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# What running the notebooks needs, relative to the repository: `make workshop` (Makefile with
# book/make-book.mk, pyproject.toml, requirements.lock, README.md: the package's readme) installs
# cbp/; the notebooks import it, chapters 7 and 8 read results/, and experiments/ holds the protocol
# the records name.
SOURCE_FILES = (
    "Makefile",
    "book/make-book.mk",
    "pyproject.toml",
    "requirements.lock",
    "README.md",
    "LICENSE",
    "CITATION.cff",
)
SOURCE_DIRS = ("cbp", "notebooks", "results", "experiments")
VENV_GB = "6.3"  # .venv of `make workshop`, as measured in book/teaching.md


def _tracked(root: Path) -> list[str] | None:
    """The files git tracks under ROOT (relative, POSIX), or None outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z"], cwd=root, capture_output=True, check=True
        ).stdout.decode()
    except (OSError, subprocess.CalledProcessError):
        return None
    return [name for name in out.split("\0") if name]


def source_files(root: Path = ROOT) -> list[str]:
    """The repository's files the archive's ``source/`` holds (relative, POSIX, sorted).

    In a git checkout, the tracked files of :data:`SOURCE_FILES` and :data:`SOURCE_DIRS` (so no
    ``.venv``, paired ``.ipynb``, ``runs/`` or caches); elsewhere, the same files found on disk,
    without ``__pycache__`` and ``*.ipynb``. Of ``notebooks/``, only the chapters' ``NN_*.py``.
    """
    tracked = _tracked(root)
    if tracked is None:
        tracked = [
            p.relative_to(root).as_posix()
            for d in SOURCE_DIRS
            for p in (root / d).rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".ipynb"
        ] + [f for f in SOURCE_FILES if (root / f).is_file()]
    chosen = []
    for name in tracked:
        top = name.split("/", 1)[0]
        if name in SOURCE_FILES or (top in SOURCE_DIRS and (root / name).is_file()):
            if top == "notebooks" and not re.fullmatch(r"notebooks/\d\d_[^/]+\.py", name):
                continue
            chosen.append(name)
    missing = [
        f for f in ("Makefile", "pyproject.toml", "requirements.lock", "cbp/__init__.py") if f not in chosen
    ]
    if missing:
        raise FileNotFoundError(f"make_dist: the source part lacks {', '.join(missing)} (in {root})")
    return sorted(chosen)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--book", type=Path, default=ROOT / "book")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--no-pdf", action="store_true")
    parser.add_argument("--allow-failed", action="store_true")
    args = parser.parse_args(argv)
    start = time.time()
    build = args.book / "_build"
    site = build / "html"
    out = args.out or build / "dist"
    status_path = build / "notebook-status.json"
    if not (site / "index.html").is_file() or not status_path.is_file():
        print("make_dist: no built book: run 'make book' first", file=sys.stderr)
        return 1
    status = json.loads(status_path.read_text()).get("notebooks", {})
    failed = sorted(k for k, v in status.items() if v.get("status") == "failed")
    if failed and not args.allow_failed:
        print(
            f"make_dist: the last build had failing notebooks ({', '.join(failed)}): fix them and run 'make book'",
            file=sys.stderr,
        )
        return 1

    # What the build recorded about itself (its commit, date and version); this tree now without it.
    info = build_info.read_build_info(build) or {
        **build_info.commit_info(ROOT),
        "date": build_info.build_date(),
    }
    ver = info["version"]
    name = f"cbp-book-{ver}"
    out.mkdir(parents=True, exist_ok=True)
    archive = out / f"{name}.zip"
    with tempfile.TemporaryDirectory() as tmp:
        stage = Path(tmp) / name
        # handout/ holds the page (and, after an earlier `make dist`, an archive) of the site itself
        ignore = shutil.ignore_patterns(".buildinfo", "reports", build_info.HANDOUT_DIR)
        shutil.copytree(site, stage / "site", ignore=ignore)
        problems = check_offline.check_site(stage / "site")
        if problems:
            print(
                "make_dist: the site would load from the network:\n  " + "\n  ".join(problems),
                file=sys.stderr,
            )
            return 1
        executed = build / "executed"
        nbs = sorted(executed.rglob("*.ipynb")) if executed.is_dir() else []
        (stage / "notebooks").mkdir()
        for nb in nbs:
            shutil.copyfile(nb, stage / "notebooks" / nb.name)
        sources = source_files(ROOT)
        for rel in sources:
            (stage / "source" / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, stage / "source" / rel)
        src_info = build_info.commit_info(ROOT)
        source_version = f"version {src_info['version']}" if src_info.get("commit") else "outside git"
        if src_info.get("commit") and src_info["version"] != ver:
            print(f"make_dist: source/ is the tree now ({src_info['version']}), not the book's build ({ver})")
        pdf_line = ""
        if not args.no_pdf:
            t0 = time.time()
            rc = browser_check.main(
                [
                    str(site),
                    "--no-check",
                    "--pdf",
                    str(stage / "cbp-book.pdf"),
                    "--toc",
                    str(args.book / "_toc.yml"),
                ]
            )
            if rc == 0:
                pdf_line = "cbp-book.pdf  the whole book printed to one PDF (A4), in reading order.\n"
                print(f"make_dist: PDF in {time.time() - t0:.0f} s")
            else:
                print("make_dist: no PDF (see above); the archive has the site and the notebooks")
        (stage / "site" / build_info.HANDOUT_DIR).mkdir()
        (stage / "site" / build_info.HANDOUT_DIR / "index.html").write_text(
            build_info.handout_page(info, "unpacked", pdf=bool(pdf_line)), encoding="utf-8"
        )
        (stage / "index.html").write_text(
            '<!DOCTYPE html><meta charset="utf-8"><meta http-equiv="refresh" content="0; url=site/index.html">'
            '<title>cbp book</title><a href="site/index.html">Open the book</a>\n'
        )
        title = f"The cbp book ({ver}): Frozen is better than learning, a runnable reproduction"
        (stage / "README.txt").write_text(
            README.format(
                title=title,
                underline="=" * len(title),
                date=info["date"],
                version=ver,
                pdf_line=pdf_line,
                archive=archive.name,
                source_version=source_version,
                venv_gb=VENV_GB,
            )
        )
        archive.unlink(missing_ok=True)
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
            for path in sorted(stage.parent.rglob("*")):
                if path.is_file():
                    zf.write(path, path.relative_to(stage.parent).as_posix())
    digest = sha256(archive)
    (out / f"{archive.name}.sha256").write_text(f"{digest}  {archive.name}\n")
    size = archive.stat().st_size / 2**20
    # The site's own handout page: this archive and its checksum, beside the page (no older one).
    handout = site / build_info.HANDOUT_DIR
    shutil.rmtree(handout, ignore_errors=True)
    handout.mkdir()
    for path in (archive, out / f"{archive.name}.sha256"):
        shutil.copyfile(path, handout / path.name)
    (handout / "index.html").write_text(
        build_info.handout_page(info, "packed", size_mib=size, pdf=bool(pdf_line)), encoding="utf-8"
    )
    print(
        f"make_dist: {archive} ({size:.1f} MiB: site, {len(nbs)} executed notebooks, "
        f"{len(sources)} source files"
        f"{', PDF' if pdf_line else ''}) and {archive.name}.sha256, in {time.time() - start:.0f} s; "
        f"a copy is offered on {handout / 'index.html'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
