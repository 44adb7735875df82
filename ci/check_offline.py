"""Fail when the built book would load anything from the network.

Scans every ``*.html`` under the site folder for external URLs (``http://``, ``https://`` or
protocol-relative ``//host``) in the attributes that make a browser fetch something:
``<script src>``, ``<link href>`` (stylesheets, fonts, preloads, icons), ``<img src/srcset>``,
``<iframe src>``, ``<source/video/audio/embed/object src|data>``, and inline ``style`` /
``<style>`` CSS ``@import`` and ``url(...)``. Every local ``.css`` and ``.js`` file that the pages
reference is scanned too: CSS for ``@import`` / ``url()``, JavaScript for URL literals that are
fetched (``import(...)``, ``fetch(...)``, ``.src =``, ``loadScript``...). Plain ``<a href>``
hyperlinks to other sites are citations a reader may click and are allowed.

Usage: ``python ci/check_offline.py book/_build/html``; exit 1 with a list of offenders.
"""

from __future__ import annotations

import argparse
import re
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

EXTERNAL = re.compile(r"^\s*(?:https?:)?//", re.IGNORECASE)
# Attributes that fetch a resource, by tag.
FETCHING_ATTRS: dict[str, tuple[str, ...]] = {
    "script": ("src",),
    "link": ("href",),
    "img": ("src", "srcset"),
    "iframe": ("src",),
    "source": ("src", "srcset"),
    "video": ("src", "poster"),
    "audio": ("src",),
    "embed": ("src",),
    "object": ("data",),
    "track": ("src",),
    "input": ("src",),
}
# <link rel=...> values that are only metadata and never fetched by a browser.
NON_FETCHING_REL = {"canonical", "alternate", "author", "license", "help", "search", "index", "next", "prev"}
CSS_URL = re.compile(r"""(?:@import\s+(?:url\()?|url\()\s*['"]?([^'")\s]+)""", re.IGNORECASE)
# JavaScript: URL literals in a position where they are fetched. Library code (MathJax,
# jQuery...) mentions many URLs in comments and licences; only fetch-like uses are flagged.
JS_FETCH = re.compile(
    r"""(?:import\s*\(|fetch\s*\(|\.src\s*=|loadScript\s*\(|importScripts\s*\(|"""
    r"""\.href\s*=|XMLHttpRequest[^;]{0,80}open\s*\([^,]+,)\s*['"`]((?:https?:)?//[^'"`]+)""",
    re.IGNORECASE,
)


class _PageScanner(HTMLParser):
    """Collects (what, url) for fetching attributes and the local assets a page references."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.offenders: list[tuple[str, str]] = []
        self.local_assets: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = {k.lower(): (v or "") for k, v in attrs}
        if tag == "link" and set(attr.get("rel", "").lower().split()) & NON_FETCHING_REL:
            if not set(attr.get("rel", "").lower().split()) - NON_FETCHING_REL:
                return
        for name in FETCHING_ATTRS.get(tag, ()):
            value = attr.get(name, "")
            urls = [part.strip().split(" ")[0] for part in value.split(",")] if name == "srcset" else [value]
            for url in urls:
                if EXTERNAL.match(url):
                    self.offenders.append((f"<{tag} {name}>", url))
                elif url and not url.startswith(("data:", "#", "mailto:", "javascript:")):
                    self.local_assets.append(url)
        if "style" in attr:
            self._scan_css(attr["style"], f"<{tag} style>")
        if tag == "style":
            self._in_style = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "style":
            self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self._scan_css(data, "<style>")

    def _scan_css(self, css: str, where: str) -> None:
        for url in CSS_URL.findall(css):
            if EXTERNAL.match(url):
                self.offenders.append((where, url))


def scan_css_text(css: str) -> list[str]:
    """External URLs imported or referenced by ``url()`` in a stylesheet."""
    return [u for u in CSS_URL.findall(css) if EXTERNAL.match(u)]


def scan_js_text(js: str) -> list[str]:
    """External URLs that a script fetches (import(), fetch(), .src=, ...)."""
    return JS_FETCH.findall(js)


def check_site(site: Path) -> list[str]:
    """All offenders in a built site, as printable lines ``file: what url``."""
    problems: list[str] = []
    assets: set[Path] = set()
    pages = sorted(site.rglob("*.html"))
    if not pages:
        return [f"{site}: no .html files found (build the book first: make book)"]
    for page in pages:
        scanner = _PageScanner()
        scanner.feed(page.read_text(encoding="utf-8", errors="replace"))
        for what, url in scanner.offenders:
            problems.append(f"{page.relative_to(site)}: {what} {url}")
        for ref in scanner.local_assets:
            path = urlsplit(ref).path
            if path.endswith((".css", ".js")):
                assets.add((page.parent / path).resolve())
    # Stylesheets can @import further stylesheets: follow them.
    todo = sorted(assets)
    seen: set[Path] = set()
    while todo:
        asset = todo.pop()
        if asset in seen or not asset.is_file():
            continue
        seen.add(asset)
        text = asset.read_text(encoding="utf-8", errors="replace")
        rel = asset.relative_to(site.resolve()) if asset.is_relative_to(site.resolve()) else asset
        if asset.suffix == ".css":
            problems += [f"{rel}: css url {u}" for u in scan_css_text(text)]
            for u in CSS_URL.findall(text):
                p = urlsplit(u).path
                if not EXTERNAL.match(u) and p.endswith(".css"):
                    todo.append((asset.parent / p).resolve())
        else:
            problems += [f"{rel}: js fetch {u}" for u in scan_js_text(text)]
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("site", type=Path, nargs="?", default=Path("book/_build/html"))
    args = parser.parse_args(argv)
    problems = check_site(args.site)
    if problems:
        print(f"check_offline: {len(problems)} external resource(s) in {args.site}:", file=sys.stderr)
        for line in problems:
            print("  " + line, file=sys.stderr)
        print(
            "Vendor the asset under book/_static or switch the feature off in book/_config.yml.",
            file=sys.stderr,
        )
        return 1
    n = len(list(args.site.rglob("*.html")))
    print(f"check_offline: OK, {n} pages load nothing from the network")
    return 0


if __name__ == "__main__":
    sys.exit(main())
