"""Every page of the built book in headless Chromium, at desktop and phone width: checks + screenshots.

For each HTML page of the site (search/index pages aside) and each width (default 1280 px and
390 px, the second as a phone: mobile viewport emulation), Chromium loads the page, waits for
its images and for MathJax, and the check fails on

- **raw TeX**: visible text outside code that still reads ``$...$``, ``$$``, ``\\(``, ``\\[`` or
  a TeX command such as ``\\frac`` after MathJax ran (math that was never typeset);
- **a missing image**: an ``<img>`` that did not load;
- **a page wider than the viewport**: the page scrolls sideways, or an element of the article
  sticks out of the screen (a wide table or figure not inside a scroll box);
- **a network request**: anything fetched from another host than the local site.

Images without a real alt text (empty, or a file name) are listed, not failed.

``--out DIR`` also writes screenshots of each whole page at each width, cut into tiles that the
eye can read (``DIR/<page>_w1280_01.png``, ``DIR/<page>_w390_01.png``...). ``--pdf FILE`` prints
the pages of ``--toc`` in reading order with Chromium's print-to-PDF (A4) and joins them into one
PDF (needs pdfunite from poppler-utils, or qpdf).

The site is served from 127.0.0.1 by this script (``--file``: loaded from ``file://`` instead).
Chromium is driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``): no port,
no extra package. Needs Debian's ``chromium`` (``apt-get install -y chromium``); exit 2 without it.

Usage::

    python ci/browser_check.py book/_build/html --out book/_build/screenshots
    python ci/browser_check.py book/_build/html --pages intro notebooks/07_ablations --widths 390
    python ci/browser_check.py book/_build/html --no-check --pdf book.pdf --toc book/_toc.yml
"""

from __future__ import annotations

import argparse
import base64
import functools
import http.server
import json
import os
import re
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

SKIP_PAGES = {"genindex.html", "search.html", "py-modindex.html"}
PHONE_BELOW = 700  # widths below this are emulated as a phone (mobile viewport)
TILE_HEIGHT = {1280: 2000}  # screenshot tile height by width; others: 2.2 x the width
MAX_VIEWPORT = 16000  # px: taller pages are screenshot in several scroll positions
MAX_TILES = 40  # screenshots of one page at one width (the API page is 180,000 px tall)

# Evaluated in the page after its load event; resolves to the measurements.
CHECK_JS = r"""
(async () => {
  const imgs = Array.from(document.images);
  imgs.forEach((i) => { i.loading = 'eager'; });
  const loaded = imgs.map((i) => i.complete ? null : new Promise((r) => {
    i.addEventListener('load', r); i.addEventListener('error', r); }));
  await Promise.race([Promise.all(loaded), new Promise((r) => setTimeout(r, 15000))]);
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    try { await MathJax.startup.promise; } catch (e) {}
  }
  if (document.fonts && document.fonts.ready) await document.fonts.ready;
  await new Promise((r) => setTimeout(r, 200));

  const TEX = /\$\$|\$[^\s$][^$]{0,200}?\$|\\\(|\\\)|\\\[|\\\]|\\(frac|sum|prod|mathbf|mathrm|mathcal|left|right|alpha|beta|tau|lambda|phi|cdot|propto|sqrt|top|leq|geq|langle|rangle|operatorname|text)\b/;
  const SKIP = /^(SCRIPT|STYLE|PRE|CODE|KBD|SAMP|TEXTAREA|MJX-CONTAINER|MJX-ASSISTIVE-MML|MATH|SVG)$/i;
  const doc = document.documentElement, vw = doc.clientWidth;
  const root = document.querySelector('article') || document.querySelector('main') || document.body;
  const visible = (el) => {
    const s = getComputedStyle(el);
    if (s.display === 'none' || s.visibility === 'hidden') return false;
    const r = el.getBoundingClientRect();
    return r.width > 0 && r.height > 0;
  };
  const skipped = (el) => {
    for (let e = el; e && e !== root; e = e.parentElement) {
      if (SKIP.test(e.tagName) || e.classList.contains('highlight')) return true;
    }
    return false;
  };
  const describe = (el) => {
    let s = el.tagName.toLowerCase();
    if (el.id) s += '#' + el.id;
    if (el.classList.length) s += '.' + Array.from(el.classList).slice(0, 3).join('.');
    const t = (el.textContent || '').replace(/\s+/g, ' ').trim().slice(0, 40);
    return t ? s + ' "' + t + '"' : s;
  };
  const res = {width: vw, scrollWidth: doc.scrollWidth, height: doc.scrollHeight,
               tex: [], images: [], alt: [], clipped: [], blurry: []};
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT, null);
  while (walker.nextNode()) {
    const node = walker.currentNode, m = TEX.exec(node.nodeValue);
    if (m && !skipped(node.parentElement) && visible(node.parentElement)) {
      const t = node.nodeValue, i = Math.max(0, m.index - 30);
      res.tex.push(t.slice(i, m.index + m[0].length + 30).replace(/\s+/g, ' ').trim());
    }
  }
  for (const img of imgs) {
    const src = img.getAttribute('src') || '';
    if (!img.complete || img.naturalWidth === 0) res.images.push(src);
    // a raster figure needs twice the pixels it is shown with, or it is blurry on a high-density screen
    const shown = img.getBoundingClientRect().width;
    if (root.contains(img) && shown > 0 && img.naturalWidth > 0 && !/\.svg(\?|$)/i.test(src)
        && img.naturalWidth < 1.9 * shown)
      res.blurry.push(src.split('/').pop().slice(0, 24) + ': ' + img.naturalWidth + ' px shown at ' + Math.round(shown) + ' px');
    const alt = (img.getAttribute('alt') || '').trim();
    if (root.contains(img) && (!alt || /\.(png|jpe?g|svg|gif)$/i.test(alt)))
      res.alt.push(src.split('/').pop().slice(0, 24) + (alt ? ' (alt is a file name)' : ' (no alt)'));
  }
  for (const el of root.querySelectorAll('*')) {
    if (res.clipped.length >= 10) break;
    const r = el.getBoundingClientRect();
    if (r.right <= vw + 1 || r.width === 0 || !visible(el) || el.closest('mjx-assistive-mml')) continue;
    let inScroller = false;
    for (let p = el.parentElement; p && p !== document.body; p = p.parentElement) {
      const o = getComputedStyle(p).overflowX;
      if (o === 'auto' || o === 'scroll') { inScroller = true; break; }
    }
    if (inScroller) continue;
    const parent = el.parentElement;
    if (parent === root || parent.getBoundingClientRect().right <= vw + 1)
      res.clipped.push(describe(el) + ' ends at ' + Math.round(r.right) + ' px');
  }
  return res;
})()
"""

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--mute-audio",
    "--hide-scrollbars",
]


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


class Chromium:
    """A headless Chromium driven over the DevTools protocol on fds 3/4 (--remote-debugging-pipe)."""

    def __init__(self, browser: str, profile: Path) -> None:
        to_chrome_r, self._w = os.pipe()
        self._r, from_chrome_w = os.pipe()

        def child() -> None:
            a, b = os.dup(to_chrome_r), os.dup(from_chrome_w)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.proc = subprocess.Popen(
            [browser, *CHROMIUM_FLAGS, "--remote-debugging-pipe", f"--user-data-dir={profile}"],
            preexec_fn=child,
            pass_fds=(3, 4),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buf = bytearray()
        self._id = 0
        self.events: list[dict] = []

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=10)
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        os.close(self._w)
        os.close(self._r)

    def _message(self, deadline: float) -> dict:
        while True:
            end = self._buf.find(b"\0")
            if end >= 0:
                msg = bytes(self._buf[:end])
                del self._buf[: end + 1]
                return json.loads(msg)
            ready, _, _ = select.select([self._r], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise TimeoutError("no answer from chromium")
            chunk = os.read(self._r, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium exited")
            self._buf += chunk

    def call(
        self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 120
    ) -> dict:
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        data = json.dumps(msg).encode() + b"\0"
        while data:
            data = data[os.write(self._w, data) :]
        deadline = time.monotonic() + timeout
        while True:
            answer = self._message(deadline)
            if answer.get("id") == self._id:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error'].get('message')}")
                return answer.get("result", {})
            self.events.append(answer)

    def wait_event(self, method: str, session: str, timeout: float = 120) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            for i, ev in enumerate(self.events):
                if ev.get("method") == method and ev.get("sessionId") == session:
                    return self.events.pop(i)
            self.events.append(self._message(deadline))

    def open(self, url: str, width: int, height: int = 900) -> tuple[str, str]:
        """A new tab at width x height (a phone below PHONE_BELOW), loaded; (target, session)."""
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Network", "Runtime"):
            self.call(f"{domain}.enable", session=session)
        self.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < PHONE_BELOW},
            session,
        )
        self.events = [e for e in self.events if e.get("sessionId") != session]
        self.call("Page.navigate", {"url": url}, session)
        self.wait_event("Page.loadEventFired", session)
        return target, session

    def evaluate(self, session: str, expression: str, timeout: float = 120):
        result = self.call(
            "Runtime.evaluate",
            {"expression": expression, "awaitPromise": True, "returnByValue": True},
            session,
            timeout,
        )
        if "exceptionDetails" in result:
            raise RuntimeError(result["exceptionDetails"].get("text", "script error"))
        return result["result"].get("value")

    def requests(self, session: str) -> list[str]:
        return [
            e["params"]["request"]["url"]
            for e in self.events
            if e.get("method") == "Network.requestWillBeSent" and e.get("sessionId") == session
        ]

    def screenshot(self, session: str, y: int, width: int, height: int) -> bytes:
        clip = {"x": 0, "y": y, "width": width, "height": height, "scale": 1}
        params = {"format": "png", "captureBeyondViewport": False, "clip": clip}
        return base64.b64decode(self.call("Page.captureScreenshot", params, session)["data"])

    def pdf(self, session: str) -> bytes:
        params = {
            "printBackground": True,
            "paperWidth": 8.27,
            "paperHeight": 11.69,
            "marginTop": 0.5,
            "marginBottom": 0.5,
            "marginLeft": 0.5,
            "marginRight": 0.5,
        }
        return base64.b64decode(self.call("Page.printToPDF", params, session, timeout=300)["data"])

    def close_tab(self, target: str) -> None:
        self.call("Target.closeTarget", {"targetId": target})
        self.events.clear()


def list_pages(site: Path) -> list[str]:
    """Page paths relative to the site, without .html."""
    pages = []
    for p in sorted(site.rglob("*.html")):
        rel = p.relative_to(site).as_posix()
        if rel in SKIP_PAGES or rel.startswith(("_", "reports/")):
            continue
        if 'http-equiv="refresh"' in p.read_text(encoding="utf-8", errors="replace")[:2000].lower():
            continue  # a redirect (index.html -> the root page)
        pages.append(rel[: -len(".html")])
    return pages


def toc_pages(toc: Path) -> list[str]:
    """The docnames of a Jupyter Book ``_toc.yml`` in reading order (root first)."""
    import yaml

    data = yaml.safe_load(toc.read_text(encoding="utf-8"))
    out = [data["root"]]

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("file"), str):
                out.append(re.sub(r"\.(md|py|ipynb|rst)$", "", node["file"]))
            for key in ("parts", "chapters", "sections"):
                walk(node.get(key))
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(data)
    return out


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


class _QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:  # a closed tab's broken pipe
        pass


def serve(directory: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = _QuietServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def is_local(url: str, base: str) -> bool:
    return url.startswith((base, "data:", "blob:", "about:")) or (
        base.startswith("file:") and url.startswith("file:")
    )


def problems_of(res: dict, foreign: list[str]) -> list[str]:
    out = []
    if res["scrollWidth"] > res["width"] + 1:
        out.append(f"page is {res['scrollWidth']} px wide in a {res['width']} px viewport")
    out += [f"element off-screen: {c}" for c in res["clipped"]]
    out += [f"raw TeX: ...{t}..." for t in res["tex"][:5]]
    if len(res["tex"]) > 5:
        out.append(f"raw TeX: {len(res['tex']) - 5} more")
    out += [f"missing image: {s}" for s in res["images"]]
    out += [f"blurry figure (fewer than 2 pixels a displayed pixel): {b}" for b in res["blurry"]]
    out += [f"network request: {u}" for u in foreign]
    return out


HREF = re.compile(r"""<a\s[^>]*href=["']([^"'#?]*)[^"']*["']""", re.IGNORECASE)


def broken_links(site: Path) -> list[str]:
    """Internal links of the site's pages whose target file does not exist (``page: href``)."""
    out = []
    for page in sorted(site.rglob("*.html")):
        if "_static" in page.relative_to(site).parts:
            continue
        for href in HREF.findall(page.read_text(encoding="utf-8", errors="replace")):
            if not href or re.match(r"^[a-z][a-z0-9+.-]*:", href, re.IGNORECASE) or href.startswith("//"):
                continue  # same page, or another site (the offline check forbids loading those)
            target = (page.parent / href).resolve() if not href.startswith("/") else site / href.lstrip("/")
            if not target.exists():  # a folder counts (the archive's copy links its notebooks/ folder)
                out.append(f"{page.relative_to(site)}: {href}")
    return out


def save_tiles(browser: Chromium, session: str, res: dict, out: Path, name: str, width: int) -> int:
    """The page cut into tiles (at most MAX_TILES). The viewport is made as tall as the page (at
    most MAX_VIEWPORT px; beyond that the page is scrolled) so that every tile is rendered as it
    lies in the page; clips are in page coordinates."""
    tile_h = TILE_HEIGHT.get(width, int(width * 2.2))
    viewport = min(res["height"], MAX_VIEWPORT)
    browser.call(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": viewport, "deviceScaleFactor": 1, "mobile": width < PHONE_BELOW},
        session,
    )
    height = browser.evaluate(
        session, "new Promise((r) => setTimeout(() => r(document.documentElement.scrollHeight), 300))"
    )
    scroll_y, n = 0, 0
    for n, top in enumerate(range(0, height, tile_h), 1):
        if n > MAX_TILES:
            return n - 1
        h = min(tile_h, height - top)
        if top < scroll_y or top + h > scroll_y + viewport:
            scroll_y = browser.evaluate(
                session,
                f"new Promise((r) => {{ window.scrollTo(0, {top}); setTimeout(() => r(window.scrollY), 200); }})",
            )
        (out / f"{name}_w{width}_{n:02d}.png").write_bytes(browser.screenshot(session, top, width, h))
    return n


def join_pdfs(parts: list[Path], pdf: Path) -> bool:
    if shutil.which("pdfunite"):
        cmd = ["pdfunite", *map(str, parts), str(pdf)]
    elif shutil.which("qpdf"):
        cmd = ["qpdf", "--empty", "--pages", *map(str, parts), "--", str(pdf)]
    else:
        print("browser_check: neither pdfunite (poppler-utils) nor qpdf found: no PDF", file=sys.stderr)
        return False
    return subprocess.run(cmd).returncode == 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("site", type=Path, nargs="?", default=Path("book/_build/html"))
    parser.add_argument("--out", type=Path, help="write screenshots here (default: checks only)")
    parser.add_argument("--pages", nargs="*", help="pages, e.g. intro notebooks/07_ablations (default: all)")
    parser.add_argument("--widths", default="1280,390")
    parser.add_argument("--file", action="store_true", help="load the pages from file:// instead of http")
    parser.add_argument("--no-check", action="store_true", help="no checks (e.g. only --pdf)")
    parser.add_argument("--pdf", type=Path, help="print the pages of --toc, in order, to this PDF")
    parser.add_argument("--toc", type=Path, default=Path("book/_toc.yml"))
    args = parser.parse_args(argv)

    site = args.site.resolve()
    if not (site / "index.html").is_file():
        print(
            f"browser_check: {site}/index.html not found: build the book first (make book)", file=sys.stderr
        )
        return 1
    # a page is named without .html ("intro.html" would load a 404 page, which has nothing to fail on)
    pages = [p.removesuffix(".html") for p in args.pages] if args.pages else list_pages(site)
    if missing := [p for p in pages if not (site / f"{p}.html").is_file()]:
        print(f"browser_check: no such page in {site}: {', '.join(missing)}", file=sys.stderr)
        return 1
    exe = find_chromium()
    if exe is None:
        print("browser_check: chromium not found: apt-get install -y chromium", file=sys.stderr)
        return 2
    widths = [int(w) for w in args.widths.split(",") if w]
    start = time.time()
    failures: dict[str, list[str]] = {}
    if not args.no_check and (links := broken_links(site)):
        failures["internal links"] = [f"broken link: {link}" for link in links]
        print(f"FAIL {len(links)} broken internal link(s):")
        for link in links[:20]:
            print(f"       {link}")
    with tempfile.TemporaryDirectory() as tmp:
        browser = Chromium(exe, Path(tmp) / "profile")
        server = None
        if args.file:
            base = site.as_uri()
        else:
            server, base = serve(site)
        try:
            if not args.no_check:
                if args.out:
                    args.out.mkdir(parents=True, exist_ok=True)
                    for old in args.out.glob("*.png"):
                        old.unlink()
                for page in pages:
                    for width in widths:
                        key = f"{page} @ {width} px"
                        target, session = browser.open(f"{base}/{page}.html", width)
                        try:
                            res = browser.evaluate(session, CHECK_JS)
                            foreign = [u for u in browser.requests(session) if not is_local(u, base)]
                            problems = problems_of(res, foreign)
                            tiles = 0
                            if args.out:
                                tiles = save_tiles(
                                    browser, session, res, args.out, page.replace("/", "_"), width
                                )
                        finally:
                            browser.close_tab(target)
                        status = "FAIL" if problems else "ok  "
                        extra = f", {tiles} screenshots" if tiles else ""
                        print(f"{status} {key}: {res['height']} px tall{extra}", flush=True)
                        for line in problems:
                            print(f"       {line}")
                        if res["alt"]:
                            print(
                                f"       note: {len(res['alt'])} image(s) without a real alt text: {res['alt'][:3]}"
                            )
                        if problems:
                            failures[key] = problems
            if args.pdf:
                t0 = time.time()
                order = [p for p in toc_pages(args.toc) if (site / f"{p}.html").is_file()]
                parts = []
                for i, page in enumerate(order):
                    target, session = browser.open(f"{base}/{page}.html", 1280)
                    try:
                        browser.evaluate(session, CHECK_JS)  # waits for images and MathJax
                        part = Path(tmp) / f"{i:03d}.pdf"
                        part.write_bytes(browser.pdf(session))
                        parts.append(part)
                    finally:
                        browser.close_tab(target)
                args.pdf.parent.mkdir(parents=True, exist_ok=True)
                if not join_pdfs(parts, args.pdf):
                    return 1
                print(
                    f"browser_check: {args.pdf}: {len(order)} pages of the book in {time.time() - t0:.0f} s"
                )
        finally:
            browser.close()
            if server is not None:
                server.shutdown()
    if not args.no_check:
        took = f"{time.time() - start:.0f} s"
        if failures:
            sys.stdout.flush()
            n = len(pages) * len(widths)
            print(f"browser_check: {len(failures)} of {n} page views FAILED ({took})", file=sys.stderr)
            return 1
        where = f"; screenshots in {args.out}" if args.out else ""
        print(f"browser_check: OK, {len(pages)} pages x {len(widths)} widths ({took}){where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
