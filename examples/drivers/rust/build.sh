#!/usr/bin/env bash
# Build the `rust-file` driver component with cargo for wasm32-wasip2, which
# (with wit-bindgen) makes a component directly: no wasm-tools step.
# Adds the wasm32-wasip2 target with rustup if missing; idempotent.
# Output: out/rust-file.wasm next to this script.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
wit="$here/wit"   # read by wit_bindgen::generate! in src/lib.rs
name="rust-file"
out="$here/out/$name.wasm"

# From here, so that a rust-toolchain.toml or .cargo/config.toml of the
# project applies to rustup and cargo alike.
cd "$here"
[ -f "$wit/driver.wit" ] || { echo "missing $wit/driver.wit: the contract to build against" >&2; exit 1; }
if ! rustup target list --installed | grep -qx wasm32-wasip2; then
    rustup target add wasm32-wasip2
fi

# --locked: build with exactly the dependencies in Cargo.lock.
cargo build --release --locked --target wasm32-wasip2 --target-dir "$here/target"

mkdir -p "$here/out"
# cargo names the library after the package, with `-` as `_`.
cp "$here/target/wasm32-wasip2/release/${name//-/_}.wasm" "$out.tmp"
mv -f "$out.tmp" "$out"
echo "built $out ($(wc -c <"$out") bytes)"
