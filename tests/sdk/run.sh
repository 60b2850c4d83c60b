#!/usr/bin/env bash
# Real-client check: the official `openai` Python SDK (installed into a throw-away venv from
# PyPI), both its `OpenAI` and its `AzureOpenAI` client, against a running catgate in front of
# examples/mock_upstream.rs (reached through an openai and an azure key). Then the Node SDK's
# `AzureOpenAI` client (npm `openai@6`, the major that runs on the machine's Node 20). Loopback
# only.
# Usage: bash tests/sdk/run.sh   (from the repo root; builds the debug binaries it needs)
set -euo pipefail
cd "$(dirname "$0")/../.."

work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

cargo build --locked --quiet --bin catgate --example mock_upstream
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet --disable-pip-version-check openai prometheus_client

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
mock_port=$(free_port)
gate_port=$(free_port)
chunks=5

target/debug/examples/mock_upstream --listen "127.0.0.1:$mock_port" --chunks "$chunks" &
pids+=($!)
cat > "$work/config.toml" <<TOML
listen = "127.0.0.1:$gate_port"
database = "catgate.db"
[upstream]
openai_base_url = "http://127.0.0.1:$mock_port"
TOML
RUST_LOG=warn target/debug/catgate --config "$work/config.toml" &
pids+=($!)

url="http://127.0.0.1:$gate_port"
for _ in $(seq 100); do
    curl -fsS "$url/healthz" >/dev/null 2>&1 && break
    sleep 0.1
done
json_field() { python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }
root=$(curl -fsS -X POST "$url/1/users/init" | json_field token)
member=$(curl -fsS -X POST "$url/1/users" -H "Authorization: Bearer $root" \
    -d '{"name":"sdk"}' | json_field token)
azure_member_json=$(curl -fsS -X POST "$url/1/users" -H "Authorization: Bearer $root" \
    -d '{"name":"azure-sdk"}')
azure_member=$(json_field token <<<"$azure_member_json")
azure_member_id=$(json_field id <<<"$azure_member_json")
node_member_json=$(curl -fsS -X POST "$url/1/users" -H "Authorization: Bearer $root" \
    -d '{"name":"azure-node"}')
curl -fsS -X POST "$url/1/keys" -H "Authorization: Bearer $root" \
    -d "{\"key\":\"sk-mock\",\"name\":\"mock\",\"endpoint\":\"http://127.0.0.1:$mock_port\"}" >/dev/null
curl -fsS -X POST "$url/1/keys" -H "Authorization: Bearer $root" \
    -d "{\"key\":\"az-mock\",\"name\":\"mock-azure\",\"api_type\":\"azure\",\"endpoint\":\"http://127.0.0.1:$mock_port\"}" >/dev/null

CATGATE_URL="$url" MEMBER_TOKEN="$member" ROOT_TOKEN="$root" MOCK_CHUNKS="$chunks" \
    AZURE_MEMBER_TOKEN="$azure_member" AZURE_MEMBER_ID="$azure_member_id" \
    "$work/venv/bin/python" tests/sdk/check.py

# Team controls (budgets, rpm, key health, /metrics, request ids) on a catgate and a mock of
# their own: a fresh database, so the metrics and records count only what check_controls.py sends.
ctl_mock_port=$(free_port)
ctl_gate_port=$(free_port)
mkdir "$work/controls"
target/debug/examples/mock_upstream --listen "127.0.0.1:$ctl_mock_port" --chunks "$chunks" \
    --stream-completion-tokens 5000 &
pids+=($!)
metrics_token=$(python3 -c 'import uuid; print(uuid.uuid4())')
cat > "$work/controls/config.toml" <<TOML
listen = "127.0.0.1:$ctl_gate_port"
database = "controls.db"
[upstream]
openai_base_url = "http://127.0.0.1:$ctl_mock_port"
key_probe_first_secs = 1
key_probe_max_secs = 2
[metrics]
enabled = true
token = "$metrics_token"
TOML
RUST_LOG=info target/debug/catgate --config "$work/controls/config.toml" \
    2> "$work/controls/catgate.log" &
pids+=($!)
ctl_url="http://127.0.0.1:$ctl_gate_port"
for _ in $(seq 100); do
    curl -fsS "$ctl_url/healthz" >/dev/null 2>&1 && break
    sleep 0.1
done
ctl_root=$(curl -fsS -X POST "$ctl_url/1/users/init" | json_field token)
curl -fsS -X POST "$ctl_url/1/keys" -H "Authorization: Bearer $ctl_root" \
    -d "{\"key\":\"sk-ctl\",\"name\":\"ctl\",\"endpoint\":\"http://127.0.0.1:$ctl_mock_port\"}" >/dev/null
if ! CATGATE_URL="$ctl_url" ROOT_TOKEN="$ctl_root" MOCK_URL="http://127.0.0.1:$ctl_mock_port" \
    DB_FILE="$work/controls/controls.db" LOG_FILE="$work/controls/catgate.log" \
    METRICS_TOKEN="$metrics_token" MOCK_CHUNKS="$chunks" STREAM_COMPLETION_TOKENS=5000 \
    "$work/venv/bin/python" tests/sdk/check_controls.py; then
    echo "--- last lines of the controls catgate's log:"
    tail -n 20 "$work/controls/catgate.log"
    exit 1
fi

if ! command -v npm >/dev/null || ! command -v node >/dev/null; then
    echo "!!! SKIPPED: the Node AzureOpenAI check needs node and npm, which this machine lacks !!!"
    exit 0
fi
mkdir "$work/node"
cp tests/sdk/check_azure.mjs "$work/node/"
npm install --prefix "$work/node" --silent --no-audit --no-fund openai@6 >/dev/null
CATGATE_URL="$url" ROOT_TOKEN="$root" MOCK_CHUNKS="$chunks" \
    NODE_MEMBER_TOKEN=$(json_field token <<<"$node_member_json") \
    NODE_MEMBER_ID=$(json_field id <<<"$node_member_json") \
    node "$work/node/check_azure.mjs"
