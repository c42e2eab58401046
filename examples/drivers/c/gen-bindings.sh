#!/usr/bin/env bash
# Regenerate bindings/, the C bindings of wit/ (world `consensus-driver`), with
# wit-bindgen-c 0.61.1: the generator in gen/ is built with cargo into
# target/gen first (a few minutes the first time). Run it after
# changing wit/ (a new version of the contract), then adapt driver.c to what
# bindings/consensus_driver.h declares: build.sh refuses bindings whose
# bindings/WIT.sha256 does not match wit/.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
wit="$here/wit"
world="consensus-driver"
tmp="$here/target/bindings.tmp"

# The SHA-256 of each top-level .wit file of wit/, by name; the same in
# build.sh. Only the top level is the package the bindings come from: a
# subdirectory such as a frozen older version (wit/0.1.0/) is not.
wit_sha256() {
    (cd "$wit" && find . -maxdepth 1 -name '*.wit' -printf '%P\0' | LC_ALL=C sort -z | xargs -0 sha256sum)
}

CARGO_TARGET_DIR="$here/target/gen" cargo build --release --locked --quiet \
    --manifest-path "$here/gen/Cargo.toml"

rm -rf "$tmp"
"$here/target/gen/release/gen-c-bindings" "$wit" "$world" "$tmp"
wit_sha256 >"$tmp/WIT.sha256"
rm -rf "$here/bindings"
mv "$tmp" "$here/bindings"

echo "generated $here/bindings"
