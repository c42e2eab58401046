#!/usr/bin/env bash
# Build the `javascript-paxos` driver component with componentize-js.
# Installs the toolchain (from npm, into target/npm) if missing; idempotent.
# Output: out/javascript-paxos.wasm next to this script.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# Built against the frozen WIT 0.1.0 (wit/0.1.0/README.md): this example is
# the tests' proof that a 0.1 driver still loads.
wit="$(cd "$here/../../../wit/0.1.0" && pwd)"
. "$here/../lib.sh"
componentize_js "$here" javascript-paxos "$wit"
