#!/usr/bin/env bash
# THE book command of the course: `bash scripts/book.sh`.
#
# Makes sure .venv/ has everything (scripts/_ensure_env.sh), then builds the book into _build/html
# with `jupyter-book build .`: incremental (only changed pages are rebuilt) and executing nothing
# (execute_notebooks is "off": the notebooks are committed executed), then the lecture decks
# (scripts/slides.py, into _build/slides/ and a copy in _build/html/slides/). Prints the page to open.
# Before the build, scripts/book_assets.sh copies MathJax 3 from npm into vendor/book/static/ (once;
# needs npm), which the book serves itself so that it reads offline.
# For the strict build the tests do (from scratch, warnings as errors): bash scripts/test.sh.
set -euo pipefail
if [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then  # print the comment above
    sed -n '2,/^set -euo/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'; exit 0
fi
cd "$(dirname "$0")/.."
# shellcheck source=scripts/_ensure_env.sh
source scripts/_ensure_env.sh
# the files the book serves itself so that it reads offline (MathJax 3 from npm, once)
bash scripts/book_assets.sh
jupyter-book build .
# Sphinx copies the static files only when it rebuilds some page ("no targets are out of date" skips
# that too): bring the files the book serves itself up to date, so that a changed book/browser_demo.js
# or re-exported network reaches _build/html/_static/ even when no page changed
python - <<'PY'
import filecmp, shutil
from pathlib import Path
source, served = Path("vendor/book/static"), Path("_build/html/_static")
for path in source.rglob("*"):
    target = served / path.relative_to(source)
    if path.is_file() and not path.name.startswith(".") and not (target.exists() and filecmp.cmp(path, target, shallow=False)):
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        print(f"updated {target}")
PY
# the lecture decks (book/lecturers.md links them): _build/slides/, and a copy inside the book
python scripts/slides.py
rm -rf _build/html/slides && cp -R _build/slides _build/html/slides
echo
echo "The book: $(pwd)/_build/html/index.html"
