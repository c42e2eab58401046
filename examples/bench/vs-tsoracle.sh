#!/usr/bin/env bash
# tsohost against tsoracle (https://crates.io/crates/tsoracle) on the same
# machine, both servers up throughout, runs interleaved.
#
# Two tables per setup, every row measured REPEATS times:
#   coalescing (each system's own client, N callers of one client):
#     tsohost:  `tsohost bench --client` (one coalescing tsohost-client, HTTP/1.1)
#     tsoracle: examples/bench/tsoracle-load --flush-us 0 (one
#               tsoracle_client::Client, gRPC, which coalesces too)
#     rows: single timestamps at 1/16/64/256 callers, batches of 1000 at 1 and
#     16 callers
#   server only (no client coalescing: one request per call):
#     tsohost:  `tsohost bench` (one HTTP/1.1 keep-alive connection per caller)
#     tsoracle: tsoracle-load --client-per-caller --flush-us 0 (one client,
#               so one HTTP/2 connection, per caller)
#     rows: single timestamps at 1/16/64 callers
# Setups: one node (tsohost `file` and tsoracle `serve file`), then three
# nodes (tsohost `raft` and tsoracle `serve openraft`: both clusters up at
# once, 6 processes), load on the leader.
#
# Order: REPEATS rounds; in each, every row of both tables, the systems of a
# row back to back, tsohost first in odd rounds and last in even ones (A,B
# then B,A), so that drift of the machine falls on both. The ratio (tsohost
# calls/s over tsoracle calls/s) is computed per round, from the two runs of
# that round; the tables show its median, min and max, and for each system
# the median over the rounds of calls/s, timestamps/s and the latency
# percentiles. Fails (non-zero) if any run saw a timestamp go backwards
# (order_violations > 0); errors are shown per run and in the tables.
# Prints the report (Markdown) on stdout, progress on stderr; the JSON report
# of every run lands in target/bench/vs-tsoracle/
# (SETUP-TABLE-SYSTEM-cCALLERS-nCOUNT-rROUND.json).
#
#   examples/bench/vs-tsoracle.sh                 # 10 s per run, 3 rounds
#   DURATION=5s REPEATS=5 CLUSTER=0 examples/bench/vs-tsoracle.sh
#
# Environment: TSOHOST_BIN (target/release/tsohost), DURATION (10s), WARMUP
# (1s, before each run), REPEATS (3), TSORACLE_VERSION (2.3.3), CLUSTER (1:
# also the 3-node setup), TSORACLE_DEFAULT_FLUSH (0; 1: a third system in the
# coalescing rounds, tsoracle's client with its default 1 ms batch flush
# interval, in a table of its own against the same tsohost runs).
# Builds (once, under target/): tsoracle twice with `cargo install` (file-only
# and openraft-only; needs protoc, apt-installed when missing and root) and
# the load generator. Building tsoracle's openraft driver compiles RocksDB.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
BIN=${TSOHOST_BIN:-target/release/tsohost}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-1s}
REPEATS=${REPEATS:-3}
# 2.3.3 is the newest tsoracle whose rust-version (1.88) rustc 1.95 meets
# (2.4.0 needs 1.96); its client is tsoracle-client 1.3.0 (pinned in
# tsoracle-load/Cargo.toml for the same reason).
TSORACLE_VERSION=${TSORACLE_VERSION:-2.3.3}
CLUSTER=${CLUSTER:-1}
TSORACLE_DEFAULT_FLUSH=${TSORACLE_DEFAULT_FLUSH:-0}
OUT=target/bench/vs-tsoracle
[ -x "$BIN" ] || { echo "no tsohost binary at $BIN (set TSOHOST_BIN or build it)" >&2; exit 1; }
[ "$REPEATS" -ge 1 ] 2>/dev/null || { echo "REPEATS must be a positive number" >&2; exit 1; }

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
        # Without ROCKSDB_LIB_DIR (./x sets it for tsohost): tsoracle's
        # rocksdb crate needs RocksDB 10, not the distribution's, and builds
        # its bundled copy.
        env -u ROCKSDB_LIB_DIR -u ROCKSDB_INCLUDE_DIR -u ROCKSDB_STATIC \
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
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

# ---- the runs --------------------------------------------------------------
# A table: its rows ("callers count") and its systems; the first system is
# tsohost, the numerator of the ratios.
coalesce_rows=("1 1" "16 1" "64 1" "256 1" "1 1000" "16 1000")
coalesce_systems=(tsohost tsoracle)
[ "$TSORACLE_DEFAULT_FLUSH" = 1 ] && coalesce_systems+=(tsoracle-default)
server_rows=("1 1" "16 1" "64 1")
server_systems=(tsohost-raw tsoracle-per-caller)
TABLES=(coalesce server)

# run_one SETUP TABLE SYSTEM CALLERS COUNT ROUND: one run against $URL
# (tsohost) or $ENDPOINTS (tsoracle), its JSON report to $OUT; stops the
# script if a caller saw a timestamp go backwards.
run_one() {
    local file="$OUT/$1-$2-$3-c$4-n$5-r$6.json"
    local common=(--count "$5" --duration "$DURATION" --warmup "$WARMUP")
    local cmd
    case $3 in
    tsohost) cmd=("$BIN" bench --url "$URL" --client --connections "$4") ;;
    tsohost-raw) cmd=("$BIN" bench --url "$URL" --connections "$4") ;;
    tsoracle) cmd=("$LOAD" --endpoints "$ENDPOINTS" --callers "$4" --flush-us 0) ;;
    tsoracle-default) cmd=("$LOAD" --endpoints "$ENDPOINTS" --callers "$4") ;;
    tsoracle-per-caller)
        cmd=("$LOAD" --endpoints "$ENDPOINTS" --callers "$4" --client-per-caller --flush-us 0) ;;
    *) echo "unknown system $3" >&2; exit 1 ;;
    esac
    "${cmd[@]}" "${common[@]}" >"$file" || { echo "FAILED: ${cmd[*]} ${common[*]}" >&2; exit 1; }
    python3 - "$file" "$1 round $6/$REPEATS: $2 $3 c=$4 n=$5" <<'PY' >&2
import json, sys
r = json.load(open(sys.argv[1]))
l = r["latency"]
print(f"  {sys.argv[2]}: {r['requests_per_s']:,.0f} calls/s, p50 {l['p50_us']} p99 {l['p99_us']}"
      f" p999 {l.get('p999_us', '-')} µs, {r['errors']} errors, {r['order_violations']} order violations")
if r["order_violations"]:
    sys.exit(f"ORDER VIOLATION in {sys.argv[1]}: a caller saw a timestamp go backwards")
PY
}

# rounds SETUP: REPEATS rounds of every row of every table.
rounds() {
    local round table row systems
    for round in $(seq "$REPEATS"); do
        echo "$1: round $round of $REPEATS (load average $(loadavg))" >&2
        for table in "${TABLES[@]}"; do
            local -n rows_ref="${table}_rows" systems_ref="${table}_systems"
            systems=("${systems_ref[@]}")
            if [ $((round % 2)) = 0 ]; then # reversed: B,A (C,B,A)
                local i reversed=()
                for ((i = ${#systems[@]} - 1; i >= 0; i--)); do reversed+=("${systems[i]}"); done
                systems=("${reversed[@]}")
            fi
            for row in "${rows_ref[@]}"; do
                for system in "${systems[@]}"; do
                    # shellcheck disable=SC2086 # row is "callers count"
                    run_one "$1" "$table" "$system" $row "$round"
                done
            done
            unset -n rows_ref systems_ref
        done
    done
}

# table SETUP TABLE SYSTEM_A SYSTEM_B TITLE: the Markdown table of A against B.
table() {
    local -n rows_ref="${2}_rows"
    python3 - "$OUT" "$REPEATS" "$@" "${rows_ref[@]}" <<'PY'
import json, statistics, sys
out, repeats, setup, tab, sa, sb, title, rows = (sys.argv[1], int(sys.argv[2]), *sys.argv[3:8],
                                                  sys.argv[8:])
load = lambda s, c, n, r: json.load(open(f"{out}/{setup}-{tab}-{s}-c{c}-n{n}-r{r}.json"))
runs = {row: [(load(sa, *row.split(), r), load(sb, *row.split(), r)) for r in range(1, repeats + 1)]
        for row in rows}
p999 = all("p999_us" in x["latency"] for pairs in runs.values() for pair in pairs for x in pair)
lat = ["p50_us", "p99_us"] + (["p999_us"] if p999 else [])
na, nb = sa.split("-")[0], sb.split("-")[0]  # tsohost-raw -> tsohost
print(f"\n{title}\n")
cols = lambda who: [f"{who} calls/s", "timestamps/s"] + [f"{k[:-3]} µs" for k in lat]
head = (["callers", "count"] + cols(na) + cols(nb)
        + [f"{na} / {nb} calls/s: median (min–max)", f"errors {na} / {nb}"])
print("| " + " | ".join(head) + " |")
print("|" + "---:|" * len(head))
for row in rows:
    c, n = row.split()
    pairs = runs[row]
    for r, (a, b) in enumerate(pairs, 1):
        for x, s in ((a, sa), (b, sb)):
            assert x["order_violations"] == 0, f"{s} {row} round {r}: a timestamp went backwards"
    med = lambda xs: statistics.median(xs)
    def side(i):
        xs = [p[i] for p in pairs]
        return ([f"{med([x['requests_per_s'] for x in xs]):,.0f}",
                 f"{med([x['timestamps_per_s'] for x in xs]):,.0f}"]
                + [f"{med([x['latency'][k] for x in xs]):,.0f}" for k in lat])
    ratios = [a["requests_per_s"] / b["requests_per_s"] for a, b in pairs if b["requests_per_s"]]
    ratio = (f"{med(ratios):.2f}x ({min(ratios):.2f}–{max(ratios):.2f})"
             if len(ratios) == len(pairs) else "n/a (a run answered nothing)")
    errors = f"{sum(a['errors'] for a, _ in pairs)} / {sum(b['errors'] for _, b in pairs)}"
    print("| " + " | ".join([c, n] + side(0) + side(1) + [ratio, errors]) + " |")
PY
}

# ---- what the run costs ----------------------------------------------------
runs_per_round=0
for t in "${TABLES[@]}"; do
    declare -n r_ref="${t}_rows" s_ref="${t}_systems"
    runs_per_round=$((runs_per_round + ${#r_ref[@]} * ${#s_ref[@]}))
    unset -n r_ref s_ref
done
setups=1
[ "$CLUSTER" = 1 ] && setups=2
python3 - "$DURATION" "$WARMUP" "$((runs_per_round * REPEATS * setups))" <<'PY' >&2
import re, sys
def secs(s):
    unit = {"ms": 1e-3, "s": 1, "m": 60, "min": 60, "h": 3600}
    return sum(float(v) * unit[u] for v, u in re.findall(r"([\d.]+)\s*(ms|min|s|m|h)", s))
runs = int(sys.argv[3])
total = runs * (secs(sys.argv[1]) + secs(sys.argv[2]))
print(f"{runs} runs of {sys.argv[1]} after a {sys.argv[2]} warm-up: at least "
      + (f"{total / 60:.0f} min" if total >= 120 else f"{total:.0f} s"))
PY
mkdir -p "$OUT"
rm -f "$OUT"/*.json
load_start=$(loadavg)
started=$(date -u '+%Y-%m-%d %H:%M UTC')

# ---- one node --------------------------------------------------------------
echo "one node: tsohost (file driver) and tsoracle (serve file)" >&2
"$BIN" serve --driver file --listen 127.0.0.1:0 --data-dir "$work/tsohost" \
    >"$work/tsohost.out" 2>"$work/tsohost.err" &
pids+=($!)
"$TSO_FILE" serve file --listen 127.0.0.1:0 --state-dir "$work/tsoracle" \
    --heartbeat-interval 0s --log warn >"$work/tsoracle.out" 2>"$work/tsoracle.err" &
pids+=($!)
URL=$(wait_for "$work/tsohost.out" 'http://[0-9.:]*') || { cat "$work/tsohost.err" >&2; exit 1; }
addr=$(wait_for "$work/tsoracle.out" '[0-9.]*:[0-9][0-9]*$') || { cat "$work/tsoracle.err" >&2; exit 1; }
ENDPOINTS="http://$addr"
rounds file
stop_all

# ---- three nodes -----------------------------------------------------------
if [ "$CLUSTER" = 1 ]; then
    echo "three nodes: tsohost (raft driver) and tsoracle (serve openraft)" >&2
    read -r h1 h2 h3 p1 p2 p3 s1 s2 s3 r1 r2 r3 a1 a2 a3 <<<"$(free_ports 15)"
    http=("" "$h1" "$h2" "$h3")
    head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$work/secret"
    for id in 1 2 3; do
        "$BIN" serve --driver raft --node-id "$id" --bootstrap \
            --peers "1=127.0.0.1:$p1,2=127.0.0.1:$p2,3=127.0.0.1:$p3" \
            --cluster-secret-file "$work/secret" --listen "127.0.0.1:${http[$id]}" \
            --data-dir "$work/raft$id" >"$work/raft$id.out" 2>"$work/raft$id.err" &
        pids+=($!)
    done
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
    URL=
    for _ in $(seq 300); do
        for id in 1 2 3; do
            if curl -sf "http://127.0.0.1:${http[$id]}/readyz" >/dev/null 2>&1; then
                URL="http://127.0.0.1:${http[$id]}"
                break 2
            fi
        done
        sleep 0.1
    done
    [ -n "$URL" ] || { tail -5 "$work"/raft*.err >&2; echo "no tsohost leader" >&2; exit 1; }
    ENDPOINTS="http://127.0.0.1:$s1,http://127.0.0.1:$s2,http://127.0.0.1:$s3"
    # Ready when a short single-caller run gets timestamps without errors
    # (the client follows NOT_LEADER hints to the leader).
    ready=
    for _ in $(seq 30); do
        if "$LOAD" --endpoints "$ENDPOINTS" --callers 1 --duration 200ms --warmup 0s \
            --flush-us 0 2>/dev/null |
            python3 -c 'import json,sys; r=json.load(sys.stdin); sys.exit(not (r["requests"] and not r["errors"]))'; then
            ready=1
            break
        fi
        sleep 1
    done
    [ -n "$ready" ] || { tail -5 "$work"/tsoraft*.err >&2; echo "no tsoracle leader" >&2; exit 1; }
    rounds raft
    stop_all
fi

# ---- report ----------------------------------------------------------------
load_end=$(loadavg)
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
mem=$(awk '/^MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)
echo
echo "$("$BIN" --version 2>/dev/null | head -1) vs tsoracle $TSORACLE_VERSION" \
    "(tsoracle-client $(sed -n 's/^tsoracle-client = { version = "=\([^"]*\)".*/\1/p' \
        examples/bench/tsoracle-load/Cargo.toml)), $(rustc --version | awk '{print $1, $2}'), started $started."
echo "Machine: $(nproc) cores ($cpu), $mem; load average (1, 5, 15 min) $load_start at the start," \
    "$load_end at the end (the runs themselves keep about 2 busy)."
echo "DURATION $DURATION per run after a $WARMUP warm-up, REPEATS $REPEATS rounds; both systems up"
echo "throughout; in each round every row runs once per system, back to back, tsohost first in odd"
echo "rounds and last in even ones. Per system: the median over the rounds. Ratio: tsohost / tsoracle"
echo "calls/s per round (higher is better for tsohost), median (min–max) over the rounds. Errors: the"
echo "sum over the rounds. Every run's order check (order_violations) was 0."
setup_tables() { # SETUP NAME
    table "$1" coalesce tsohost tsoracle \
        "$2, coalescing: N callers of one client (tsohost-client over HTTP/1.1; tsoracle-client over gRPC, batch flush interval 0)"
    [ "$TSORACLE_DEFAULT_FLUSH" = 1 ] && table "$1" coalesce tsohost tsoracle-default \
        "$2, coalescing, tsoracle's client with its default 1 ms batch flush interval (same tsohost runs)"
    table "$1" server tsohost-raw tsoracle-per-caller \
        "$2, server only (no client coalescing): one HTTP/1.1 keep-alive connection per caller (tsohost bench without --client); one tsoracle-client per caller, flush 0"
    return 0
}
setup_tables file "One node: tsohost \`file\` vs tsoracle \`serve file\`"
[ "$CLUSTER" = 1 ] &&
    setup_tables raft "Three nodes on this machine, both clusters up: tsohost \`raft\` vs tsoracle \`serve openraft\` (load on the leader)"
exit 0
