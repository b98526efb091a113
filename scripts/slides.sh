#!/usr/bin/env bash
# The slides command: `bash scripts/slides.sh` builds the 90- and 45-minute lecture decks (from
# book/lectures/*.yml, with figures and numbers selected from the executed chapters), their PDFs (with
# Chromium) and one reveal.js deck per chapter into _build/slides/ (open _build/slides/index.html; they
# work without internet). Options are passed on to scripts/slides.py: --check also measures every
# slide of every deck in headless Chromium, offline (scripts/check_slides.py).
set -euo pipefail
if [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then  # print the comment above
    sed -n '2,/^set -euo/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'; exit 0
fi
cd "$(dirname "$0")/.."
# shellcheck source=scripts/_ensure_env.sh
source scripts/_ensure_env.sh
python scripts/slides.py "$@"
