# Sourced by scripts/test.sh and scripts/book.sh (not a command): make sure .venv/ exists and has
# everything the course needs, then activate it.
#
# - creates .venv/ with `python3 -m venv` when it does not exist;
# - installs torch and torchvision with the exact releases of scripts/constraints-ci.txt (x86_64:
#   2.14.1 / 0.29.1, aarch64: 2.9.1 / 0.24.1), then requirements.txt and the package itself
#   (`pip install -e ".[test]"`), under the same constraints;
# - skips all of that in well under a second when nothing changed: the install leaves a stamp
#   .venv/.installed-<hash of requirements.txt, pyproject.toml, the constraints, this file, the
#   Python version and the machine>, and a stamp with the current hash means "already satisfied".
#   Delete .venv/.installed-* to force a reinstall.
# - installs with uv (`pip install uv` into .venv, then `uv pip install`: parallel downloads and
#   unpacking, 79 s for the whole set under load against pip's 164 s on a quiet machine), reading pip's
#   own configuration (find-links, index URLs, constraint files: `pip config list`) so that both see
#   the same packages; falls back to pip when uv cannot be installed. MOBILEVIT_EDU_INSTALLER=pip
#   forces pip.
# Needs only Python 3 with venv and pip, and PyPI.

_env_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_env_venv="$_env_root/.venv"
_env_constraints="$_env_root/scripts/constraints-ci.txt"

if [ ! -x "$_env_venv/bin/python" ]; then
    echo "== creating $_env_venv (python3 -m venv)"
    python3 -m venv "$_env_venv"
fi

_env_hash="$(
    {
        cat "$_env_root/requirements.txt" "$_env_root/pyproject.toml" "$_env_constraints" "${BASH_SOURCE[0]}"
        "$_env_venv/bin/python" -c 'import platform, sys; print(sys.version, platform.machine())'
    } | sha256sum | cut -c1-16
)"
_env_stamp="$_env_venv/.installed-$_env_hash"

if [ ! -f "$_env_stamp" ]; then
    echo "== installing the course's requirements into $_env_venv (first run, or requirements changed)"
    _env_start=$SECONDS
    (
        cd "$_env_root"
        if [ "${MOBILEVIT_EDU_INSTALLER:-uv}" = uv ] \
                && "$_env_venv/bin/python" -m pip install -q --progress-bar off uv >/dev/null 2>&1; then
            # pip's settings (e.g. find-links=/opt/wheels, extra-index-url=file:///opt/pypi/simple,
            # constraint=...) as uv's options; several values in one setting are separated by spaces.
            _env_uv_args=()
            while IFS='=' read -r _env_key _env_value; do
                _env_value="${_env_value//\'/}"
                case "${_env_key#*.}" in
                    find-links)      for v in $_env_value; do _env_uv_args+=(--find-links "$v"); done ;;
                    index-url)       _env_uv_args+=(--index-url "$_env_value") ;;
                    extra-index-url) for v in $_env_value; do _env_uv_args+=(--extra-index-url "$v"); done ;;
                    constraint)      for v in $_env_value; do _env_uv_args+=(-c "$v"); done ;;
                esac
            done < <("$_env_venv/bin/python" -m pip config list 2>/dev/null)
            # unsafe-best-match: like pip, take the best version from all indexes, not the first that has it
            "$_env_venv/bin/uv" pip install -q --python "$_env_venv/bin/python" --index-strategy unsafe-best-match --compile-bytecode \
                "${_env_uv_args[@]}" -c "$_env_constraints" torch torchvision -r requirements.txt -e ".[test]"
        else
            echo "== uv unavailable (or MOBILEVIT_EDU_INSTALLER=pip): installing with pip"
            "$_env_venv/bin/python" -m pip install -q --progress-bar off -c "$_env_constraints" torch torchvision
            "$_env_venv/bin/python" -m pip install -q --progress-bar off -c "$_env_constraints" -r requirements.txt -e ".[test]"
        fi
    )
    rm -f "$_env_venv"/.installed-*
    touch "$_env_stamp"
    echo "== environment ready in $((SECONDS - _env_start)) s"
fi

# shellcheck disable=SC1091
source "$_env_venv/bin/activate"
unset _env_root _env_venv _env_constraints _env_hash _env_stamp _env_start _env_uv_args _env_key _env_value
