#!/usr/bin/env bash
# A/B throughput of two catgate builds, interleaved (the VM's speed drifts; interleaving keeps
# the comparison fair). Loopback only; every process it starts is stopped by pid.
#
#   bash benches/ab.sh OLD_BINARY NEW_BINARY [ROUNDS=4]
#
# Per round and build: a fresh mock (target/release/examples/mock_upstream, 20 SSE chunks) and
# catgate (temp SQLite, one member, three keys), both on CPU 0; oha on CPU 1 saturates it for
# 8 s with 64 connections, non-stream then stream chat. Env: LIMITS='{"rpm":1000000}' puts
# limits on the member (PUT /1/users/2/limits) in both builds (the old one must know them).
# Needs: oha (cargo install --locked oha), taskset, curl, python3; build the mock first with
# `cargo build --release --example mock_upstream`.
set -euo pipefail
cd "$(dirname "$0")/.."
OLD=$1 NEW=$2 ROUNDS=${3:-4}
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
field() { python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }
PLAIN='{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello."}]}'
STREAM='{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"Say hello."}]}'

run() { # run BINARY BODY -> req/s
    local dir mp gp mock gate root member
    dir=$(mktemp -d)
    mp=$(port)
    gp=$(port)
    taskset -c 0 target/release/examples/mock_upstream --listen "127.0.0.1:$mp" --chunks 20 \
        >/dev/null 2>&1 </dev/null &
    mock=$!
    printf 'listen = "127.0.0.1:%s"\ndatabase = "%s/c.db"\n[upstream]\nopenai_base_url = "http://127.0.0.1:%s"\n' \
        "$gp" "$dir" "$mp" >"$dir/config.toml"
    RUST_LOG=warn taskset -c 0 "$1" --config "$dir/config.toml" >/dev/null 2>"$dir/log" </dev/null &
    gate=$!
    PIDS=("$mock" "$gate")
    for _ in $(seq 100); do curl -fs "127.0.0.1:$gp/healthz" >/dev/null && break; sleep 0.1; done
    root=$(curl -fs -X POST "127.0.0.1:$gp/1/users/init" | field token)
    member=$(curl -fs -X POST "127.0.0.1:$gp/1/users" -H "Authorization: Bearer $root" \
        -d '{"name":"bench"}' | field token)
    if [[ -n ${LIMITS:-} ]]; then
        curl -fs -X PUT "127.0.0.1:$gp/1/users/2/limits" -H "Authorization: Bearer $root" \
            -d "$LIMITS" >/dev/null
    fi
    for i in 1 2 3; do
        curl -fs -X POST "127.0.0.1:$gp/1/keys" -H "Authorization: Bearer $root" \
            -d "{\"key\":\"sk-$i\",\"name\":\"k$i\",\"endpoint\":\"http://127.0.0.1:$mp\"}" >/dev/null
    done
    taskset -c 1 oha -z 8s -c 64 --no-tui -m POST -H "Authorization: Bearer $member" \
        -H 'content-type: application/json' -d "$2" "http://127.0.0.1:$gp/v1/chat/completions" |
        awk '/Requests\/sec/ {printf "%.0f", $2}'
    kill "$gate" "$mock" 2>/dev/null || true
    wait "$gate" "$mock" 2>/dev/null || true
    rm -rf "$dir"
}

echo "| round | build | non-stream req/s | stream req/s |"
echo "|---|---|---:|---:|"
for r in $(seq "$ROUNDS"); do
    for build in old new; do
        bin=$OLD
        [[ $build == new ]] && bin=$NEW
        echo "| $r | $build | $(run "$bin" "$PLAIN") | $(run "$bin" "$STREAM") |"
    done
done
