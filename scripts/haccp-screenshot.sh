#!/usr/bin/env bash
# Renders a HACCP record page (HTML from `coldchain demo` or GET /reports/haccp?format=html)
# to a PNG with headless Chromium, as in docs/img/haccp-report.png.
#   scripts/haccp-screenshot.sh demo-output/haccp-s042-2026-11-18.html docs/img/haccp-report.png
set -euo pipefail
html=${1:?usage: $0 REPORT.html OUT.png [WIDTHxHEIGHT]}
png=${2:?usage: $0 REPORT.html OUT.png [WIDTHxHEIGHT]}
size=${3:-1280x1900}
browser=$(command -v chromium || command -v chromium-browser || true)
[ -n "$browser" ] || { echo "chromium not found (make test installs it)" >&2; exit 1; }
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
"$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars --disable-dev-shm-usage \
  --user-data-dir="$profile" --window-size="${size/x/,}" \
  --screenshot="$(realpath -m "$png")" "file://$(realpath "$html")" 2>/dev/null
echo "$png"
