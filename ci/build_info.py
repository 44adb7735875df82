"""What a built book says about itself: its commit, its build date, the study it reports, where it
is published, and its handout page.

Used by the book's Sphinx extension (``book/_ext/cbp_book.py``: every page's footer, the
substitutions of ``book/teaching.md``, ``_build/build-info.json`` and the site's ``handout/`` page)
and by ``ci/make_dist.py`` (the archive is named after the build it packs, and its copy in the
site's ``handout/`` page). Everything is computed from the working tree; nothing is typed in:

- **commit**: ``git rev-parse --short HEAD``, with "+ local changes" when tracked files differ from
  it (``git status --untracked-files=no``); the archive's version is ``git describe --always
  --dirty``, as before;
- **build date**: today in UTC (or ``SOURCE_DATE_EPOCH`` when set, for reproducible builds);
- **study**: the current study's newest folder of ``results/`` that holds training records
  (``"kind": "train"``), by the latest ``recorded`` time in it, with its first and last record dates;
  the current study's folders come from the library's one pointer, ``cbp.experiments.current``;
- **where the book is published**: from the repository's address (``git remote get-url origin``,
  else the ``Repository`` URL of ``pyproject.toml``'s ``[project.urls]``) when it is a GitHub
  repository (``https://github.com/OWNER/REPO`` or ``git@github.com:OWNER/REPO.git``) -> its
  GitHub Pages address, ``https://OWNER.github.io/REPO/``, where ``.github/workflows/book.yml``
  deploys it, and the ``git clone`` command of the teaching page; without one, sentences that say
  plainly that this build has no address to give, and how to get the code instead (the handout
  archive carries it).
"""

from __future__ import annotations

import datetime
import html
import json
import os
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HANDOUT_DIR = "handout"  # the site's folder with the handout page (and, after `make dist`, the archive)
ARCHIVE_PREFIX = "cbp-book-"

GITHUB_REMOTE = re.compile(
    r"^(?:https?://(?:[^@/]+@)?github\.com/|ssh://git@github\.com/|git@github\.com:)"
    r"(?P<owner>[A-Za-z0-9-]+)/(?P<repo>[A-Za-z0-9_.-]+?)(?:\.git)?/?$"
)


def _git(root: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip()


def commit_info(root: Path = ROOT) -> dict:
    """``commit`` (short hash or None outside git), ``dirty`` (tracked files changed) and ``version``
    (``git describe --always --dirty``, the archive's name; the date outside git)."""
    commit = _git(root, "rev-parse", "--short", "HEAD")
    status = _git(root, "status", "--porcelain", "--untracked-files=no") if commit else None
    version = _git(root, "describe", "--always", "--dirty") if commit else None
    return {
        "commit": commit,
        "dirty": bool(status),
        "version": version or build_date(),
    }


def build_date() -> str:
    """Today's date in UTC (``SOURCE_DATE_EPOCH``'s when it is set), as YYYY-MM-DD."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    now = (
        datetime.datetime.fromtimestamp(int(epoch), datetime.timezone.utc)
        if epoch and epoch.isdigit()
        else datetime.datetime.now(datetime.timezone.utc)
    )
    return now.date().isoformat()


def current_folders() -> set[str]:
    """The folder names of the current study (``cbp.experiments.current.CURRENT``)."""
    from cbp.experiments.current import CURRENT

    return {p.name for p in CURRENT.folders().values()}


def study_records(results: Path, only: set[str] | None = None) -> dict | None:
    """The newest study folder of RESULTS (of those named in ``only``, when given): the one whose latest
    training record is the most recent.

    Returns:
        ``folder`` (relative to the repository, e.g. ``results/ablations-v2-tables``), ``runs`` (its
        training records), ``first`` and ``last`` (their record dates, YYYY-MM-DD) and ``study``
        (the part of the records' ``profile_description`` before its first colon, when they agree),
        or None when no folder holds a training record.
    """
    best = None
    folders = sorted(p for p in results.iterdir() if p.is_dir()) if results.is_dir() else []
    for folder in (f for f in folders if only is None or f.name in only):
        recorded, descriptions = [], set()
        for path in folder.glob("*.json"):
            try:
                record = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if not isinstance(record, dict) or record.get("kind") != "train" or not record.get("recorded"):
                continue
            recorded.append(str(record["recorded"]))
            descriptions.add(str(record.get("profile_description", "")).split(":", 1)[0].strip())
        if not recorded:
            continue
        recorded.sort()
        info = {
            "folder": f"{results.name}/{folder.name}",
            "runs": len(recorded),
            "first": recorded[0][:10],
            "last": recorded[-1][:10],
            "study": descriptions.pop() if len(descriptions) == 1 else "",
            "_latest": recorded[-1],
        }
        if best is None or info["_latest"] >= best["_latest"]:
            best = info
    if best is not None:
        best.pop("_latest")
    return best


def declared_repository(root: Path = ROOT) -> str | None:
    """The ``Repository`` (or ``Source``) URL of ``pyproject.toml``'s ``[project.urls]``, if any."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        return None
    try:
        urls = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["project"]["urls"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    for key, url in urls.items() if isinstance(urls, dict) else []:
        if key.lower() in ("repository", "source", "source code") and isinstance(url, str):
            return url.strip()
    return None


def remote_url(root: Path = ROOT) -> str | None:
    """The repository's address: ``git remote get-url origin``, else the one ``pyproject.toml``
    declares (:func:`declared_repository`); None when the build has neither."""
    return _git(root, "remote", "get-url", "origin") or declared_repository(root)


def github_repo(remote: str | None) -> tuple[str, str] | None:
    """(owner, repo) of a GitHub remote URL, or None for any other remote (or none)."""
    m = GITHUB_REMOTE.match((remote or "").strip())
    return (m.group("owner"), m.group("repo")) if m else None


def published_url(remote: str | None) -> str | None:
    """The GitHub Pages address of a GitHub remote (``https://owner.github.io/repo/``), else None."""
    repo = github_repo(remote)
    if repo is None:
        return None
    owner, name = repo[0].lower(), repo[1]
    if name.lower() == f"{owner}.github.io":  # a user or organisation site is served at the root
        return f"https://{owner}.github.io/"
    return f"https://{owner}.github.io/{name}/"


def substitutions(remote: str | None) -> dict[str, str]:
    """MyST substitutions (Markdown) that say where the book is published and how to get the code."""
    url, repo = published_url(remote), github_repo(remote)
    if url and repo:
        clone = f"https://github.com/{repo[0]}/{repo[1]}.git"
        return {
            "book_published": (
                f"It is published at [{url}]({url}), built and deployed by `.github/workflows/book.yml` "
                "on every push to main; `make book` builds the same site locally."
            ),
            "cbp_clone": f"`git clone {clone} cbp`",
        }
    return {
        "book_published": (
            "This copy of the repository has no GitHub remote to name its address: build it locally "
            "with `make book`, or read it where your copy's GitHub Pages publishes it."
        ),
        "cbp_clone": (
            "this build has no repository address to print: the repository it was built from has no "
            "GitHub remote and its `pyproject.toml` declares no `Repository` URL, so clone it from "
            "where you got it, or unpack the handout archive, whose `source/` folder holds "
            "everything below"
        ),
    }


def collect(root: Path = ROOT) -> dict:
    """Everything the footer and the handout page say, for a build of ROOT now."""
    info = commit_info(root)
    info["date"] = build_date()
    info["study"] = study_records(root / "results", current_folders())
    info["published"] = published_url(remote_url(root))
    return info


def commit_text(info: dict) -> str:
    if not info.get("commit"):
        return "an unknown commit (not a git checkout)"
    return f"commit {info['commit']}" + (" + local changes" if info.get("dirty") else "")


def study_text(info: dict) -> str:
    study = info.get("study")
    if not study:
        return "no record of the current study in results/ yet"
    dates = study["first"] if study["first"] == study["last"] else f"{study['first']} to {study['last']}"
    what = f"{study['study']}, " if study.get("study") else ""
    runs = f"{study['runs']} training run{'' if study['runs'] == 1 else 's'}"
    return f"{study['folder']}/ ({what}{runs} recorded {dates}; the current study's newest records)"


def footer_html(info: dict) -> str:
    """The line at the foot of every page."""
    e = html.escape
    return (
        '<p class="cbp-build-info">'
        f"Built {e(info['date'])} (UTC) from {e(commit_text(info))}. "
        f"Study records: {e(study_text(info))}."
        "</p>"
    )


def archive_name(version: str) -> str:
    return f"{ARCHIVE_PREFIX}{version}.zip"


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>The handout archive: cbp book</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 42rem; margin: 2rem auto; padding: 0 1rem;
  line-height: 1.5; overflow-wrap: anywhere; }}
code {{ overflow-wrap: anywhere; }}
</style></head>
<body><main>
<h1>The handout archive</h1>
{body}
<p class="cbp-build-info">This site: built {date} (UTC) from {commit}.</p>
<p><a href="../intro.html">Back to the book</a></p>
</main></body></html>
"""


def handout_page(info: dict, state: str, size_mib: float | None = None, pdf: bool = False) -> str:
    """The site's ``handout/index.html``.

    Args:
        info: :func:`collect`'s dict (``version``, ``date``, ``commit``...).
        state: ``"built"`` (by ``make book``: no archive yet), ``"packed"`` (``make dist`` put the
            archive beside the page) or ``"unpacked"`` (the copy inside the archive).
        size_mib: the archive's size (``"packed"``).
        pdf: whether the archive holds the PDF (``"packed"``, ``"unpacked"``).
    """
    e = html.escape
    name = archive_name(info["version"])
    what = (
        "the site, the executed notebook of every chapter, and the library and notebooks' sources to "
        "run them (<code>make workshop</code>)" + (", and the whole book as one PDF" if pdf else "")
    )
    if state == "packed":
        size = f" ({size_mib:.1f} MiB)" if size_mib is not None else ""
        body = (
            f'<p>This build of the book in one file{size}: <a href="{e(name)}">{e(name)}</a>, with {what}. '
            "It opens offline: unzip it and open its <code>index.html</code>; its "
            "<code>README.txt</code> says what each part is.</p>\n"
            f'<p>Its checksum: <a href="{e(name)}.sha256">{e(name)}.sha256</a>; check the download with '
            f"<code>sha256sum -c {e(name)}.sha256</code> (both files in one folder).</p>"
        )
    elif state == "unpacked":
        pdf_item = (
            '<li><a href="../../cbp-book.pdf">cbp-book.pdf</a>: the whole book, one PDF</li>' if pdf else ""
        )
        body = (
            f"<p>You are reading the unpacked archive <code>{e(name)}</code>. Its other parts are in "
            "the folder above this site:</p>\n<ul>"
            '<li><a href="../../README.txt">README.txt</a>: what each part is</li>'
            '<li><a href="../../notebooks/">notebooks/</a>: the executed notebook of every chapter</li>'
            '<li><a href="../../source/">source/</a>: the library and the notebooks\' sources; '
            "<code>cd source &amp;&amp; make workshop</code> sets a laptop up to run them</li>"
            f"{pdf_item}</ul>"
        )
    else:
        what += " (and a PDF of the whole book where Chromium and pdfunite are installed)"
        body = (
            f"<p>This build's archive, <code>{e(name)}</code> ({what}), is made by <code>make dist</code>, "
            "which also puts a copy on this page. This copy of the site was built without it: run "
            f"<code>make dist</code> in the repository (it writes <code>book/_build/dist/{e(name)}</code>), "
            "or read the book as it is.</p>"
        )
    return _PAGE.format(body=body, date=e(info["date"]), commit=e(commit_text(info)))


def write_build_info(build: Path, info: dict) -> Path:
    """``_build/build-info.json``: what the last build of the site said about itself."""
    path = build / "build-info.json"
    path.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return path


def pages_without_footer(site: Path) -> tuple[int, list[str]]:
    """(number of pages, those without the build footer) of a built site; redirects and the
    theme's ``_static`` templates are not pages."""
    pages, missing = 0, []
    for path in sorted(site.rglob("*.html")):
        rel = path.relative_to(site).as_posix()
        text = path.read_text(encoding="utf-8", errors="replace")
        if rel.startswith("_") or 'http-equiv="refresh"' in text[:2000].lower():
            continue
        pages += 1
        if 'class="cbp-build-info"' not in text:
            missing.append(rel)
    return pages, missing


def read_build_info(build: Path) -> dict | None:
    path = build / "build-info.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def main(argv: list[str] | None = None) -> int:
    """``python ci/build_info.py``: what a build now would say; ``--check SITE``: every page of a
    built site carries the footer (``make book-check`` runs it)."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(description=main.__doc__.splitlines()[0])
    parser.add_argument("--check", type=Path, metavar="SITE", help="a built site, e.g. book/_build/html")
    args = parser.parse_args(argv)
    if args.check is None:
        info = collect()
        print(json.dumps(info, indent=2))
        print(footer_html(info))
        return 0
    pages, missing = pages_without_footer(args.check)
    if not pages or missing:
        print(
            f"build_info: {len(missing)} of {pages} pages have no build footer: {', '.join(missing)}",
            file=sys.stderr,
        )
        return 1
    print(f"build_info: every page of {args.check} names its build ({pages} pages)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
