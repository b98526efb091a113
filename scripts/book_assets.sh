#!/usr/bin/env bash
# The files the built book serves itself, so that it reads offline (a lecture hall, a train):
# `bash scripts/book_assets.sh` (scripts/book.sh and scripts/test.sh run it before building).
#
# - MathJax 3 (npm `mathjax`, the exact release pinned in vendor/book/package-lock.json): `npm ci`
#   into vendor/book/node_modules/, then only what the book uses is copied into
#   vendor/book/static/mathjax/ (tex-chtml.js, its TeX extensions, the CHTML fonts, the menu and
#   the accessibility parts: about 7 MB of MathJax's 24 MB) with MathJax's LICENSE.
#   _config.yml serves vendor/book/static/ as the book's _static/ (html_static_path) and loads
#   _static/mathjax/tex-chtml.js (mathjax_path). Not a folder named `_static` in the book: Jupyter
#   Book 1.x would inject every .js under it into every page.
# - ONNX Runtime Web (npm `onnxruntime-web`, pinned in the same lock file): its WebAssembly build
#   (ort.wasm.min.mjs, ort-wasm-simd-threaded.{mjs,wasm}, its package.json: version, MIT licence) into vendor/book/static/ort/, and
#   scripts/browser_demo_assets.py's export of chapter 7's networks into vendor/book/static/browser_demo/,
#   for the page book/run_in_browser.md.
# - does nothing, in a few milliseconds, when that is done: the copy leaves a stamp
#   vendor/book/static/.installed-<hash> (scripts/_npm_vendor.sh, shared with slides_assets.sh).
# Needs Node's npm (Debian: apt-get install npm; GitHub's runners have it). Everything it writes is
# ignored by git (.gitignore).
set -euo pipefail
if [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then  # print the comment above
    sed -n '2,/^set -euo/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'; exit 0
fi
root="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=scripts/_npm_vendor.sh
source "$(dirname "$0")/_npm_vendor.sh"

copy_mathjax() {
    local src=node_modules/mathjax/es5
    mkdir -p static/mathjax/input static/mathjax/output
    cp node_modules/mathjax/LICENSE static/mathjax/LICENSE
    cp "$src/tex-chtml.js" static/mathjax/
    cp -R "$src/input/tex" static/mathjax/input/            # autoloaded and \require'd TeX extensions
    cp -R "$src/output/chtml" static/mathjax/output/        # the CHTML fonts (woff2)
    cp -R "$src/ui" "$src/a11y" "$src/sre" static/mathjax/  # the menu, accessibility, speech rules
}
copy_onnxruntime_web() {  # ONNX Runtime Web's WebAssembly build for book/run_in_browser.md (about 15 MB)
    local src=node_modules/onnxruntime-web/dist
    mkdir -p static/ort
    cp node_modules/onnxruntime-web/package.json static/ort/package.json  # its version and licence (MIT; the package has no LICENSE file)
    cp "$src/ort.wasm.min.mjs" "$src/ort-wasm-simd-threaded.mjs" "$src/ort-wasm-simd-threaded.wasm" static/ort/
}
copy_book() { copy_mathjax; copy_onnxruntime_web; }
npm_vendor book static "MathJax 3 and ONNX Runtime Web for the book" copy_book
# chapter 7's networks exported to ONNX for the browser page, with its self-test data (once per change)
cd "$root" && "${PYTHON:-python}" scripts/browser_demo_assets.py
