#!/usr/bin/env bash
# The slides command: `bash scripts/slides.sh` builds the lecture deck and one reveal.js deck per
# chapter into _build/slides/ (open _build/slides/index.html; they work without internet), from
# the chapters' own cells (scripts/slides.py; the lecture follows book/lecture.yml). Options are
# passed on to scripts/slides.py: --check also opens decks in headless Chromium, offline, and checks them.
set -euo pipefail
if [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then  # print the comment above
    sed -n '2,/^set -euo/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'; exit 0
fi
cd "$(dirname "$0")/.."
# shellcheck source=scripts/_ensure_env.sh
source scripts/_ensure_env.sh
python scripts/slides.py "$@"
