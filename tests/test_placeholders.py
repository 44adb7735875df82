"""No page, notebook or README line is left with a placeholder for the reader to fill in, such as
`git clone <this repository>` or `<your username>`: what the text needs is written, or computed
at build time (book/_ext/cbp_book.py's substitutions)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PLACEHOLDER = re.compile(r"<(?:this|your) [a-z ]+>", re.IGNORECASE)


def _texts() -> list[Path]:
    files = [
        *sorted((ROOT / "book").glob("*.md")),
        *sorted((ROOT / "notebooks").glob("*.py")),
        ROOT / "README.md",
    ]
    assert len(files) > 10 and all(f.is_file() for f in files)
    return files


def test_the_pattern_finds_placeholders() -> None:
    assert PLACEHOLDER.search("git clone <this repository> cbp")
    assert PLACEHOLDER.search("ssh <your user name>@host")
    assert not PLACEHOLDER.search("{term}`view centroids <view centroid>` and x < this > y")


def test_no_placeholders_in_book_notebooks_and_readme() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{n}: {m.group(0)}"
        for path in _texts()
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        for m in PLACEHOLDER.finditer(line)
    ]
    assert not found, "placeholders left for the reader:\n" + "\n".join(found)
