"""`ci/browser_check.py`: a page that is not in the site is refused before Chromium starts.

Chromium loads a missing page as the server's 404 page, which has no raw TeX, no image and no wide
element, so every check of it would pass: the script must say so instead (it once did not when a
page was named with its ``.html``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "ci" / "browser_check.py"


def check(site: Path, *pages: str) -> subprocess.CompletedProcess:
    argv = [sys.executable, str(SCRIPT), str(site), "--pages", *pages, "--widths", "390"]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, env={"PATH": "/nonexistent"})


def test_a_missing_page_fails_and_a_page_may_be_named_with_its_html(tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("<html></html>")
    (tmp_path / "intro.html").write_text("<html><body>intro</body></html>")
    missing = check(tmp_path, "intro", "notebooks/07_ablations")
    assert missing.returncode == 1 and "no such page" in missing.stderr
    assert "notebooks/07_ablations" in missing.stderr and "intro," not in missing.stderr
    # "intro.html" is the page "intro": past the page check, the run stops only for want of Chromium
    # (PATH is empty here), exit 2
    found = check(tmp_path, "intro.html")
    assert found.returncode == 2 and "chromium not found" in found.stderr, found.stderr
