#!/usr/bin/env bash
# Load benchmark: catgate vs Debian's nginx vs the mock upstream directly, loopback only.
#
#   bash benches/load.sh            # from the repository root or anywhere; ~2.5 min after the build
#
# It installs what is missing (nginx and, failing oha, wrk via apt-get; oha via
# `cargo install --locked oha`), builds `catgate` and `examples/mock_upstream` in release mode,
# starts the mock, nginx (plain proxy_pass) and catgate (temp database, one user, three keys on
# the mock), drives each with the load generator and prints one Markdown table. Every process it
# starts is stopped by pid on exit. Servers share CPU 0 and the load generator gets CPU 1 when
# there are at least two CPUs. All traffic goes to 127.0.0.1 and every run is bounded in time.
#
# Environment knobs (defaults in brackets):
#   BENCH_DURATION [10s]       length of each saturation and fixed-rate run
#   BENCH_STREAMS_DURATION [10s]  length of the open-streams run
#   BENCH_CONNECTIONS [64]     connections for the saturation runs
#   BENCH_RATE [1000]          requests/s for the latency runs
#   BENCH_OPEN_STREAMS [1000]  concurrent streams for the memory run
#   BENCH_CHUNKS [20]          SSE chunks per streamed answer
#   BENCH_TARGETS ["direct nginx catgate"]  drop catgate to bench only the mock and nginx
#   BENCH_SKIP_BUILD [0]       1: use the binaries already in target/release
#   BENCH_CATGATE_BIN [target/release/catgate]  another catgate build to measure
#   BENCH_LOADGEN [auto]       oha or wrk (wrk has no fixed-rate mode: latency rows become n/a)
#   BENCH_KEEP_TMP [0]         1: keep the temp dir (configs, logs, raw results)
#   BENCH_MEMBER_LIMITS [""]   JSON for PUT /1/users/:id/limits on the bench member, e.g.
#                              '{"monthlyBudget":"1000000","rpm":1000000}' (default: no limits)
set -euo pipefail
shopt -s inherit_errexit

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DURATION=${BENCH_DURATION:-10s}
STREAMS_DURATION=${BENCH_STREAMS_DURATION:-10s}
CONNECTIONS=${BENCH_CONNECTIONS:-64}
RATE=${BENCH_RATE:-1000}
OPEN_STREAMS=${BENCH_OPEN_STREAMS:-1000}
CHUNKS=${BENCH_CHUNKS:-20}
TARGETS=${BENCH_TARGETS:-direct nginx catgate}
LOADGEN=${BENCH_LOADGEN:-auto}
export PATH="$HOME/.cargo/bin:$PATH"

PIDS=()
TMP=$(mktemp -d "${TMPDIR:-/tmp}/catgate-bench.XXXXXX")

log() { printf '[load.sh] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

stop_pid() { # stop_pid PID: SIGTERM, up to 15 s for a graceful exit, then SIGKILL
    local pid=$1 i
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 150; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "pid $pid ignored SIGTERM for 15 s: SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    if [[ ${BENCH_KEEP_TMP:-0} == 1 ]]; then log "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- tools
have() { command -v "$1" >/dev/null 2>&1; }
APT_UPDATED=0
apt_install() {
    if [[ $APT_UPDATED == 0 ]]; then apt-get update -qq >&2; APT_UPDATED=1; fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2
}

have python3 || die "python3 is required"
have curl || apt_install curl
have taskset || apt_install util-linux
if ! have nginx && [[ ! -x /usr/sbin/nginx ]]; then
    log "installing nginx"
    apt_install nginx # a system service the package may start is left alone: ours has its own config
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

if [[ $LOADGEN == auto || $LOADGEN == oha ]] && ! have oha; then
    if cargo info oha >/dev/null 2>&1 && cargo install --locked oha >&2; then
        :
    else
        log "oha could not be installed; falling back to wrk"
    fi
fi
if [[ $LOADGEN == auto ]]; then
    if have oha; then LOADGEN=oha; else LOADGEN=wrk; fi
fi
if [[ $LOADGEN == wrk ]] && ! have wrk; then apt_install wrk; fi
have "$LOADGEN" || die "no load generator ($LOADGEN) available"

# ---------------------------------------------------------------- build
cd "$ROOT"
if [[ ${BENCH_SKIP_BUILD:-0} != 1 ]]; then
    log "building release binaries"
    cargo build --release --locked --bin catgate --example mock_upstream >&2
fi
MOCK_BIN=$ROOT/target/release/examples/mock_upstream
CATGATE_BIN=${BENCH_CATGATE_BIN:-$ROOT/target/release/catgate}
[[ -x $MOCK_BIN ]] || die "$MOCK_BIN missing"

# ---------------------------------------------------------------- CPU placement
NPROC=$(nproc)
LOAD_THREADS=1
if ((NPROC >= 2)) && taskset -c 0 true 2>/dev/null && taskset -c 1 true 2>/dev/null; then
    PIN_SERVER=(taskset -c 0)
    PIN_LOAD=(taskset -c 1)
    PINNED=1
    PLACEMENT="mock, nginx and catgate pinned to CPU 0; load generator pinned to CPU 1 (1 thread)"
else
    PIN_SERVER=()
    PIN_LOAD=()
    PINNED=0
    PLACEMENT="not pinned ($NPROC CPU(s), or taskset refused): servers and load generator share the CPUs"
fi
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
FD_LIMIT=$(ulimit -n)
[[ $FD_LIMIT == unlimited ]] || ((OPEN_STREAMS * 3 + 100 < FD_LIMIT)) ||
    die "open-file limit $FD_LIMIT too low for $OPEN_STREAMS streams"

# ---------------------------------------------------------------- helper (python3)
HELPER=$TMP/bench.py
cat >"$HELPER" <<'PY'
"""Runs one load-generator pass and appends its figures to results.jsonl; prints the table."""
import json, os, resource, socket, subprocess, sys, time

TICK = os.sysconf("SC_CLK_TCK")

def seconds(duration):
    """'10s', '2m', '1h' or a bare number of seconds."""
    units = {"s": 1, "m": 60, "h": 3600}
    if duration[-1:] in units:
        return float(duration[:-1]) * units[duration[-1]]
    return float(duration)

def cpu_seconds(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK
    except (OSError, IndexError, ValueError):
        return None

def status_kib(pid, key):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None

def cpu_busy_jiffies():
    """Per-CPU (busy, total) jiffies from /proc/stat, for spotting other load on the machine."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            name, *vals = line.split()
            if name.startswith("cpu") and name != "cpu":
                v = [int(x) for x in vals[:8]]
                out[name] = (sum(v) - v[3] - v[4], sum(v))
    return out

def fd_count(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None

def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    print(" ".join(map(str, ports)))

def parse_oha(path):
    with open(path) as f:
        d = json.load(f)
    status = {k: int(v) for k, v in d.get("statusCodeDistribution", {}).items()}
    errors = {k: int(v) for k, v in d.get("errorDistribution", {}).items()}
    pct = d.get("latencyPercentiles", {})
    return {
        "rps": d["summary"].get("requestsPerSec"),
        "p50_ms": pct["p50"] * 1e3 if pct.get("p50") is not None else None,
        "p99_ms": pct["p99"] * 1e3 if pct.get("p99") is not None else None,
        "status": status,
        "errors": errors,
    }

def parse_wrk(path):
    with open(path) as f:
        line = [l for l in f if l.startswith("WRKJSON ")][-1]
    d = json.loads(line[len("WRKJSON "):])
    errors = {k: v for k, v in d["errors"].items() if v}
    non2xx = errors.pop("status", 0)
    return {
        "rps": d["requests"] / (d["duration_us"] / 1e6),
        "p50_ms": d["p50_us"] / 1e3,
        "p99_ms": d["p99_us"] / 1e3,
        "status": {"2xx/3xx": d["requests"] - non2xx, "non-2xx": non2xx},
        "errors": errors,
    }

def run(argv):
    """run NAME TARGET RESULTS PARSER WATCH(label=pid,...) MEMPID PINNED(0/1) DURATION -- CMD..."""
    name, target, results, parser, watch, mem_pid, pinned, duration = argv[:8]
    # Hard stop: the run's own length plus a minute for in-flight requests to finish.
    deadline = time.monotonic() + seconds(duration) + 60
    cmd = argv[argv.index("--") + 1:]
    watched = dict(w.split("=") for w in watch.split(",") if w)
    before = {k: cpu_seconds(p) for k, p in watched.items()}
    busy_before = cpu_busy_jiffies()
    out_path = f"{results}.{name}.{target}.out"
    t0 = time.monotonic()
    peak_rss = peak_fds = 0
    with open(out_path, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.PIPE, text=True)
        while proc.poll() is None:
            if time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                sys.exit(f"{name}/{target}: {cmd[0]} overran its {duration} run by 60 s; killed")
            if mem_pid != "-":
                peak_rss = max(peak_rss, status_kib(mem_pid, "VmRSS") or 0)
                peak_fds = max(peak_fds, fd_count(mem_pid) or 0)
            time.sleep(0.05)
        err = proc.stderr.read()
    wall = time.monotonic() - t0
    child = resource.getrusage(resource.RUSAGE_CHILDREN)  # the load generator's own CPU
    busy_after = cpu_busy_jiffies()
    if proc.returncode != 0:
        sys.exit(f"{cmd[0]} failed ({proc.returncode}): {err.strip()[-2000:]}")
    row = {"name": name, "target": target, "wall_s": wall, "pinned": pinned == "1"}
    row.update(parse_oha(out_path) if parser == "oha" else parse_wrk(out_path))
    row["cpu_pct"] = {
        k: None if before[k] is None or cpu_seconds(p) is None
        else 100 * (cpu_seconds(p) - before[k]) / wall
        for k, p in watched.items()
    }
    row["loadgen_cpu_pct"] = 100 * (child.ru_utime + child.ru_stime) / wall
    row["busy_pct"] = {
        cpu: 100 * (busy_after[cpu][0] - b[0]) / max(1, busy_after[cpu][1] - b[1])
        for cpu, b in busy_before.items() if cpu in busy_after
    }
    if mem_pid != "-":
        row["peak_rss_kib"] = peak_rss
        row["peak_fds"] = peak_fds
        row["vm_hwm_kib"] = status_kib(mem_pid, "VmHWM")
    with open(results, "a") as f:
        f.write(json.dumps(row) + "\n")
    print(f"{name:<12} {target:<8} {row['rps'] or 0:>10.0f} req/s  answers {answers(row)}"
          f"  CPU {', '.join(f'{k} {fmt(v)}%' for k, v in row['cpu_pct'].items())}"
          f"  loadgen {row['loadgen_cpu_pct']:.0f}%"
          + (f"  errors {row['errors']}" if row["errors"] else ""), file=sys.stderr)

def answers(row):
    return sum(row["status"].values()) + sum(row["errors"].values())

def mock_us_per_request(row):
    if not row or row["cpu_pct"].get("mock") is None or not answers(row):
        return None
    return row["cpu_pct"]["mock"] / 100 * row["wall_s"] / answers(row) * 1e6

def other_load(row):
    """Busy % of each CPU not explained by the servers (CPU 0) or the load generator (CPU 1)."""
    if not row or not row.get("pinned"):
        return {}
    busy = row.get("busy_pct", {})
    ours = {"cpu0": sum(v or 0 for v in row["cpu_pct"].values()), "cpu1": row["loadgen_cpu_pct"]}
    return {c: max(0.0, busy[c] - ours[c]) for c in ours if c in busy}

def fmt(v, spec=".0f", unit=""):
    return "n/a" if v is None else f"{v:{spec}}{unit}"

def table(argv):
    results, records, meta = argv[0], argv[1], json.loads(argv[2])
    rows = [json.loads(l) for l in open(results)]
    by = {(r["name"], r["target"]): r for r in rows}
    targets = ["direct", "nginx", "catgate"]
    get = lambda name, t, key: by.get((name, t), {}).get(key)

    def ratio(name, key):
        c, n = get(name, "catgate", key), get(name, "nginx", key)
        return f"{c / n:.2f}× nginx" if c and n else "n/a"

    def added(name, key):
        c, d = get(name, "catgate", key), get(name, "direct", key)
        return f"{c - d:+.2f} ms vs direct" if c is not None and d is not None else "n/a"

    lines = ["| metric | direct (mock) | via nginx | via catgate | catgate vs |",
             "|---|---:|---:|---:|---|"]
    def cell(name, t, key, spec):
        text = fmt(get(name, t, key), spec)
        if key == "rps" and (get(name, t, "loadgen_cpu_pct") or 0) >= 90:
            text += " †"  # the load generator, not the server, was the limit
        return text

    def line(label, name, key, spec, extra):
        cells = [cell(name, t, key, spec) for t in targets]
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {extra} |")
    c, q, n = meta["connections"], meta["rate"], meta["chunks"]
    line(f"req/s at saturation, non-stream chat (c={c})", "sat-plain", "rps", ".0f", ratio("sat-plain", "rps"))
    line(f"req/s at saturation, stream chat, {n} chunks (c={c})", "sat-stream", "rps", ".0f", ratio("sat-stream", "rps"))
    line(f"p50 ms at {q} req/s, non-stream", "lat-plain", "p50_ms", ".2f", added("lat-plain", "p50_ms"))
    line(f"p99 ms at {q} req/s, non-stream", "lat-plain", "p99_ms", ".2f", added("lat-plain", "p99_ms"))
    line(f"p50 ms at {q} req/s, stream (whole stream)", "lat-stream", "p50_ms", ".2f", added("lat-stream", "p50_ms"))
    line(f"p99 ms at {q} req/s, stream (whole stream)", "lat-stream", "p99_ms", ".2f", added("lat-stream", "p99_ms"))
    for name, label in (("sat-plain", "non-stream"), ("sat-stream", "stream")):
        cells = []
        for t in targets:
            cpu = get(name, t, "cpu_pct") or {}
            parts = [f"{k} {fmt(v)}%" for k, v in cpu.items()]
            cells.append(", ".join(parts) or "n/a")
        lines.append(f"| server CPU at saturation, {label} | " + " | ".join(cells) + " | of one core |")
        cells = [fmt(get(name, t, "loadgen_cpu_pct"), ".0f", "%") for t in targets]
        lines.append(f"| load generator CPU at saturation, {label} | " + " | ".join(cells) + " | of one core |")
        cells = [", ".join(f"{c} {fmt(v)}%" for c, v in other_load(by.get((name, t))).items())
                 or "n/a" for t in targets]
        lines.append(f"| CPU used by other processes, {label} | " + " | ".join(cells)
                     + " | should be ≈ 0 |")
        cells = [fmt(mock_us_per_request(by.get((name, t))), ".1f", " µs") for t in targets]
        lines.append(f"| mock CPU per request, {label} | " + " | ".join(cells) + " | user+sys |")
    bad = []
    for r in rows:
        non_ok = {k: v for k, v in r["status"].items() if v and not k.startswith("2")}
        if non_ok or r["errors"]:
            bad.append(f"{r['name']}/{r['target']}: {non_ok} {r['errors']}")
    lines.append("| non-2xx answers / transport errors | | | | "
                 + ("; ".join(bad) if bad else "none") + " |")
    s = by.get(("streams", "catgate"))
    if s:
        mib = lambda k: fmt((s.get(k) or 0) / 1024, ".1f", " MiB")
        lines.append(f"| catgate peak RSS, {meta['open_streams']} open streams (chunk every "
                     f"{meta['slow_interval_ms']} ms) | | | {mib('peak_rss_kib')} | "
                     f"VmHWM {mib('vm_hwm_kib')}, RSS before {fmt(meta.get('rss_before_kib', 0) / 1024, '.1f', ' MiB')}, "
                     f"peak fds {s.get('peak_fds')} |")
    if records != "-":
        sent = sum(answers(r) for r in rows if r["target"] == "catgate")
        rec = int(records)
        verdict = "equal" if rec == sent else f"MISMATCH ({rec - sent:+d})"
        if meta["loadgen"] == "wrk" and rec != sent:
            # wrk neither waits for nor counts the requests in flight at its deadline.
            bound = sum(meta["open_streams"] if r["name"] == "streams" else meta["connections"]
                        for r in rows if r["target"] == "catgate")
            verdict = (f"{rec - sent:+d}; wrk leaves up to {bound} in-flight requests uncounted"
                       + ("" if 0 < rec - sent <= bound else " — MISMATCH"))
        lines.append(f"| usage records written / requests sent via catgate | | | {rec} / {sent} | {verdict} |")
    print("\n".join(lines))
    noise = max((v for r in rows for v in other_load(r).values()), default=0)
    if noise > 15:
        print(f"\n⚠ other processes used up to {noise:.0f} % of a CPU during a run: "
              "these figures are noisy; rerun on a quiet machine.")
    if any((r.get("loadgen_cpu_pct") or 0) >= 90 for r in rows if r["name"].startswith("sat")):
        print("\n† the load generator used ≥ 90 % of its core: that figure is a lower bound.")

if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"ports": lambda a: free_ports(int(a[0])), "run": run, "table": table}[cmd](args)
PY

read -r MOCK_PORT SLOW_PORT NGINX_PORT CATGATE_PORT < <(python3 "$HELPER" ports 4)

wait_port() { # wait_port PORT PID NAME: until something accepts on 127.0.0.1:PORT (10 s)
    local i
    for ((i = 0; i < 200; i++)); do
        kill -0 "$2" 2>/dev/null || die "$3 exited early (see logs in $TMP)"
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    die "$3 did not listen on port $1"
}

# ---------------------------------------------------------------- servers
"${PIN_SERVER[@]}" "$MOCK_BIN" --listen "127.0.0.1:$MOCK_PORT" --chunks "$CHUNKS" \
    2>"$TMP/mock.log" &
MOCK_PID=$!
PIDS+=("$MOCK_PID")
wait_port "$MOCK_PORT" "$MOCK_PID" mock_upstream

mkdir -p "$TMP/nginx"
cat >"$TMP/nginx.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log warn;
worker_rlimit_nofile 65536;
events { worker_connections 16384; }
http {
    access_log off;
    client_body_temp_path $TMP/nginx/body;
    proxy_temp_path $TMP/nginx/proxy;
    fastcgi_temp_path $TMP/nginx/fastcgi;
    uwsgi_temp_path $TMP/nginx/uwsgi;
    scgi_temp_path $TMP/nginx/scgi;
    keepalive_requests 1000000;
    upstream mock {
        server 127.0.0.1:$MOCK_PORT;
        keepalive 64;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location / {
            proxy_pass http://mock;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }
    }
}
EOF
"${PIN_SERVER[@]}" "$NGINX" -p "$TMP/nginx" -e "$TMP/nginx/error.log" -c "$TMP/nginx.conf" \
    2>"$TMP/nginx/stderr.log" &
NGINX_PID=$!
PIDS+=("$NGINX_PID")
wait_port "$NGINX_PORT" "$NGINX_PID" nginx

CATGATE_PID=""
USER_TOKEN=""
admin() { # admin METHOD PATH TOKEN [JSON]: prints the body, fails on non-2xx
    local args=(-sS --max-time 10 -X "$1" "http://127.0.0.1:$CATGATE_PORT$2"
        -H 'content-type: application/json' -w '\n%{http_code}')
    [[ -n $3 ]] && args+=(-H "Authorization: Bearer $3")
    [[ -n ${4:-} ]] && args+=(-d "$4")
    local out code
    out=$(curl "${args[@]}") || die "admin $1 $2: curl failed"
    code=${out##*$'\n'}
    out=${out%$'\n'*}
    [[ $code == 2* ]] || die "admin $1 $2 -> $code: $out"
    printf '%s' "$out"
}
json_field() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

add_keys() { # add_keys PORT LABEL: three keys on the mock at PORT, prints their ids
    local i
    for i in 1 2 3; do
        admin POST /1/keys "$ROOT_TOKEN" \
            "{\"key\":\"sk-mock-$2-$i\",\"name\":\"$2$i\",\"api_type\":\"openai\",\"endpoint\":\"http://127.0.0.1:$1\"}" |
            json_field id
    done
}

if [[ " $TARGETS " == *" catgate "* ]]; then
    [[ -x $CATGATE_BIN ]] || die "$CATGATE_BIN missing"
    mkdir -p "$TMP/catgate"
    cat >"$TMP/catgate/config.toml" <<EOF
listen = "127.0.0.1:$CATGATE_PORT"
database = "catgate.db"

[upstream]
openai_base_url = "http://127.0.0.1:$MOCK_PORT"
EOF
    RUST_LOG=warn "${PIN_SERVER[@]}" "$CATGATE_BIN" --config "$TMP/catgate/config.toml" \
        2>"$TMP/catgate.log" &
    CATGATE_PID=$!
    PIDS+=("$CATGATE_PID")
    wait_port "$CATGATE_PORT" "$CATGATE_PID" catgate
    ROOT_TOKEN=$(admin POST /1/users/init "" | json_field token)
    USER_JSON=$(admin POST /1/users "$ROOT_TOKEN" '{"name":"bench"}')
    USER_TOKEN=$(json_field token <<<"$USER_JSON")
    if [[ -n ${BENCH_MEMBER_LIMITS:-} ]]; then
        admin PUT "/1/users/$(json_field id <<<"$USER_JSON")/limits" "$ROOT_TOKEN" \
            "$BENCH_MEMBER_LIMITS" >/dev/null
        log "member limits: $BENCH_MEMBER_LIMITS"
    fi
    KEY_IDS=$(add_keys "$MOCK_PORT" mock)
    mapfile -t FAST_KEYS <<<"$KEY_IDS"
    log "catgate ready: user 'bench', keys ${FAST_KEYS[*]} -> mock :$MOCK_PORT"
fi

# ---------------------------------------------------------------- load
RESULTS=$TMP/results.jsonl
: >"$RESULTS"
PLAIN_BODY='{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello."}]}'
STREAM_BODY='{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"Say hello."}]}'
LOADGEN_VERSION=$("$LOADGEN" --version 2>&1 | head -1 | sed 's/ Copyright.*//' || true)

if [[ $LOADGEN == oha ]]; then
    OHA_HELP=$(oha --help)
    OHA_OUT=(--output-format json)
    [[ $OHA_HELP == *--output-format* ]] || OHA_OUT=(--json)
    OHA_THREADS=()
    [[ $OHA_HELP == *--worker-threads* ]] && OHA_THREADS=(--worker-threads "$LOAD_THREADS")
fi

url_of() {
    case $1 in
    direct) echo "http://127.0.0.1:$MOCK_PORT/v1/chat/completions" ;;
    nginx) echo "http://127.0.0.1:$NGINX_PORT/v1/chat/completions" ;;
    catgate) echo "http://127.0.0.1:$CATGATE_PORT/v1/chat/completions" ;;
    esac
}
watch_of() { # label=pid pairs whose CPU time is measured during a run
    case $1 in
    direct) echo "mock=$MOCK_PID" ;;
    nginx) echo "mock=$MOCK_PID,nginx=$NGINX_PID" ;;
    catgate) echo "mock=$MOCK_PID,catgate=$CATGATE_PID" ;;
    esac
}

# load NAME TARGET DURATION CONNECTIONS RATE(0 = saturate) BODY [MEMPID] [WATCH]
load() {
    local name=$1 target=$2 duration=$3 conns=$4 rate=$5 body=$6 mem=${7:--}
    local watch=${8:-$(watch_of "$target")} url cmd
    url=$(url_of "$target")
    if [[ $LOADGEN == oha ]]; then
        cmd=(oha -z "$duration" -c "$conns" -t 30s --no-tui -w "${OHA_THREADS[@]}" "${OHA_OUT[@]}"
            -m POST -H 'content-type: application/json' -d "$body")
        ((rate > 0)) && cmd+=(-q "$rate" --latency-correction)
    else
        if ((rate > 0)); then
            log "wrk has no fixed-rate mode: skipping $name/$target"
            return 0
        fi
        printf '%s' "$body" >"$TMP/body.json"
        cmd=(wrk -t "$LOAD_THREADS" -c "$conns" -d "$duration" --timeout 30s --latency
            -s "$TMP/wrk.lua")
    fi
    [[ $target == catgate ]] && cmd+=(-H "Authorization: Bearer $USER_TOKEN")
    cmd+=("$url")
    "${PIN_LOAD[@]}" python3 "$HELPER" run "$name" "$target" "$RESULTS" "$LOADGEN" "$watch" "$mem" \
        "$PINNED" "$duration" -- "${cmd[@]}"
}

if [[ $LOADGEN == wrk ]]; then
    cat >"$TMP/wrk.lua" <<EOF
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open("$TMP/body.json"); wrk.body = f:read("*a"); f:close()
function done(summary, latency, requests)
    local e = summary.errors
    io.write(string.format('WRKJSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,' ..
        '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}}\n',
        summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
        e.connect, e.read, e.write, e.status, e.timeout))
end
EOF
fi

log "placement: $PLACEMENT; load generator: $LOADGEN_VERSION"
log "runs of $DURATION: saturation (c=$CONNECTIONS) and $RATE req/s, non-stream and stream"
for target in $TARGETS; do load sat-plain "$target" "$DURATION" "$CONNECTIONS" 0 "$PLAIN_BODY"; done
for target in $TARGETS; do load sat-stream "$target" "$DURATION" "$CONNECTIONS" 0 "$STREAM_BODY"; done
for target in $TARGETS; do load lat-plain "$target" "$DURATION" "$CONNECTIONS" "$RATE" "$PLAIN_BODY"; done
for target in $TARGETS; do load lat-stream "$target" "$DURATION" "$CONNECTIONS" "$RATE" "$STREAM_BODY"; done

SLOW_INTERVAL_MS=200
RSS_BEFORE=0
RECORDS=-
if [[ -n $CATGATE_PID ]]; then
    # Open streams: a second, slow mock; catgate's keys are swapped over to it.
    "${PIN_SERVER[@]}" "$MOCK_BIN" --listen "127.0.0.1:$SLOW_PORT" --chunks "$CHUNKS" \
        --chunk-interval-ms "$SLOW_INTERVAL_MS" 2>"$TMP/slow-mock.log" &
    SLOW_PID=$!
    PIDS+=("$SLOW_PID")
    wait_port "$SLOW_PORT" "$SLOW_PID" "slow mock_upstream"
    for id in "${FAST_KEYS[@]}"; do admin DELETE "/1/keys/$id" "$ROOT_TOKEN" >/dev/null; done
    add_keys "$SLOW_PORT" slow >/dev/null
    RSS_BEFORE=$(awk '/^VmRSS:/ {print $2}' "/proc/$CATGATE_PID/status")
    log "open streams: $OPEN_STREAMS connections for $STREAMS_DURATION, a chunk every ${SLOW_INTERVAL_MS} ms"
    load streams catgate "$STREAMS_DURATION" "$OPEN_STREAMS" 0 "$STREAM_BODY" "$CATGATE_PID" \
        "mock=$SLOW_PID,catgate=$CATGATE_PID"

    # Graceful stop drains the usage recorder; then count what it wrote.
    stop_pid "$CATGATE_PID"
    RECORDS=$(python3 - "$TMP/catgate/catgate.db" <<'PY'
import sqlite3, sys
print(sqlite3.connect(sys.argv[1]).execute("SELECT count(*) FROM usage").fetchone()[0])
PY
    )
fi

META=$(printf '{"connections":%s,"rate":%s,"chunks":%s,"open_streams":%s,"slow_interval_ms":%s,"rss_before_kib":%s,"loadgen":"%s"}' \
    "$CONNECTIONS" "$RATE" "$CHUNKS" "$OPEN_STREAMS" "$SLOW_INTERVAL_MS" "$RSS_BEFORE" "$LOADGEN")
echo
echo "## catgate load benchmark"
echo
python3 "$HELPER" table "$RESULTS" "$RECORDS" "$META"
echo
echo "- machine: $NPROC CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(uname -r)"
echo "- placement: $PLACEMENT"
if [[ $LOADGEN == oha ]]; then
    echo "- load generator: $LOADGEN_VERSION; $DURATION per run, keep-alive connections, in-flight requests at the deadline are awaited and counted"
    echo "- latency rows: fixed-rate runs with coordinated-omission correction; stream latency is the whole stream"
else
    echo "- load generator: $LOADGEN_VERSION; $DURATION per run, keep-alive connections; no fixed-rate mode, so no latency rows"
fi
echo "- nginx: $("$NGINX" -v 2>&1 | cut -d/ -f2), 1 worker, upstream keepalive 64, proxy_buffering off"
