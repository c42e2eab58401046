#!/usr/bin/env bash
# A local 3-node raft cluster: `./x cluster` (or this script after a build).
#
# Nodes 1-3 serve HTTP on 127.0.0.1:7401-7403 and talk to each other on
# 127.0.0.1:7501-7503. State, the cluster secret, the admin token and the
# logs live in ./tsohost-cluster/. Ctrl-C stops all three; run it again to
# restart the same cluster. TLS=1 serves the client API over HTTPS and the
# peers speak mutual TLS, with certificates of `tsohost certs init` (made
# once, in ./tsohost-cluster/certs).
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${TSOHOST_BIN:-target/release/tsohost}
DIR=${TSOHOST_CLUSTER_DIR:-./tsohost-cluster}
DRIVER=${DRIVER:-raft}
mkdir -p "$DIR"
[ -s "$DIR/secret" ] || head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$DIR/secret"
[ -s "$DIR/admin-token" ] || head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$DIR/admin-token"
PEERS=1=127.0.0.1:7501,2=127.0.0.1:7502,3=127.0.0.1:7503
SCHEME=http
TLS_FLAGS=()
CA_FLAGS=()
if [ -n "${TLS:-}" ]; then
    [ -s "$DIR/certs/ca.pem" ] || "$BIN" certs init "$DIR/certs" >/dev/null
    if [ ! -s "$DIR/certs/peer-1.pem" ]; then
        echo "$DIR/certs has no peer certificates (made by an older tsohost): remove it" \
            "and run again" >&2
        exit 1
    fi
    SCHEME=https
    TLS_FLAGS=(--tls-cert "$DIR/certs/node.pem" --tls-key "$DIR/certs/node.key"
        --peer-ca "$DIR/certs/ca.pem")
    CA_FLAGS=(--cacert "$DIR/certs/ca.pem")
fi
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null; echo; echo "cluster stopped"' EXIT INT TERM
for id in 1 2 3; do
    "$BIN" serve --driver "$DRIVER" --node-id "$id" --peers "$PEERS" --bootstrap \
        --listen "127.0.0.1:740$id" --data-dir "$DIR/node$id" \
        --cluster-secret-file "$DIR/secret" --admin-token-file "$DIR/admin-token" \
        "${TLS_FLAGS[@]}" ${TLS:+--peer-tls-cert "$DIR/certs/peer-$id.pem"} \
        ${TLS:+--peer-tls-key "$DIR/certs/peer-$id.key"} \
        >"$DIR/node$id.out" 2>"$DIR/node$id.log" &
    pids+=($!)
done
echo "starting a 3-node $DRIVER cluster (logs: $DIR/node*.log)"
for _ in $(seq 200); do
    for id in 1 2 3; do
        if curl -sf "${CA_FLAGS[@]}" "$SCHEME://127.0.0.1:740$id/readyz" >/dev/null 2>&1; then
            ca=${TLS:+ --ca-file $DIR/certs/ca.pem}
            echo "node $id leads; any node answers (followers redirect with 307):"
            echo "  curl -sL ${CA_FLAGS[*]:-}${TLS:+ }-XPOST $SCHEME://127.0.0.1:7401/v1/timestamps"
            echo "  $BIN status --url $SCHEME://127.0.0.1:7402$ca"
            echo "  $BIN cluster transfer-leader --url $SCHEME://127.0.0.1:7401 --admin-token-file $DIR/admin-token$ca"
            echo "Ctrl-C stops the cluster."
            wait
            exit 0
        fi
    done
    sleep 0.1
done
echo "no node became ready in 20 s; see $DIR/node*.log" >&2
exit 1
