#!/usr/bin/env bash
# Build the `python-file` driver component with componentize-py.
# Installs the toolchain (from PyPI, into target/venv) if missing; idempotent.
# Output: out/python-file.wasm next to this script.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
wit="$here/wit"
world="consensus-driver"
version="0.25.1"
venv="$here/target/venv"
cpy="$venv/bin/componentize-py"
out="$here/out/python-file.wasm"

. "$here/lib.sh"
pip_tools "$venv" "componentize-py==$version"

mkdir -p "$here/out"
cd "$here"   # componentize-py finds driver.py on the current directory
"$cpy" -d "$wit" -w "$world" componentize driver -o "$out.tmp"
mv -f "$out.tmp" "$out"

echo "built $out ($(wc -c <"$out") bytes)"
