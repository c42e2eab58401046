#!/usr/bin/env bash
# Regenerate bindings/, the C bindings of wit/ (world `consensus-driver`), with
# wit-bindgen-c 0.61.1: the generator in gen/ is built with cargo into
# target/gen first (a couple of minutes the first time). Run it by hand after
# changing wit/, and commit bindings/: build.sh refuses bindings whose
# bindings/WIT.sha256 does not match wit/.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# Built against the frozen WIT 0.1.0 (wit/0.1.0/README.md): the examples are
# the tests' proof that a 0.1 driver still loads.
wit="$(cd "$here/../../../wit/0.1.0" && pwd)"
world="consensus-driver"
tmp="$here/target/bindings.tmp"

# The SHA-256 of every .wit file under wit/, by path; the same in build.sh.
wit_sha256() {
    (cd "$wit" && find . -name '*.wit' -printf '%P\0' | LC_ALL=C sort -z | xargs -0 sha256sum)
}

CARGO_TARGET_DIR="$here/target/gen" cargo build --release --locked --quiet \
    --manifest-path "$here/gen/Cargo.toml"

rm -rf "$tmp"
"$here/target/gen/release/gen-c-bindings" "$wit" "$world" "$tmp"
wit_sha256 >"$tmp/WIT.sha256"
rm -rf "$here/bindings"
mv "$tmp" "$here/bindings"

echo "generated $here/bindings"
