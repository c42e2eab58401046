#!/usr/bin/env bash
# Build the `javascript-file` driver component with componentize-js.
# Installs the toolchain (from npm, into target/npm) if missing; idempotent.
# Output: out/javascript-file.wasm next to this script.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
wit="$(cd "$here/../../../wit" && pwd)"
world="consensus-driver"
version="0.23.0"
prefix="$here/target/npm"
pkg="$prefix/node_modules/@bytecodealliance/componentize-js"
cjs="$prefix/node_modules/.bin/componentize-js"
out="$here/out/javascript-file.wasm"

installed="$(node -p "require('$pkg/package.json').version" 2>/dev/null || true)"
if [ "$installed" != "$version" ] || [ ! -x "$cjs" ]; then
    echo "installing @bytecodealliance/componentize-js $version into $prefix" >&2
    mkdir -p "$prefix"
    npm install --prefix "$prefix" --no-save --no-audit --no-fund \
        --no-package-lock --loglevel=error \
        "@bytecodealliance/componentize-js@$version"
fi

mkdir -p "$here/out"
# -d http fetch-event: without them the component imports wasi:http, which
# the host does not provide.
"$cjs" --wit "$wit" --world-name "$world" -d http fetch-event \
    -o "$out.tmp" "$here/driver.js"
mv -f "$out.tmp" "$out"

echo "built $out ($(wc -c <"$out") bytes)"
