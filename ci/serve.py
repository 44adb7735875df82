"""Serve the built book over HTTP with Python's http.server (``make serve``).

``make serve`` builds the book first only when there is none (``book/_build/html/index.html``), then
runs this. It prints the address to open and how to open it from another device on the same
network; Ctrl-C (or SIGTERM) stops it cleanly, with exit status 0.

By default the server listens on 127.0.0.1 only: no other machine can reach it. ``--host 0.0.0.0``
(``make serve HOST=0.0.0.0``) listens on every interface, so any device on the same network (a
phone, a tablet, a student's laptop) can open the book at this machine's address: only do that on
a network you trust; it serves every file of the folder to whoever asks.

Usage: ``python ci/serve.py [--host 127.0.0.1] [--port 8000] [DIR]`` (DIR: ``book/_build/html``).
Exit 1 when DIR has no index.html or the port is taken.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import ipaddress
import signal
import socket
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args) -> None:  # noqa: A002  (http.server's own name)
        sys.stderr.write(f"  {self.address_string()} {format % args}\n")


def lan_addresses() -> list[str]:
    """This machine's IPv4 addresses other than loopback, as far as its own name tells (no traffic)."""
    found = set()
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)
    except OSError:
        return []
    for info in infos:
        addr = info[4][0]
        if not ipaddress.ip_address(addr).is_loopback:
            found.add(addr)
    return sorted(found)


def banner(directory: Path, host: str, port: int) -> str:
    """What the server prints when it starts: where to open the book, and how to reach it from elsewhere."""
    everywhere = host in ("0.0.0.0", "", "::")
    lines = [f"Serving {directory} at http://{'127.0.0.1' if everywhere else host}:{port}/ (Ctrl-C stops it)"]
    lan = lan_addresses()
    elsewhere = (
        " or ".join(f"http://{a}:{port}/" for a in lan)
        if lan
        else f"port {port} of this machine's address on that network (`hostname -I` lists it)"
    )
    if everywhere:
        lines.append(
            f"Listening on every interface (HOST={host or '0.0.0.0'}): every device on this network can open it."
        )
        lines.append(f"From another device on the same network, open {elsewhere}")
    else:
        lines.append(
            f"Only this machine can open it (HOST={host}). To open it from a phone or another computer on "
            f"the same network, run `make serve HOST=0.0.0.0` instead (it exposes the book to everyone on "
            f"that network) and open {elsewhere} there."
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", nargs="?", type=Path, default=ROOT / "book" / "_build" / "html")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    directory = args.directory.resolve()
    if not (directory / "index.html").is_file():
        print(f"serve: {directory} has no index.html: run 'make book' first", file=sys.stderr)
        return 1
    handler = functools.partial(_Handler, directory=str(directory))
    try:
        server = http.server.ThreadingHTTPServer((args.host, args.port), handler)
    except OSError as e:
        print(
            f"serve: cannot listen on {args.host}:{args.port} ({e.strerror}): try PORT=8001", file=sys.stderr
        )
        return 1

    def _stop(signum, frame):  # SIGTERM stops it as Ctrl-C does
        raise KeyboardInterrupt

    # Ctrl-C too, explicitly: a process started in the background by a shell without job control
    # inherits SIGINT as ignored, and Python then installs no KeyboardInterrupt handler
    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    print(banner(directory, args.host, args.port), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("\nserve: stopped", flush=True)
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
