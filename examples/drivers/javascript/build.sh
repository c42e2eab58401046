#!/usr/bin/env bash
# Build the `javascript-file` driver component with componentize-js.
# Installs the toolchain (from npm, into target/npm) if missing; idempotent.
# Output: out/javascript-file.wasm next to this script.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
wit="$here/wit"
. "$here/lib.sh"
componentize_js "$here" javascript-file "$wit"
