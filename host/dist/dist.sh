#!/usr/bin/env bash
# `./x dist`: target/dist/tsohost-VERSION-TARGET.tar.gz, a directory of
# the binary (built-in drivers embedded, debug information stripped), the
# systemd unit, the example configuration and INSTALL, whose list of the
# shared libraries the binary needs is read off the binary itself.
#
#   TSOHOST_BIN=PATH       package this binary instead of building one (the
#                          test packages the binary under test)
#   TSOHOST_DIST_DIR=DIR   write there instead of target/dist
#
# Prints the tarball's path.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

for tool in readelf objdump objcopy tar; do
    command -v "$tool" >/dev/null \
        || { echo "dist: $tool is missing (Debian: apt-get install binutils tar)" >&2; exit 1; }
done
bin=${TSOHOST_BIN:-}
if [ -z "$bin" ]; then
    (cd "$root" && cargo build --release -p tsohost >&2)
    bin=$root/target/release/tsohost
fi
out=${TSOHOST_DIST_DIR:-$root/target/dist}

# `tsohost 0.1.0 (commit ..., WIT ...)`
version=$("$bin" --version | awk '{print $2}')
target=$(rustc -vV | sed -n 's/^host: //p')
name=tsohost-$version-$target
stage=$out/$name
rm -rf "$stage" "$stage.tar.gz"
mkdir -p "$stage"

objcopy --strip-debug "$bin" "$stage/tsohost"
cp "$here/tsohost.toml" "$here/tsohost.service" "$stage/"

needed=$(readelf -d "$stage/tsohost" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/    \1/p')
glibc=$(objdump -T "$stage/tsohost" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -n 1)
rocksdb=$(printf '%s\n' "$needed" | sed -n 's/.*librocksdb\.so\.//p')
[ -n "$rocksdb" ] || { echo "dist: the binary does not link librocksdb.so: INSTALL would be wrong" >&2; exit 1; }
# The package that provided the library here, and the system it was built on.
lib=$(ldd "$stage/tsohost" | awk '/librocksdb/ {print $3}')
package=$(dpkg -S "/usr${lib#/usr}" 2>/dev/null | cut -d: -f1 | head -n 1 || true)
package=${package:-librocksdb$rocksdb}
system=$( (. /etc/os-release && echo "$PRETTY_NAME") 2>/dev/null || uname -sr)
text=$(<"$here/INSTALL")
text=${text//@VERSION@/$version}
text=${text//@TARGET@/$target}
text=${text//@NEEDED@/$needed}
text=${text//@GLIBC@/$glibc}
text=${text//@ROCKSDB_SOVERSION@/$rocksdb}
text=${text//@ROCKSDB_PACKAGE@/$package}
text=${text//@SYSTEM@/$system}
printf '%s\n' "$text" >"$stage/INSTALL"

# The staged binary must run (and say which version it is) before it ships.
"$stage/tsohost" --version >/dev/null

tar -C "$out" --owner=0 --group=0 --numeric-owner --sort=name -czf "$stage.tar.gz" "$name"
rm -rf "$stage"
echo "$stage.tar.gz"
