#!/usr/bin/env bash
# Screenshot pages of the built book with headless Chromium, served from 127.0.0.1 only.
#
#   bash ci/screenshot.sh OUT_DIR [SITE_DIR [PAGE[@HEIGHT] ...]]   (SITE_DIR defaults to book/_build/html)
#
# e.g. bash ci/screenshot.sh /tmp/shots book/_build/html notebooks/07_ablations@14000 api
#
# Takes the intro, a page with math (Reading the paper) and pages with figures (chapters 1-4)
# into OUT_DIR/*.png, at 1280x2000 (and two taller ones to reach the figures), after letting MathJax typeset (virtual time budget). Chromium
# runs with networking features off; the page itself loads only from the local server (checked
# separately by ci/check_offline.py). Look at the PNGs: math must be typeset (no raw $...$ or
# \(...\)), figures must show.
#
# Needs Debian's chromium: apt-get install -y chromium   (no other installation).
set -euo pipefail

out=${1:?usage: bash ci/screenshot.sh OUT_DIR [SITE_DIR]}
site=${2:-book/_build/html}
if [ ! -f "$site/index.html" ]; then
  echo "screenshot: $site/index.html not found: build the book first (make book)" >&2
  exit 1
fi
browser=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$browser" ]; then
  echo "screenshot: chromium not found. Install Debian's package: apt-get install -y chromium" >&2
  exit 2
fi
mkdir -p "$out"
out=$(cd "$out" && pwd)

# A free port on 127.0.0.1, then a static server for the site (stopped on exit).
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
python3 -m http.server "$port" --bind 127.0.0.1 --directory "$site" >/dev/null 2>&1 &
server=$!
profile=$(mktemp -d)
trap 'kill "$server" 2>/dev/null || true; rm -rf "$profile"' EXIT
for _ in $(seq 50); do
  python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/index.html', timeout=1)" 2>/dev/null && break
  sleep 0.1
done

# page[@height]: a taller window shows figures further down a page (anchors do not scroll in
# headless screenshots).
pages=(intro reading_the_paper notebooks/01_ambiguity notebooks/02_toy_2d notebooks/03_prototypes notebooks/04_occl
       "notebooks/02_toy_2d@9000" "notebooks/04_occl@6000")
if [ $# -gt 2 ]; then
  pages=("${@:3}")
fi
status=0
for entry in "${pages[@]}"; do
  page=${entry%%@*}
  height=2000
  [ "$entry" != "$page" ] && height=${entry#*@}
  [ -f "$site/$page.html" ] || { echo "screenshot: skip $page (not built)"; continue; }
  name=$(basename "$page")
  [ "$height" != 2000 ] && name="${name}_h$height"
  png="$out/$name.png"
  if timeout 120 "$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
      --disable-background-networking --disable-component-update --disable-sync \
      --disable-default-apps --disable-extensions --hide-scrollbars --mute-audio \
      --user-data-dir="$profile" --window-size=1280,"$height" --virtual-time-budget=10000 \
      --screenshot="$png" "http://127.0.0.1:$port/$page.html" >/dev/null 2>&1 && [ -s "$png" ]; then
    echo "screenshot: $png"
  else
    echo "screenshot: FAILED for $entry" >&2
    status=1
  fi
done
exit $status
