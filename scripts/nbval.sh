#!/usr/bin/env bash
# Re-run notebooks and compare their outputs with the committed ones, on ANOTHER instruction set:
#   bash scripts/nbval.sh                      # every notebook in chapters/ solutions/ exercises/ book/
#   bash scripts/nbval.sh chapters/07_training.ipynb [more.ipynb ...]
#   NBVAL_ISA=native bash scripts/nbval.sh ... # the machine's own kernels (to compare, not the test)
#
# The notebooks are executed on one machine (scripts/execute_notebooks.py); the course must pass on
# any other. So the kernels here are pinned below the machine's best instruction set, and every run of
# the test exercises a second CPU (issue 19):
#   - with AVX-512 in /proc/cpuinfo: ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2
#     MKL_ENABLE_INSTRUCTIONS=AVX2 (as a laptop or an older server computes);
#   - without (e.g. an AVX2 machine): ATEN_CPU_CAPABILITY=default (PyTorch's non-vectorised kernels),
#     ONEDNN_MAX_CPU_ISA=AVX and MKL_ENABLE_INSTRUCTIONS=AVX (no FMA: other rounding).
# Floating-point printouts then differ in their last digits; cells that print them carry a
# "tolerance" in their metadata, which conftest.py applies (book/authoring.md, "How nbval compares").
# Same environment, sanitize file and workers as scripts/test.sh's nbval step (which calls this).
set -euo pipefail
if [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then  # print the comment above
    sed -n '2,/^set -euo/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'; exit 0
fi
cd "$(dirname "$0")/.."

# The same fixed environment as scripts/execute_notebooks.py gives its kernels (see scripts/test.sh).
export PYTHONHASHSEED=0 OMP_NUM_THREADS=2 MKL_NUM_THREADS=2 OMP_WAIT_POLICY=PASSIVE

case "${NBVAL_ISA:-pinned}" in
    native)
        echo "nbval: kernels on this machine's own instruction set (NBVAL_ISA=native)" ;;
    pinned)
        # the mapping's one home is benchmarks/_isa.py (the sweeps pin their seeds the same way)
        eval "$(python3 benchmarks/_isa.py)"
        echo "nbval: kernels pinned to another instruction set than this machine's best ($why):" \
            "ATEN_CPU_CAPABILITY=$ATEN_CPU_CAPABILITY ONEDNN_MAX_CPU_ISA=$ONEDNN_MAX_CPU_ISA" \
            "MKL_ENABLE_INSTRUCTIONS=$MKL_ENABLE_INSTRUCTIONS" ;;
    *)
        echo "NBVAL_ISA must be 'pinned' (the default) or 'native', got '$NBVAL_ISA'" >&2; exit 2 ;;
esac

# shellcheck source=scripts/_ensure_env.sh
source scripts/_ensure_env.sh

notebooks=("$@")
if [ ${#notebooks[@]} -eq 0 ]; then
    for folder in chapters solutions exercises book; do
        [ -d "$folder" ] || continue
        while IFS= read -r -d '' nb; do notebooks+=("$nb"); done \
            < <(find "$folder" -maxdepth 1 -name '*.ipynb' -print0 | sort -z)
    done
    if [ ${#notebooks[@]} -eq 0 ]; then
        echo "no notebooks in chapters/ solutions/ exercises/ book/: nothing for nbval to check"
        exit 0
    fi
fi
echo "${#notebooks[@]} notebook(s): ${notebooks[*]}"
workers=()
[ ${#notebooks[@]} -gt 1 ] && workers=(-n 2 --dist loadfile)  # one kernel per notebook, two at a time
rc=0
python -m pytest -q --nbval --nbval-current-env --nbval-sanitize-with nbval_sanitize.cfg \
    --nbval-cell-timeout 600 -p no:cacheprovider "${workers[@]}" "${notebooks[@]}" || rc=$?
if [ $rc -eq 5 ]; then  # pytest's "no tests collected": notebooks without code cells
    echo "nbval collected no cells (the notebooks have no code cells): nothing to compare"
    exit 0
fi
exit $rc
