#!/usr/bin/env bash
# THE test command of the course: `bash scripts/test.sh` (CI runs it through .ci/run).
#
# Makes sure .venv/ has everything (scripts/_ensure_env.sh), then, stopping at the first failure,
# with a banner and a timing per step:
#   1. pytest tests/         the package's tests, and the notebook checks: every notebook has its
#                            Colab badge and install cell, exercises/ is what make_exercises.py
#                            generates from solutions/, every notebook is in the book's TOC
#   2. nbval                 re-runs every notebook in chapters/ solutions/ exercises/ book/ with
#                            the kernels pinned to another instruction set than this machine's best
#                            (scripts/nbval.sh) and compares each output with the committed one:
#                            exactly, or within the cell's stated tolerance (conftest.py,
#                            nbval_sanitize.cfg; book/authoring.md)
#   3. book                  vendors MathJax 3 for the book (scripts/book_assets.sh, npm; once), then
#                            builds the book from scratch in a temporary folder, warnings as errors
#   4. rendered pages        reads every built notebook page (Colab link, no live widget, animations
#                            described and playing), then screenshots pages in headless Chromium
#                            and checks them (the Chinese page glyph by glyph: no missing-glyph
#                            boxes); chromium and a Traditional Chinese font (fonts-wqy-microhei) are
#                            installed with apt-get when missing and running as root (CI), else the
#                            screenshots are skipped with a message
#   5. offline pages         opens the built pages in Chromium with the network unreachable: math
#                            typeset, images and animations shown, no request leaves the machine
#                            (scripts/check_offline.py; skipped with a message without chromium)
#   5a. browser demo         opens book/run_in_browser.html offline: ONNX Runtime Web runs chapter 7's
#                            networks, the self-test's JSON must say ok (within 1e-3 of PyTorch), a
#                            latency, no request out; the ImageNet part (online builds only) with a
#                            stand-in XXS: its top-5 for a photo = PyTorch's (scripts/check_browser_demo.py;
#                            needs chromium)
#   5b. live widgets         JupyterLab headless (the course's .venv) runs chapters 1 and 3 to their
#                            explorer in Chromium: the sliders render, dragging one redraws the figure;
#                            screenshots in _build/screenshots/widgets (scripts/check_widgets_live.py;
#                            skipped with a message without chromium)
#   6. slides                (in the background from step 4 on, beside the page checks; its output is
#                            printed at the end) builds the lecture decks and their PDFs and the chapter decks
#                            (scripts/slides.py) and measures every slide of every deck in headless
#                            Chromium, offline (scripts/check_slides.py): no overflow at 1280×720 or
#                            1024×768, no request out, math typeset; lecture decks: text >= 24 px,
#                            code <= 15 lines, median <= 40 words, alt text on every figure
#   7. Colab install path    (in the background from step 3 on, beside the browser steps; its output
#                            is printed at the end) the install cell in a fresh venv with Colab's versions of what the course
#                            touches (scripts/colab_versions.txt: ipywidgets 7.7.1, numpy, matplotlib...;
#                            cached) and the course's torch: it must change none of them; then chapter 1
#                            and an exercise run there, and tests/test_widgets.py under ipywidgets 7.7.1
#                            (scripts/check_colab_install.py; PyPI)
set -euo pipefail
if [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then  # print the comment above
    sed -n '2,/^set -euo/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'; exit 0
fi
cd "$(dirname "$0")/.."

# The same fixed environment as scripts/execute_notebooks.py gives its kernels (nbval's kernel
# inherits it), so that the committed outputs are reproduced. OMP_WAIT_POLICY=PASSIVE changes no
# result; it keeps OpenMP's waiting threads from spinning, which slows everything down 10-500x as
# soon as another process (a second notebook, the browser) holds a core.
export PYTHONHASHSEED=0 OMP_NUM_THREADS=2 MKL_NUM_THREADS=2 OMP_WAIT_POLICY=PASSIVE

total_start=$(date +%s.%N)
summary=()

banner() { printf '\n==================== %s ====================\n' "$1"; }
since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }  # seconds since $1

# step NAME COMMAND...: run, time, stop everything on failure
step() {
    local name=$1; shift
    banner "$name"
    local start; start=$(date +%s.%N)
    local rc=0
    "$@" || rc=$?
    local took; took=$(since "$start")
    summary+=("$(printf '%-24s %7s s  %s' "$name" "$took" "$([ $rc -eq 0 ] && echo ok || echo "FAILED (exit $rc)")")")
    if [ $rc -ne 0 ]; then
        banner "FAILED: $name (exit $rc, after $took s)"
        printf '%s\n' "${summary[@]}"
        exit "$rc"
    fi
    echo "-- $name: ok in $took s"
}

# bg_step NAME COMMAND...: start a step in the background, its output into a log that wait_bg prints
# when the step has ended (the Colab step: it waits on PyPI and unpacks files while the foreground
# steps keep the 2 cores busy with Chromium)
bg_names=(); bg_pids=(); bg_logs=(); bg_starts=()
bg_step() {
    local name=$1; shift
    local log; log=$(mktemp "${TMPDIR:-/tmp}/mobilevit-step.XXXXXX")
    echo "-- $name: started in the background; its output follows at the end"
    bg_starts+=("$(date +%s.%N)")
    ( rc=0; "$@" || rc=$?; date +%s.%N >"$log.end"; exit $rc ) >"$log" 2>&1 &
    bg_pids+=($!); bg_names+=("$name"); bg_logs+=("$log")
}
# wait_bg: wait for every background step, print its output and timing; stop on a failure
wait_bg() {
    local i rc took
    for i in "${!bg_pids[@]}"; do
        rc=0; wait "${bg_pids[$i]}" || rc=$?
        took=$(awk -v a="${bg_starts[$i]}" -v b="$(cat "${bg_logs[$i]}.end" 2>/dev/null || date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
        banner "${bg_names[$i]} (ran in the background)"
        cat "${bg_logs[$i]}"; rm -f "${bg_logs[$i]}" "${bg_logs[$i]}.end"
        summary+=("$(printf '%-24s %7s s  %s' "${bg_names[$i]}" "$took" "$([ $rc -eq 0 ] && echo "ok (background)" || echo "FAILED (exit $rc)")")")
        if [ $rc -ne 0 ]; then
            banner "FAILED: ${bg_names[$i]} (exit $rc, after $took s)"
            printf '%s\n' "${summary[@]}"
            exit "$rc"
        fi
        echo "-- ${bg_names[$i]}: ok in $took s"
    done
}

env_start=$(date +%s.%N)
banner "environment"
# shellcheck source=scripts/_ensure_env.sh
source scripts/_ensure_env.sh
summary+=("$(printf '%-24s %7s s  ok' environment "$(since "$env_start")")")
python --version; python -c 'import torch; print("torch", torch.__version__)'

# Both pytest steps run on two workers (pytest-xdist): the machines have 2 cores, and most of the
# time goes to starting Python, torch and notebook kernels. --dist loadfile keeps every notebook's
# cells together, in order, on one worker (one kernel per notebook, as nbval needs).
step "pytest tests/" python -m pytest -q -n 2 tests/

# nbval with the kernels pinned to another instruction set than this machine's best (AVX2 on an
# AVX-512 machine, PyTorch's default kernels otherwise), so that every run checks a second CPU; cells
# that print floating-point results compare within their stated tolerance (scripts/nbval.sh, conftest.py).
step "nbval (notebooks)" bash scripts/nbval.sh

book_tmp=$(mktemp -d "${TMPDIR:-/tmp}/mobilevit-book.XXXXXX")
# on the way out (a failure included): the book's temporary folder, and any background step still running
# (`|| true`: under set -e a kill of a step that has ended would turn a passing run into exit 1)
cleanup() {
    rm -rf "$book_tmp"
    local pid
    for pid in "${bg_pids[@]}"; do pkill -P "$pid" 2>/dev/null || true; kill "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT
step "book assets (MathJax)" bash scripts/book_assets.sh
step "book (-W, from scratch)" jupyter-book build . --all -W -n --keep-going --path-output "$book_tmp"
# Colab's path (the slowest step after nbval, and the one that needs PyPI) in the background, beside
# the browser steps: the install cell of the notebooks in a fresh venv that has only Colab's packages
# and torch, then a chapter and an exercise run there. Its output comes at the end (wait_bg).
bg_step "Colab install path" python scripts/check_colab_install.py

# The browser check needs Debian's chromium. As root with apt-get (CI's machine), install it when it
# is missing; otherwise, or when the install fails, read the built pages without a browser.
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    banner "installing chromium (apt-get, root)"
    chromium_start=$(date +%s.%N)
    if (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null); then
        summary+=("$(printf '%-24s %7s s  ok' "install chromium" "$(since "$chromium_start")")")
    else
        echo "apt-get could not install chromium: the rendered-page check falls back to reading the HTML"
    fi
fi
# The Chinese page (book/zh-tw.md) needs a font for Traditional Chinese, else Chromium draws empty boxes
# and scripts/check_html.py fails: Debian's fonts-wqy-microhei (1.6 MB download) covers all its characters.
if command -v chromium >/dev/null 2>&1 && [ -z "$(fc-list :lang=zh-tw 2>/dev/null)" ] \
        && [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    banner "installing a Traditional Chinese font (apt-get, root)"
    font_start=$(date +%s.%N)
    if (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fonts-wqy-microhei >/dev/null); then
        summary+=("$(printf '%-24s %7s s  ok' "install CJK font" "$(since "$font_start")")")
    else
        echo "apt-get could not install fonts-wqy-microhei: the rendered-page check will find boxes on book/zh-tw"
    fi
fi
# The decks (book/lecturers.md): the lecture decks from book/lectures/*.yml (figures and numbers selected
# from the executed chapters), the chapter decks from the chapters' cells, their JavaScript from npm
# (scripts/slides_assets.sh); then, with Chromium, every slide measured with the network unreachable.
# In the background too (it keeps about 0.65 of a core busy: 41 s wall for 26.5 s of CPU, measured
# alone), in its own Chromium profile, beside the page checks below; its output comes at the end.
if command -v chromium >/dev/null 2>&1; then
    bg_step "slides (offline)" python scripts/slides.py --out "$book_tmp/slides" --check
else
    echo "no chromium: the decks are built but not opened (bash scripts/check_html.sh installs chromium)"
    bg_step "slides (built only)" python scripts/slides.py --out "$book_tmp/slides"
fi

if command -v chromium >/dev/null 2>&1; then
    step "rendered pages" python scripts/check_html.py --build "$book_tmp/_build"
    step "offline pages" python scripts/check_offline.py --build "$book_tmp/_build"
    step "browser demo" python scripts/check_browser_demo.py --build "$book_tmp/_build"
    step "live widgets (JupyterLab)" python scripts/check_widgets_live.py
else
    echo "no chromium (it needs root and apt-get: bash scripts/check_html.sh): screenshots SKIPPED"
    step "rendered pages (HTML only)" python scripts/check_html.py --build "$book_tmp/_build" --static-only
    echo "no chromium: the offline check (scripts/check_offline.py) SKIPPED"
    echo "no chromium: the browser demo (scripts/check_browser_demo.py) SKIPPED"
    echo "no chromium: the live widgets in JupyterLab (scripts/check_widgets_live.py) SKIPPED"
fi

# the background steps (Colab's path, the slides): their output, timing and result
wait_bg

banner "summary"
printf '%s\n' "${summary[@]}"
echo "total: $(since "$total_start") s"
