#!/usr/bin/env bash
# Every page of the built book in headless Chromium, at 1280 px and at 390 px (a phone): checks
# (raw TeX left after MathJax, missing images, a page wider than the screen, network requests)
# and screenshots, each page cut into tiles, in OUT_DIR/<page>_w1280_NN.png / _w390_NN.png.
#
#   bash ci/screenshot.sh [OUT_DIR [SITE_DIR [PAGE ...]]]
#   e.g. bash ci/screenshot.sh /tmp/shots book/_build/html notebooks/07_ablations api
#
# OUT_DIR defaults to book/_build/screenshots, SITE_DIR to book/_build/html; PAGE is a page path
# without .html (default: every page). Look at the PNGs too: the checks do not judge legibility.
# The work is done by ci/browser_check.py (see its docstring). Exit 1 when a check fails, 2 when
# Chromium is missing: apt-get install -y chromium (Debian's package; nothing else is needed).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-book/_build/screenshots}
site=${2:-book/_build/html}
py=.venv/bin/python
[ -x "$py" ] || py=python3
if [ $# -gt 2 ]; then
  exec "$py" ci/browser_check.py "$site" --out "$out" --pages "${@:3}"
fi
exec "$py" ci/browser_check.py "$site" --out "$out"
