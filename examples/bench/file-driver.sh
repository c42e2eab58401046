#!/usr/bin/env bash
# Benchmark one node with the built-in file driver: HTTP/1.1 keep-alive, the
# load generator (`tsohost bench`) on the same machine. Prints a Markdown
# table (the one in docs/benchmarks.md) and keeps the JSON reports in
# target/bench/.
#
#   ./x bench                      # 10 s per row
#   DURATION=30s ./x bench
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${TSOHOST_BIN:-target/release/tsohost}
DURATION=${DURATION:-10s}
OUT=target/bench
mkdir -p "$OUT"
data=$(mktemp -d)
"$BIN" serve --listen 127.0.0.1:0 --data-dir "$data" >"$data/stdout" 2>"$data/stderr" &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$data"' EXIT
for _ in $(seq 100); do
    url=$(grep -o 'http://[0-9.:]*' "$data/stdout" || true)
    [ -n "$url" ] && break
    sleep 0.1
done
[ -n "$url" ] || { cat "$data/stderr" >&2; echo "the server did not start" >&2; exit 1; }
# raw: one keep-alive connection per worker (what the server alone does);
# client: workers are callers of one coalescing tsohost-client.
echo "| mode | callers | count | calls/s | timestamps/s | p50 µs | p99 µs | p999 µs | errors |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
for row in "raw 1 1" "raw 16 1" "raw 64 1" "raw 256 1" "raw 16 1000" \
    "client 1 1" "client 16 1" "client 64 1" "client 256 1"; do
    set -- $row
    report="$OUT/file-$1-c$2-n$3.json"
    flag=()
    [ "$1" = client ] && flag=(--client)
    "$BIN" bench --url "$url" --connections "$2" --count "$3" --duration "$DURATION" \
        "${flag[@]}" >"$report"
    python3 - "$report" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
l = r["latency"]
assert r["order_violations"] == 0, "a worker saw a timestamp go backwards"
print(f"| {r['mode']} | {r['connections']} | {r['count']} | {r['requests_per_s']:,.0f} "
      f"| {r['timestamps_per_s']:,.0f} | {l['p50_us']} | {l['p99_us']} | {l['p999_us']} | {r['errors']} |")
PY
done
