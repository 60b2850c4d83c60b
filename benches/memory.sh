#!/usr/bin/env bash
# Memory bound per request: catgate's peak RSS (VmHWM) while
#   1. 1,000 concurrent requests each receive a 30 MB JSON answer, and
#   2. 100 concurrent 60 MB uploads go through to the upstream,
# each phase in a fresh catgate process, against examples/mock_upstream on loopback.
#
#   bash benches/memory.sh        # ~2 min after the release build; needs curl (7.66+ for -Z)
#
# Knobs: MEM_ANSWERS [1000], MEM_ANSWER_MB [30], MEM_UPLOADS [100], MEM_UPLOAD_MB [60],
# BENCH_SKIP_BUILD [0]. Every process it starts is stopped by pid on exit; temp files go
# under one temp dir that is removed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ANSWERS=${MEM_ANSWERS:-1000}
ANSWER_MB=${MEM_ANSWER_MB:-30}
UPLOADS=${MEM_UPLOADS:-100}
UPLOAD_MB=${MEM_UPLOAD_MB:-60}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/catgate-mem.XXXXXX")
PIDS=()

log() { printf '[memory.sh] %s\n' "$*" >&2; }
stop_pid() {
    local pid=$1 i
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 150; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
cleanup() {
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    rm -rf "$TMP"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() {
    local url=$1 i
    for ((i = 0; i < 300; i++)); do curl -fs "$url" >/dev/null 2>&1 && return 0; sleep 0.1; done
    log "error: $url did not answer"; exit 1
}

if [[ ${BENCH_SKIP_BUILD:-0} != 1 ]]; then
    log "building release binaries"
    (cd "$ROOT" && cargo build --release --locked --bin catgate --example mock_upstream >&2)
fi
CATGATE="$ROOT/target/release/catgate"
MOCK="$ROOT/target/release/examples/mock_upstream"

MOCK_PORT=$(free_port)
"$MOCK" --listen "127.0.0.1:$MOCK_PORT" --threads 2 --large-mb "$ANSWER_MB" 2>"$TMP/mock.log" &
PIDS+=($!)
wait_http "http://127.0.0.1:$MOCK_PORT/v1/models"

PORT=$(free_port)
cat >"$TMP/config.toml" <<EOF
listen = "127.0.0.1:$PORT"
database = "catgate.db"
[upstream]
openai_base_url = "http://127.0.0.1:$MOCK_PORT"
max_request_bytes = 104857600
EOF

start_catgate() {
    RUST_LOG=warn "$CATGATE" --config "$TMP/config.toml" 2>>"$TMP/catgate.log" &
    CATGATE_PID=$!
    PIDS+=("$CATGATE_PID")
    wait_http "http://127.0.0.1:$PORT/healthz"
}
status_kib() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }
mib() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }

start_catgate
TOKEN=$(curl -fs -X POST "http://127.0.0.1:$PORT/1/users/init" | sed -E 's/.*"token":"([^"]+)".*/\1/')
curl -fs -X POST "http://127.0.0.1:$PORT/1/keys" -H "Authorization: Bearer $TOKEN" \
    -d "{\"key\":\"sk-mem\",\"name\":\"mock\",\"endpoint\":\"http://127.0.0.1:$MOCK_PORT\"}" >/dev/null

# Phase 1: big answers. One curl process drives every transfer, each written to /dev/null.
RSS_BEFORE=$(status_kib "$CATGATE_PID" VmRSS)
for ((i = 0; i < ANSWERS; i++)); do
    printf 'url = "http://127.0.0.1:%s/v1/large"\noutput = "/dev/null"\n' "$PORT"
done >"$TMP/answers.cfg"
log "phase 1: $ANSWERS concurrent ${ANSWER_MB} MB answers"
curl -sS -Z --parallel-max "$ANSWERS" --parallel-immediate -X POST \
    -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' \
    -d '{"model":"text-embedding-3-small","input":"x"}' \
    -w '%{http_code}\n' -K "$TMP/answers.cfg" >"$TMP/answers.codes" 2>"$TMP/answers.err" || true
ANSWERS_OK=$(grep -c '^200$' "$TMP/answers.codes" || true)
HWM1=$(status_kib "$CATGATE_PID" VmHWM)
stop_pid "$CATGATE_PID"

# Phase 2: big uploads, streamed by curl from one file.
start_catgate
RSS_BEFORE2=$(status_kib "$CATGATE_PID" VmRSS)
head -c $((UPLOAD_MB << 20)) /dev/urandom >"$TMP/upload.bin"
for ((i = 0; i < UPLOADS; i++)); do
    printf 'url = "http://127.0.0.1:%s/v1/audio/transcriptions"\noutput = "/dev/null"\n' "$PORT"
done >"$TMP/uploads.cfg"
log "phase 2: $UPLOADS concurrent ${UPLOAD_MB} MB uploads"
curl -sS -Z --parallel-max "$UPLOADS" --parallel-immediate -X POST -T "$TMP/upload.bin" \
    -H "Authorization: Bearer $TOKEN" -H 'content-type: multipart/form-data; boundary=x' \
    -w '%{http_code}\n' -K "$TMP/uploads.cfg" >"$TMP/uploads.codes" 2>"$TMP/uploads.err" || true
UPLOADS_OK=$(grep -c '^200$' "$TMP/uploads.codes" || true)
HWM2=$(status_kib "$CATGATE_PID" VmHWM)
stop_pid "$CATGATE_PID" # SIGTERM: every record reaches the database before exit
ROWS=$("$CATGATE" --config "$TMP/config.toml" report --by user --format csv | awk -F, 'NR == 2 {print $3}')

echo "| phase | answered 200 | catgate RSS before | catgate peak RSS (VmHWM) |"
echo "|---|---:|---:|---:|"
echo "| $ANSWERS concurrent ${ANSWER_MB} MB JSON answers | $ANSWERS_OK / $ANSWERS | $(mib "$RSS_BEFORE") MiB | $(mib "$HWM1") MiB |"
echo "| $UPLOADS concurrent ${UPLOAD_MB} MB uploads | $UPLOADS_OK / $UPLOADS | $(mib "$RSS_BEFORE2") MiB | $(mib "$HWM2") MiB |"
echo
echo "usage rows after both phases: ${ROWS:-?} (expected $((ANSWERS + UPLOADS)))"
