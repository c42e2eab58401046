#!/usr/bin/env bash
# tsohost against tsoracle (https://crates.io/crates/tsoracle), same machine,
# same durations, one system after the other, each with its own client:
#   tsohost:  `tsohost bench --client` (N callers of one coalescing
#             tsohost-client, HTTP/1.1)
#   tsoracle: examples/bench/tsoracle-load (N callers of one
#             tsoracle_client::Client, gRPC, which coalesces too)
# Rows: single timestamps at 1/16/64/256 callers and batches of 1000 at 1 and
# 16 callers; first one node (tsohost `file` vs tsoracle `serve file`), then
# 3 nodes (tsohost `raft` vs tsoracle `serve openraft`), load on the leader.
# Prints Markdown tables with both systems and tsohost/tsoracle ratios; the
# JSON reports land in target/bench/vs-tsoracle/.
#
#   examples/bench/vs-tsoracle.sh                 # 10 s per row
#   DURATION=5s CLUSTER=0 examples/bench/vs-tsoracle.sh
#
# Environment: TSOHOST_BIN (target/release/tsohost), DURATION (10s), WARMUP
# (1s), TSORACLE_VERSION (2.3.3), CLUSTER (1: also the 3-node tables),
# TSORACLE_DEFAULT_FLUSH (1: also measure tsoracle's client with its default
# 1 ms batch flush interval; the main table uses flush 0, its faster setting).
# Builds (once, under target/): tsoracle twice with `cargo install` (file-only
# and openraft-only; needs protoc, apt-installed when missing and root) and
# the load generator. Building tsoracle's openraft driver compiles RocksDB.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
BIN=${TSOHOST_BIN:-target/release/tsohost}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-1s}
# 2.3.3 is the newest tsoracle whose rust-version (1.88) rustc 1.95 meets
# (2.4.0 needs 1.96); its client is tsoracle-client 1.3.0 (pinned in
# tsoracle-load/Cargo.toml for the same reason).
TSORACLE_VERSION=${TSORACLE_VERSION:-2.3.3}
CLUSTER=${CLUSTER:-1}
TSORACLE_DEFAULT_FLUSH=${TSORACLE_DEFAULT_FLUSH:-1}
OUT=target/bench/vs-tsoracle
mkdir -p "$OUT"
[ -x "$BIN" ] || { echo "no tsohost binary at $BIN (set TSOHOST_BIN or build it)" >&2; exit 1; }

# ---- build what tsoracle needs -------------------------------------------
if ! command -v protoc >/dev/null; then
    echo "installing protoc (protobuf-compiler)" >&2
    if [ "$(id -u)" = 0 ]; then
        apt-get install -y protobuf-compiler >/dev/null || {
            apt-get update >/dev/null && apt-get install -y protobuf-compiler >/dev/null; }
    else
        sudo apt-get install -y protobuf-compiler >/dev/null
    fi
fi
install_tsoracle() { # FEATURE -> prints the binary path
    local root="target/tsoracle-$TSORACLE_VERSION-$1"
    if [ ! -x "$root/bin/tsoracle" ]; then
        echo "building tsoracle $TSORACLE_VERSION --features $1 (once)" >&2
        CARGO_TARGET_DIR="$ROOT/target/tsoracle-build" cargo install --quiet --locked \
            --version "$TSORACLE_VERSION" tsoracle --no-default-features --features "$1" \
            --root "$root" >&2
    fi
    echo "$root/bin/tsoracle"
}
TSO_FILE=$(install_tsoracle file)
[ "$CLUSTER" = 1 ] && TSO_RAFT=$(install_tsoracle openraft)
echo "building tsoracle-load" >&2
cargo build --quiet --release --locked --manifest-path examples/bench/tsoracle-load/Cargo.toml \
    --target-dir target/tsoracle-load >&2
LOAD=target/tsoracle-load/release/tsoracle-load

# ---- processes -------------------------------------------------------------
work=$(mktemp -d)
pids=()
stop_all() {
    [ ${#pids[@]} -gt 0 ] && kill "${pids[@]}" 2>/dev/null
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    pids=()
}
trap 'stop_all; rm -rf "$work"' EXIT
free_ports() { # N distinct free loopback ports
    python3 - "$1" <<'PY'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks: s.close()
PY
}
wait_for() { # FILE PATTERN -> first match, within 20 s
    local hit
    for _ in $(seq 200); do
        hit=$(grep -o "$2" "$1" 2>/dev/null | head -1 || true)
        [ -n "$hit" ] && { echo "$hit"; return 0; }
        sleep 0.1
    done
    return 1
}

ROWS=("1 1" "16 1" "64 1" "256 1" "1 1000" "16 1000")
# bench_tsohost SETUP URL / bench_tsoracle SETUP ENDPOINTS FLUSH_TAG [--flush-us N]
bench_tsohost() {
    for row in "${ROWS[@]}"; do
        set -- "$1" "$2" $row
        "$BIN" bench --url "$2" --client --connections "$3" --count "$4" \
            --duration "$DURATION" --warmup "$WARMUP" >"$OUT/$1-tsohost-c$3-n$4.json"
    done
}
bench_tsoracle() {
    local setup=$1 endpoints=$2 tag=$3
    shift 3
    for row in "${ROWS[@]}"; do
        set -- $row "$@"
        "$LOAD" --endpoints "$endpoints" --callers "$1" --count "$2" \
            --duration "$DURATION" --warmup "$WARMUP" "${@:3}" >"$OUT/$setup-tsoracle$tag-c$1-n$2.json"
        shift 2
    done
}
table() { # SETUP TSORACLE_TAG TITLE
    python3 - "$OUT" "$1" "$2" "$3" "${ROWS[@]}" <<'PY'
import json, sys
out, setup, tag, title, rows = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:]
print(f"\n{title}\n")
print("| callers | count | tsohost calls/s | tsohost timestamps/s | p50 µs | p99 µs "
      "| tsoracle calls/s | tsoracle timestamps/s | p50 µs | p99 µs "
      "| ratio calls/s | ratio p50 | ratio p99 |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for row in rows:
    c, n = row.split()
    a = json.load(open(f"{out}/{setup}-tsohost-c{c}-n{n}.json"))
    b = json.load(open(f"{out}/{setup}-tsoracle{tag}-c{c}-n{n}.json"))
    for r, who in ((a, "tsohost"), (b, "tsoracle")):
        assert r["order_violations"] == 0, f"{who} {row}: a caller saw a timestamp go backwards"
    errs = f" (errors: tsohost {a['errors']}, tsoracle {b['errors']})" if a["errors"] or b["errors"] else ""
    la, lb = a["latency"], b["latency"]
    ratio = lambda x, y: f"{x / y:.2f}x" if y else "n/a"
    print(f"| {c} | {n} | {a['requests_per_s']:,.0f} | {a['timestamps_per_s']:,.0f} "
          f"| {la['p50_us']} | {la['p99_us']} "
          f"| {b['requests_per_s']:,.0f} | {b['timestamps_per_s']:,.0f} "
          f"| {lb['p50_us']} | {lb['p99_us']} "
          f"| {ratio(a['requests_per_s'], b['requests_per_s'])} "
          f"| {ratio(la['p50_us'], lb['p50_us'])} | {ratio(la['p99_us'], lb['p99_us'])} |{errs}")
PY
}
run_tsoracle_rows() { # SETUP ENDPOINTS
    bench_tsoracle "$1" "$2" "" --flush-us 0
    [ "$TSORACLE_DEFAULT_FLUSH" = 1 ] && bench_tsoracle "$1" "$2" "-default"
    return 0
}

# ---- one node --------------------------------------------------------------
echo "one node: tsohost (file driver)" >&2
"$BIN" serve --driver file --listen 127.0.0.1:0 --data-dir "$work/tsohost" \
    >"$work/tsohost.out" 2>"$work/tsohost.err" &
pids+=($!)
url=$(wait_for "$work/tsohost.out" 'http://[0-9.:]*') || { cat "$work/tsohost.err" >&2; exit 1; }
bench_tsohost file "$url"
stop_all

echo "one node: tsoracle (serve file)" >&2
"$TSO_FILE" serve file --listen 127.0.0.1:0 --state-dir "$work/tsoracle" \
    --heartbeat-interval 0s --log warn >"$work/tsoracle.out" 2>"$work/tsoracle.err" &
pids+=($!)
addr=$(wait_for "$work/tsoracle.out" '[0-9.]*:[0-9][0-9]*$') || { cat "$work/tsoracle.err" >&2; exit 1; }
run_tsoracle_rows file "http://$addr"
stop_all

# ---- three nodes -----------------------------------------------------------
if [ "$CLUSTER" = 1 ]; then
    echo "three nodes: tsohost (raft driver)" >&2
    read -r h1 h2 h3 p1 p2 p3 <<<"$(free_ports 6)"
    http=("" "$h1" "$h2" "$h3")
    head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$work/secret"
    for id in 1 2 3; do
        "$BIN" serve --driver raft --node-id "$id" --bootstrap \
            --peers "1=127.0.0.1:$p1,2=127.0.0.1:$p2,3=127.0.0.1:$p3" \
            --cluster-secret-file "$work/secret" --listen "127.0.0.1:${http[$id]}" \
            --data-dir "$work/raft$id" >"$work/raft$id.out" 2>"$work/raft$id.err" &
        pids+=($!)
    done
    leader=
    for _ in $(seq 300); do
        for id in 1 2 3; do
            if curl -sf "http://127.0.0.1:${http[$id]}/readyz" >/dev/null 2>&1; then
                leader="http://127.0.0.1:${http[$id]}"
                break 2
            fi
        done
        sleep 0.1
    done
    [ -n "$leader" ] || { tail -5 "$work"/raft*.err >&2; echo "no tsohost leader" >&2; exit 1; }
    bench_tsohost raft "$leader"
    stop_all

    echo "three nodes: tsoracle (serve openraft)" >&2
    read -r s1 s2 s3 r1 r2 r3 a1 a2 a3 <<<"$(free_ports 9)"
    svc=("" "$s1" "$s2" "$s3")
    raft=("" "$r1" "$r2" "$r3")
    adm=("" "$a1" "$a2" "$a3")
    members="1=127.0.0.1:$r1/127.0.0.1:$s1/127.0.0.1:$a1"
    members+=",2=127.0.0.1:$r2/127.0.0.1:$s2/127.0.0.1:$a2"
    members+=",3=127.0.0.1:$r3/127.0.0.1:$s3/127.0.0.1:$a3"
    for id in 1 2 3; do
        boot=()
        [ "$id" = 1 ] && boot=(--bootstrap --members "$members")
        "$TSO_RAFT" serve openraft --id "$id" --raft-addr "127.0.0.1:${raft[$id]}" \
            --raft-dir "$work/tsoraft$id" --listen "127.0.0.1:${svc[$id]}" \
            --admin-listen "127.0.0.1:${adm[$id]}" "${boot[@]}" \
            --heartbeat-interval 0s --log warn >"$work/tsoraft$id.out" 2>"$work/tsoraft$id.err" &
        pids+=($!)
    done
    endpoints="http://127.0.0.1:$s1,http://127.0.0.1:$s2,http://127.0.0.1:$s3"
    # Ready when a short single-caller run gets timestamps without errors
    # (the client follows NOT_LEADER hints to the leader).
    ready=
    for _ in $(seq 30); do
        if "$LOAD" --endpoints "$endpoints" --callers 1 --duration 200ms --warmup 0s \
            --flush-us 0 2>/dev/null |
            python3 -c 'import json,sys; r=json.load(sys.stdin); sys.exit(not (r["requests"] and not r["errors"]))'; then
            ready=1
            break
        fi
        sleep 1
    done
    [ -n "$ready" ] || { tail -5 "$work"/tsoraft*.err >&2; echo "no tsoracle leader" >&2; exit 1; }
    run_tsoracle_rows raft "$endpoints"
    stop_all
fi

# ---- report ----------------------------------------------------------------
echo
echo "tsohost $("$BIN" --version 2>/dev/null | awk '{print $NF}') vs tsoracle $TSORACLE_VERSION," \
    "$DURATION per row after a $WARMUP warm-up, $(nproc) cores, $(date -u +%Y-%m-%d)."
echo "Both sides: N callers of one client of that system (tsohost-client over HTTP/1.1;"
echo "tsoracle-client over gRPC with batch flush interval 0). Ratios are tsohost / tsoracle"
echo "(calls/s: higher is better for tsohost; latency: lower is better for tsohost)."
table file "" "One node: tsohost \`file\` vs tsoracle \`serve file\`"
[ "$TSORACLE_DEFAULT_FLUSH" = 1 ] &&
    table file "-default" "One node, tsoracle's client with its default 1 ms batch flush interval"
if [ "$CLUSTER" = 1 ]; then
    table raft "" "Three nodes on this machine: tsohost \`raft\` vs tsoracle \`serve openraft\` (load on the leader)"
    [ "$TSORACLE_DEFAULT_FLUSH" = 1 ] &&
        table raft "-default" "Three nodes, tsoracle's client with its default 1 ms batch flush interval"
fi
exit 0
