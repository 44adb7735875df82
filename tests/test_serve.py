"""`make serve` (ci/serve.py): the built book over HTTP on localhost. The server is started on a
tiny fake site in tmp_path (the book is never built here), answers a GET for index.html within a
few seconds, says how to open it from another device, and stops cleanly on Ctrl-C or SIGTERM; the
make target builds the book only when there is none."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SERVE = ROOT / "ci" / "serve.py"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _site(tmp_path: Path) -> Path:
    site = tmp_path / "html"
    (site / "notebooks").mkdir(parents=True)
    (site / "index.html").write_text("<!DOCTYPE html><title>fake book</title><p>the fake book</p>\n")
    (site / "notebooks" / "01.html").write_text("<p>chapter one</p>\n")
    return site


def _get(url: str, deadline: float) -> bytes:
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                assert resp.status == 200
                return resp.read()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_serves_index_and_stops_cleanly(tmp_path: Path, stop: signal.Signals) -> None:
    site, port = _site(tmp_path), _free_port()
    proc = subprocess.Popen(
        [sys.executable, str(SERVE), "--host", "127.0.0.1", "--port", str(port), str(site)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        start = time.monotonic()
        body = _get(f"http://127.0.0.1:{port}/index.html", deadline=start + 10)
        assert b"the fake book" in body
        assert time.monotonic() - start < 10
        assert b"chapter one" in _get(f"http://127.0.0.1:{port}/notebooks/01.html", deadline=start + 10)
        proc.send_signal(stop)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert f"at http://127.0.0.1:{port}/ (Ctrl-C stops it)" in out
    assert "Only this machine can open it (HOST=127.0.0.1)" in out
    assert "make serve HOST=0.0.0.0" in out and "exposes the book to everyone on that network" in out
    assert "serve: stopped" in out
    assert '"GET /index.html HTTP/1.1" 200' in err  # each request is logged


def test_the_banner_of_a_server_open_to_the_network(monkeypatch) -> None:
    sys.path.insert(0, str(ROOT / "ci"))
    try:
        import serve
    finally:
        sys.path.remove(str(ROOT / "ci"))
    monkeypatch.setattr(serve, "lan_addresses", lambda: ["192.0.2.7"])  # a documentation address
    text = serve.banner(Path("/site"), "0.0.0.0", 8123)
    assert "at http://127.0.0.1:8123/" in text
    assert "every device on this network can open it" in text
    assert "open http://192.0.2.7:8123/" in text
    local = serve.banner(Path("/site"), "127.0.0.1", 8123)
    assert "make serve HOST=0.0.0.0" in local and "http://192.0.2.7:8123/" in local
    monkeypatch.setattr(serve, "lan_addresses", lambda: [])
    assert "`hostname -I` lists it" in serve.banner(Path("/site"), "0.0.0.0", 8123)


def test_no_book_and_a_taken_port_are_plain_errors(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(SERVE), "--port", str(_free_port()), str(tmp_path / "nothing")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 1 and "has no index.html: run 'make book' first" in proc.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, str(SERVE), "--port", str(port), str(_site(tmp_path))],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert proc.returncode == 1 and f"cannot listen on 127.0.0.1:{port}" in proc.stderr


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_serve_builds_only_when_there_is_no_book(tmp_path: Path) -> None:
    """`make -n serve` (nothing is run): with a built book it only serves it; without one it builds first."""
    for name in ("Makefile", "pyproject.toml", "requirements.lock"):
        shutil.copy(ROOT / name, tmp_path / name)
    (tmp_path / "book").mkdir()
    shutil.copy(ROOT / "book" / "make-book.mk", tmp_path / "book" / "make-book.mk")

    env = {
        k: v for k, v in os.environ.items() if k not in ("HOST", "PORT", "PYTHON", "MAKEFLAGS", "MAKELEVEL")
    }

    def dry_run(*args: str) -> str:
        cmd = ["make", "-n", "serve", *args]
        proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    without = dry_run()
    assert "ci/execute_notebooks.py" in without and "jupyter-book build" in without  # builds the book
    (tmp_path / "book" / "_build" / "html").mkdir(parents=True)
    (tmp_path / "book" / "_build" / "html" / "index.html").write_text("<p>built</p>")
    built = dry_run("PORT=8123")
    assert built.strip() == "python3 ci/serve.py --host 127.0.0.1 --port 8123 book/_build/html"
    assert dry_run("HOST=0.0.0.0").strip().endswith("--host 0.0.0.0 --port 8000 book/_build/html")
