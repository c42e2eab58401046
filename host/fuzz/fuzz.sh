#!/usr/bin/env bash
# Fuzzing with cargo fuzz, on the stable toolchain (--sanitizer none: no
# -Z flags, libFuzzer's coverage instrumentation only).
#
#   ./x fuzz                build every target, run each FUZZ_SECONDS (10)
#   ./x fuzz build          only build
#   ./x fuzz run T...       build, run only targets T (names below)
#   ./x fuzz seeds          regenerate the checked-in guest seed corpora
#   ./x fuzz list           the targets
#
# Targets: guest-drivers/fuzz (frame, raft_message, paxos_message,
# raft_storage, paxos_storage) and host/fuzz (peer_frames, http). The host
# targets instrument the whole host crate, wasmtime included: the first
# build takes long; FUZZ_HOST=0 skips them. Each run starts from the
# checked-in seeds (<crate>/corpus/<target>) and keeps what it finds in
# <crate>/target/fuzz-corpus/<target>; a crash is saved under
# <crate>/artifacts/<target>/ and makes the script exit non-zero (after the
# other targets ran). TSOHOST_FUZZ_STRICT=1 makes panics inside openraft
# and omnipaxos crashes too (see guest-drivers/fuzz/src/lib.rs).
# FUZZ_FIXED=1 (CI): instead of fuzzing for FUZZ_SECONDS, run every
# checked-in seed (and regression input) through its target once: the same
# on every machine, so CI fails only on a regression, never on a new
# finding by luck (mutation is not reproducible across builds, even from a
# fixed seed). New findings come from ./x fuzz.
set -euo pipefail
cd "$(dirname "$0")/../.."

say() { printf '==> %s\n' "$*" >&2; }

SECONDS_EACH=${FUZZ_SECONDS:-10}
GUEST_TARGETS=(frame raft_message paxos_message raft_storage paxos_storage)
HOST_TARGETS=(peer_frames http)
HOST_TRIPLE=$(rustc -vV | sed -n 's/host: //p')

setup() {
    if ! cargo fuzz --version >/dev/null 2>&1; then
        say "installing cargo-fuzz"
        cargo install cargo-fuzz --locked
    fi
    # libfuzzer-sys compiles libFuzzer's C++ sources: the cc crate uses $CXX,
    # else c++. A machine with gcc but not g++ has clang++-14 after ./x setup.
    if [ -z "${CXX:-}" ] && ! command -v c++ >/dev/null && ! command -v g++ >/dev/null; then
        if command -v clang++-14 >/dev/null; then
            export CXX=clang++-14
        elif command -v clang++ >/dev/null; then
            export CXX=clang++
        else
            local sudo=""
            [ "$(id -u)" = 0 ] || sudo="sudo -n"
            say "no C++ compiler: installing g++ with apt-get"
            $sudo apt-get update -qq
            DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq g++ >/dev/null
        fi
    fi
    if [ -z "${ROCKSDB_LIB_DIR:-}" ]; then
        for dir in /usr/lib/x86_64-linux-gnu /usr/lib/aarch64-linux-gnu /usr/lib64 /usr/lib; do
            if [ -e "$dir/librocksdb.so" ]; then export ROCKSDB_LIB_DIR=$dir; break; fi
        done
    fi
}

crate_of() {
    case " ${HOST_TARGETS[*]} " in
        *" $1 "*) echo host/fuzz ;;
        *) echo guest-drivers/fuzz ;;
    esac
}

host_on() { [ "${FUZZ_HOST:-1}" != 0 ]; }

build() {
    say "building the guest fuzz targets"
    (cd guest-drivers/fuzz && cargo fuzz build --sanitizer none)
    if host_on; then
        say "building the host fuzz targets (the first build instruments wasmtime: slow)"
        (cd host/fuzz && cargo fuzz build --sanitizer none)
    fi
}

# Run target $1 for SECONDS_EACH seconds; non-zero on a crash.
run_one() {
    local t=$1 dir
    dir=$(crate_of "$t")
    mkdir -p "$dir/corpus/$t"
    local extra=()
    [ -f "$dir/dict/$t.dict" ] && extra+=("-dict=dict/$t.dict")
    local out="target/fuzz-corpus/$t" budget=(-max_total_time="$SECONDS_EACH")
    if [ "${FUZZ_FIXED:-0}" = 1 ]; then
        out="target/fuzz-fixed/$t"
        rm -rf "${dir:?}/$out"
        budget=(-runs=0)
    fi
    mkdir -p "$dir/$out"
    say "fuzzing $t (${budget[*]})"
    (cd "$dir" && cargo fuzz run --sanitizer none "$t" "$out" "corpus/$t" -- \
        "${budget[@]}" -timeout=60 -rss_limit_mb=4096 -print_final_stats=1 "${extra[@]}")
}

run() {
    local failed=()
    for t in "$@"; do
        if ! run_one "$t"; then failed+=("$t"); fi
    done
    if [ ${#failed[@]} -gt 0 ]; then
        say "crashed: ${failed[*]} (inputs under */fuzz/artifacts/)"
        return 1
    fi
    say "no crash in: $*"
}

cmd=${1:-all}
[ $# -gt 0 ] && shift
case "$cmd" in
    list) printf '%s\n' "${GUEST_TARGETS[@]}" "${HOST_TARGETS[@]}" ;;
    build) setup; build ;;
    seeds)
        setup
        say "writing guest seed corpora from simulated clusters"
        (cd guest-drivers/fuzz && cargo run --release --example gen_seeds \
            --target "$HOST_TRIPLE" --target-dir target/gen-seeds -- corpus)
        ;;
    run)
        setup
        [ $# -gt 0 ] || { echo "usage: $0 run TARGET..." >&2; exit 2; }
        for t in "$@"; do
            case " ${GUEST_TARGETS[*]} ${HOST_TARGETS[*]} " in
                *" $t "*) ;;
                *) echo "unknown target $t (see $0 list)" >&2; exit 2 ;;
            esac
        done
        run "$@"
        ;;
    all)
        setup
        build
        targets=("${GUEST_TARGETS[@]}")
        host_on && targets+=("${HOST_TARGETS[@]}")
        run "${targets[@]}"
        ;;
    *) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; [ "$cmd" = help ] || exit 2 ;;
esac
