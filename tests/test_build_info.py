"""What the built book says about itself (ci/build_info.py, through book/_ext/cbp_book.py): the
footer of every page (commit, "+ local changes", UTC build date, the newest study records), where
the book is published (from the git remote), the handout page, and `make dist`'s archive named
after the build it packs and offered on that page."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from records import train_record, write_records

ROOT = Path(__file__).resolve().parent.parent
FALLBACK = "build it locally with `make book`, or read it where your copy's GitHub Pages publishes it"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "ci" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


build_info = _load("build_info")


@pytest.mark.parametrize(
    ("remote", "url", "clone"),
    [
        ("https://github.com/ada/cbp", "https://ada.github.io/cbp/", "https://github.com/ada/cbp.git"),
        ("https://github.com/ada/cbp.git", "https://ada.github.io/cbp/", "https://github.com/ada/cbp.git"),
        ("git@github.com:Ada-Lab/cbp-book.git", "https://ada-lab.github.io/cbp-book/", None),
        ("ssh://git@github.com/ada/cbp.git", "https://ada.github.io/cbp/", None),
        # a token in the URL (as in CI checkouts) never reaches the page
        ("https://x-access-token:SECRET@github.com/ada/cbp", "https://ada.github.io/cbp/", None),
        ("https://github.com/ada/ada.github.io", "https://ada.github.io/", None),  # a user site
        ("https://gitlab.com/ada/cbp.git", None, None),
        ("/srv/git/cbp.git", None, None),
        (None, None, None),
    ],
)
def test_where_the_book_is_published(remote, url, clone) -> None:
    assert build_info.published_url(remote) == url
    subs = build_info.substitutions(remote)
    assert set(subs) == {"book_published", "cbp_clone"}
    text = " ".join(subs.values())
    assert "SECRET" not in text and "<" not in text
    if url:
        assert f"[{url}]({url})" in subs["book_published"] and ".github/workflows/book.yml" in text
        if clone:
            assert subs["cbp_clone"] == f"`git clone {clone} cbp`"
    else:
        assert FALLBACK in subs["book_published"]
        assert remote is None or remote not in text  # a local path or another host is not shown


def _rec(run: str, recorded: str, what: str = "amendment 9's check: x", kind: str = "train") -> dict:
    """A record (tests/records.py's) of ``kind`` made at ``recorded`` for the study ``what``."""
    return train_record("linear", 0, 50.0, run=run, kind=kind, recorded=recorded, profile_description=what)


def test_the_study_is_the_newest_folder_with_training_records(tmp_path: Path) -> None:
    results = tmp_path / "results"
    write_records(results / "ablations", [_rec("a-s0", "2026-11-25 10:00:00", "first study: 500 iterations")])
    write_records(results / "ablations-v2-tune", [_rec("t-s0", "2026-11-29 19:24:05", "amendment 5: tuning")])
    tables = "amendment 5's other tables: T5"
    write_records(
        results / "ablations-v2-tables",
        [
            _rec("x-s0", "2026-11-30 03:00:30", tables),
            _rec("x-s1", "2026-12-01 05:51:24", tables),
            _rec("data", "2026-12-09 00:00:00", kind="data"),  # not a training record
        ],
    )
    calib = results / "ablations-v3-calib"
    write_records(calib, [_rec("data", "2026-12-10 00:00:00", kind="data")])  # no training record yet
    (results / "ablations-v2-tables" / "broken.json").write_text("{not json")
    (results / "README.md").write_text("# Recorded results\n")
    assert build_info.study_records(results) == {
        "folder": "results/ablations-v2-tables",
        "runs": 2,
        "first": "2026-11-30",
        "last": "2026-12-01",
        "study": "amendment 5's other tables",
    }
    write_records(calib, [_rec("c-s0", "2026-12-10 08:00:00", "amendment 6: calibration")])
    assert build_info.study_records(results)["folder"] == "results/ablations-v3-calib"
    assert build_info.study_records(tmp_path / "nothing") is None


def test_the_repository_study_is_found() -> None:
    assert "ablations-v2-a6" in build_info.current_folders()
    assert build_info.study_records(ROOT / "results", {"nothing"}) is None
    study = build_info.study_records(ROOT / "results", build_info.current_folders())
    assert study is not None and study["folder"].startswith("results/") and study["runs"] > 0
    assert study["first"] <= study["last"]


def _git(repo: Path, *args: str) -> str:
    cmd = ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", "-c", "commit.gpgsign=false", *args]
    return subprocess.run(cmd, cwd=repo, capture_output=True, text=True, check=True).stdout.strip()


def test_commit_and_local_changes(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "tracked.txt").write_text("a\n")
    _git(repo, "add", "tracked.txt")
    _git(repo, "commit", "-q", "-m", "one")
    short = _git(repo, "rev-parse", "--short", "HEAD")
    assert build_info.commit_info(repo) == {"commit": short, "dirty": False, "version": short}
    (repo / "untracked.txt").write_text("b\n")  # build outputs, data, runs: not local changes
    assert build_info.commit_info(repo)["dirty"] is False
    (repo / "tracked.txt").write_text("changed\n")
    assert build_info.commit_info(repo) == {"commit": short, "dirty": True, "version": f"{short}-dirty"}
    info = {**build_info.commit_info(repo), "date": "2026-12-06", "study": None}
    assert build_info.commit_text(info) == f"commit {short} + local changes"
    assert build_info.commit_info(tmp_path)["commit"] is None  # not a git checkout
    assert build_info.commit_text({"commit": None}) == "an unknown commit (not a git checkout)"


def test_build_date_is_utc_and_honours_source_date_epoch(monkeypatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1780000000")  # 2026-05-28 20:26:40 UTC
    assert build_info.build_date() == "2026-05-28"
    monkeypatch.delenv("SOURCE_DATE_EPOCH")
    assert len(build_info.build_date()) == 10


def test_footer_text() -> None:
    study = {"folder": "results/ablations-v2-tables", "runs": 66, "first": "2026-11-30", "last": "2026-11-30"}
    info = {
        "commit": "3d7e7d6",
        "dirty": True,
        "date": "2026-12-06",
        "study": {**study, "study": "amendment 5's x"},
    }
    assert build_info.footer_html(info) == (
        '<p class="cbp-build-info">Built 2026-12-06 (UTC) from commit 3d7e7d6 + local changes. '
        "Study records: results/ablations-v2-tables/ (amendment 5&#x27;s x, 66 training runs recorded "
        "2026-11-30; the current study&#x27;s newest records).</p>"
    )
    info = {
        "commit": "3d7e7d6",
        "dirty": False,
        "date": "2026-12-06",
        "study": {**study, "last": "2026-12-01"},
    }
    assert "from commit 3d7e7d6. " in build_info.footer_html(info)
    assert "66 training runs recorded 2026-11-30 to 2026-12-01" in build_info.footer_html(info)
    assert "no record of the current study in results/ yet" in build_info.footer_html({**info, "study": None})


def test_handout_pages() -> None:
    info = {"commit": "abc1234", "dirty": False, "date": "2026-12-06", "version": "v1.0"}
    built = build_info.handout_page(info, "built")
    assert "cbp-book-v1.0.zip" in built and "make dist" in built and 'href="cbp-book' not in built
    assert "where Chromium and pdfunite are installed" in built
    packed = build_info.handout_page(info, "packed", size_mib=12.34, pdf=True)
    assert "the whole book as one PDF" in packed
    assert "PDF" not in build_info.handout_page(info, "packed", size_mib=1.0, pdf=False)
    assert 'href="cbp-book-v1.0.zip"' in packed and 'href="cbp-book-v1.0.zip.sha256"' in packed
    assert "(12.3 MiB)" in packed and "sha256sum -c cbp-book-v1.0.zip.sha256" in packed
    unpacked = build_info.handout_page(info, "unpacked", pdf=True)
    assert 'href="../../README.txt"' in unpacked and 'href="../../cbp-book.pdf"' in unpacked
    assert "cbp-book.pdf" not in build_info.handout_page(info, "unpacked", pdf=False)
    for page in (built, packed, unpacked):
        assert 'href="../intro.html"' in page and "built 2026-12-06 (UTC) from commit abc1234" in page
        assert "http" not in page.replace('content="width=device-width', "")  # nothing from the network


def _results(root: Path) -> None:
    write_records(
        root / "results" / "ablations-v2-a6", [_rec("r-s0", "2026-11-30 01:00:00", "amendment 5's x: y")]
    )
    # newer, but not a folder of the current study (cbp.experiments.current): the footer ignores it
    write_records(root / "results" / "ablations-v2-x", [_rec("r-s0", "2026-12-30 01:00:00", "old: y")])


def test_sphinx_footer_on_every_page_and_the_substitutions(tmp_path: Path) -> None:
    """A two-page Sphinx project with the book's theme and extension: both pages carry the footer,
    the teaching page's substitutions are filled in, and the handout page and build-info.json are written."""
    for module in ("sphinx", "sphinx_book_theme", "myst_parser"):
        pytest.importorskip(module)
    repo = tmp_path / "repo"
    src = repo / "book"
    src.mkdir(parents=True)
    _results(repo)
    _git(repo, "init", "-q")
    (src / "conf.py").write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(ROOT / 'book' / '_ext')!r})\n"
        "extensions = ['myst_parser', 'cbp_book']\n"
        "html_theme = 'sphinx_book_theme'\n"
        "myst_enable_extensions = ['substitution']\n"
    )
    (src / "index.md").write_text(
        "# Home\n\nGet it: {{ cbp_clone }}.\n\n{{ book_published }}\n\n```{toctree}\nother\n```\n"
    )
    (src / "other.md").write_text("# Other\n\nText.\n")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "book")
    _git(repo, "remote", "add", "origin", "git@github.com:ada/cbp.git")
    short = _git(repo, "rev-parse", "--short", "HEAD")
    out = src / "_build" / "html"
    env = {**os.environ, "SOURCE_DATE_EPOCH": "1780000000"}
    proc = subprocess.run(
        [sys.executable, "-m", "sphinx", "-q", "-W", "-n", "-b", "html", str(src), str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    footer = (
        f'<p class="cbp-build-info">Built 2026-05-28 (UTC) from commit {short}. Study records: '
        "results/ablations-v2-a6/ (amendment 5&#x27;s x, 1 training run recorded 2026-11-30; the current "
        "study&#x27;s newest records).</p>"
    )
    for page in ("index.html", "other.html"):
        assert footer in (out / page).read_text(encoding="utf-8"), page
    home = (out / "index.html").read_text(encoding="utf-8")
    assert 'href="https://ada.github.io/cbp/"' in home
    assert "https://github.com/ada/cbp.git" in home and "{{" not in home
    handout = (out / "handout" / "index.html").read_text(encoding="utf-8")
    assert f"cbp-book-{short}.zip" in handout and "make dist" in handout
    recorded = json.loads((src / "_build" / "build-info.json").read_text())
    assert recorded["version"] == short and recorded["published"] == "https://ada.github.io/cbp/"


def _built_book(tmp_path: Path) -> Path:
    """A minimal built book (site, notebook status, build info of version v9.9); returns its site."""
    build = tmp_path / "book" / "_build"
    site = build / "html"
    (site / "handout").mkdir(parents=True)
    (site / "index.html").write_text("<!DOCTYPE html><p>book</p>\n")
    (site / "handout" / "index.html").write_text("<p>built</p>\n")
    (build / "notebook-status.json").write_text('{"notebooks": {}}')
    info = {"commit": "abc1234", "dirty": False, "version": "v9.9", "date": "2026-12-06", "study": None}
    build_info.write_build_info(build, info)
    return site


def test_make_dist_names_the_archive_after_the_build_and_offers_it_on_the_handout_page(
    tmp_path: Path,
) -> None:
    make_dist = _load("make_dist")
    site = _built_book(tmp_path)
    out = tmp_path / "dist"
    for _ in range(2):  # a second `make dist` does not pack the first one's copy
        assert make_dist.main(["--book", str(tmp_path / "book"), "--out", str(out), "--no-pdf"]) == 0
    archive = out / "cbp-book-v9.9.zip"
    assert sorted(p.name for p in out.iterdir()) == ["cbp-book-v9.9.zip", "cbp-book-v9.9.zip.sha256"]
    assert sorted(p.name for p in (site / "handout").iterdir()) == [
        "cbp-book-v9.9.zip",
        "cbp-book-v9.9.zip.sha256",
        "index.html",
    ]
    assert (site / "handout" / "cbp-book-v9.9.zip").read_bytes() == archive.read_bytes()
    assert 'href="cbp-book-v9.9.zip"' in (site / "handout" / "index.html").read_text()
    with zipfile.ZipFile(archive) as zf:
        names = zf.namelist()
        assert not any(n.endswith(".zip") for n in names)
        page = zf.read("cbp-book-v9.9/site/handout/index.html").decode()
        readme = zf.read("cbp-book-v9.9/README.txt").decode()
    assert "You are reading the unpacked archive" in page and "cbp-book.pdf" not in page
    assert "Built on 2026-12-06 from version v9.9" in readme


def test_the_archive_carries_the_library_and_the_notebooks_sources(tmp_path: Path) -> None:
    """A student with only the archive can set up and run the notebooks: its source/ holds the
    library, the set-up (Makefile, pyproject.toml, requirements.lock), every chapter's .py and the
    records chapters 7 and 8 read; `import cbp` works from an extracted copy."""
    make_dist = _load("make_dist")
    _built_book(tmp_path)
    out = tmp_path / "dist"
    assert make_dist.main(["--book", str(tmp_path / "book"), "--out", str(out), "--no-pdf"]) == 0
    top = "cbp-book-v9.9/"
    with zipfile.ZipFile(out / "cbp-book-v9.9.zip") as zf:
        names = set(zf.namelist())
        readme = zf.read(top + "README.txt").decode()
        page = zf.read(top + "site/handout/index.html").decode()
        zf.extractall(tmp_path / "unpacked")
    src = top + "source/"
    for rel in (
        "Makefile",
        "book/make-book.mk",  # the Makefile includes it
        "pyproject.toml",
        "requirements.lock",
        "README.md",  # pyproject's readme: pip install -e fails without it
        "LICENSE",
        "cbp/__init__.py",
        "cbp/engine/train.py",
        "cbp/data/classes.py",
        "experiments/protocol.md",
        "results/ablations-v2-hard150/pretrained-cbp_occl-s0.json",  # chapter 7 reads it
    ):
        assert src + rel in names, rel
    assert any(n.startswith(src + "cbp/data/") and n.endswith(".tsv") for n in names)  # package data
    chapters = sorted(p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.py"))
    assert (
        chapters
        and sorted(n[len(src + "notebooks/") :] for n in names if n.startswith(src + "notebooks/"))
        == chapters
    )
    assert not any(
        "__pycache__" in n or n.endswith((".pyc", ".ipynb", ".pt")) for n in names if n.startswith(src)
    )
    assert not any(n.startswith((src + ".venv", src + "runs/", src + "data/", src + "tests/")) for n in names)
    # the one set-up command, and where to start
    assert "cd source && make workshop" in readme and ".venv/bin/jupyter lab notebooks/" in readme
    assert "source/" in page and "make workshop" in page
    # the extracted library imports (from source/, not from this checkout)
    unpacked = tmp_path / "unpacked" / top / "source"
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import cbp, sys; print(cbp.__file__); print(len(cbp.category_basis_prototypes(3, 4)))",
        ],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(unpacked)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert Path(proc.stdout.splitlines()[0]).resolve() == (unpacked / "cbp" / "__init__.py").resolve()
    assert proc.stdout.splitlines()[1] == "3"
    # its Makefile has the workshop target, and it resolves there (dry run: nothing is installed)
    if shutil.which("make"):
        dry = subprocess.run(
            ["make", "--no-print-directory", "-n", "workshop"],
            cwd=unpacked,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert dry.returncode == 0, dry.stderr
        assert 'install -c requirements.lock -e ".[workshop]"' in dry.stdout
        assert "jupytext --quiet --to ipynb" in dry.stdout and "notebooks/01_ambiguity.ipynb" in dry.stdout


def test_source_files_outside_git_skip_caches_and_paired_notebooks(tmp_path: Path) -> None:
    make_dist = _load("make_dist")
    for rel in ("Makefile", "pyproject.toml", "requirements.lock", "README.md", "cbp/__init__.py"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x\n")
    for rel in (
        "cbp/__pycache__/x.pyc",
        "notebooks/01_a.py",
        "notebooks/01_a.ipynb",
        "notebooks/helper.py",
        "runs/r/x",
    ):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x\n")
    assert make_dist.source_files(tmp_path) == [
        "Makefile",
        "README.md",
        "cbp/__init__.py",
        "notebooks/01_a.py",
        "pyproject.toml",
        "requirements.lock",
    ]
    (tmp_path / "Makefile").unlink()
    with pytest.raises(FileNotFoundError, match="Makefile"):
        make_dist.source_files(tmp_path)


def test_the_repository_address_declared_in_pyproject_is_used_without_a_remote(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "cbp"\n[project.urls]\nRepository = "https://github.com/ada/cbp"\n'
    )
    assert build_info.declared_repository(tmp_path) == "https://github.com/ada/cbp"
    assert build_info.remote_url(tmp_path) == "https://github.com/ada/cbp"  # not a git checkout
    assert build_info.substitutions(build_info.remote_url(tmp_path))["cbp_clone"] == (
        "`git clone https://github.com/ada/cbp.git cbp`"
    )
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "cbp"\n')
    assert build_info.remote_url(tmp_path) is None
    said = build_info.substitutions(None)["cbp_clone"]
    assert "no repository address" in said and "handout archive" in said


def test_check_site_finds_pages_without_the_footer(tmp_path: Path) -> None:
    site = tmp_path / "html"
    (site / "_static").mkdir(parents=True)
    (site / "notebooks").mkdir()
    footer = build_info.footer_html({"commit": "abc", "dirty": False, "date": "2026-12-06", "study": None})
    (site / "index.html").write_text('<meta http-equiv="refresh" content="0; url=intro.html">')  # a redirect
    (site / "_static" / "macros.html").write_text("{% macro x() %}{% endmacro %}")  # a template
    (site / "intro.html").write_text(f"<footer>{footer}</footer>")
    (site / "notebooks" / "01.html").write_text("<footer>nothing</footer>")
    assert build_info.pages_without_footer(site) == (2, ["notebooks/01.html"])
    assert build_info.main(["--check", str(site)]) == 1
    (site / "notebooks" / "01.html").write_text(f"<footer>{footer}</footer>")
    assert build_info.main(["--check", str(site)]) == 0
    assert build_info.main(["--check", str(tmp_path / "empty")]) == 1  # no pages is no check
