#!/usr/bin/env bash
# Look at the built book in headless Chromium: `bash scripts/check_html.sh`.
#
# Installs Debian's chromium, and a font for Traditional Chinese (fonts-wqy-microhei, for book/zh-tw),
# with apt when they are missing (only as root: this is the one step of the course that needs more
# than Python and pip, which is why scripts/test.sh runs the check only when chromium is there),
# builds the book into _build/ when it has not been built (scripts/book.sh), then runs
# scripts/check_html.py: screenshots in _build/screenshots/.
set -euo pipefail
if [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then  # print the comment above
    sed -n '2,/^set -euo/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'; exit 0
fi
cd "$(dirname "$0")/.."

if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "== installing chromium (apt-get)"
        apt-get update -q
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium
    else
        echo "chromium is not installed, and installing it needs root and apt-get (Debian: apt-get install chromium)" >&2
        exit 2
    fi
fi
# A font for Traditional Chinese, else book/zh-tw renders as boxes and check_html.py says so.
if [ -z "$(fc-list :lang=zh-tw 2>/dev/null)" ]; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "== installing a Traditional Chinese font (apt-get: fonts-wqy-microhei)"
        apt-get update -q
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q fonts-wqy-microhei
    else
        echo "no font for Traditional Chinese: book/zh-tw will fail the glyph check (Debian, as root: apt-get install fonts-wqy-microhei)" >&2
    fi
fi

if [ ! -f _build/html/index.html ]; then
    bash scripts/book.sh
fi
# shellcheck source=scripts/_ensure_env.sh
source scripts/_ensure_env.sh
exec python scripts/check_html.py --build _build "$@"
