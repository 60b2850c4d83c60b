#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for tests: `start DIR` initialises DIR/data (once), starts the
# server on a free loopback port (the same one again after a halt) and prints its URL (also in
# DIR/url); `halt DIR` stops it and keeps the data (an outage); `stop DIR` stops it by the pid
# the server wrote and deletes DIR. Runs the server as `postgres` when started as root.
set -euo pipefail
cmd=${1:?start|stop}
dir=${2:?folder}
bin=$(dirname "$(ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -1)")
[ -x "$bin/initdb" ] || { echo "PostgreSQL is not installed" >&2; exit 3; }
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
case $cmd in
start)
    if [ ! -d "$dir/data" ]; then
        mkdir -p "$dir"
        if [ "$(id -u)" = 0 ]; then chown postgres: "$dir"; fi
        as_pg "$bin/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --no-sync >"$dir/initdb.log" 2>&1
        python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' >"$dir/port"
    fi
    port=$(cat "$dir/port")
    # Tests trade durability for speed; PG_DURABLE=1 (benchmarks) keeps the defaults.
    fast="-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    if [ "${PG_DURABLE:-0}" = 1 ]; then fast=""; fi
    as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 start \
        -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=500 $fast" >/dev/null
    echo "postgres://postgres@127.0.0.1:$port/postgres" | tee "$dir/url"
    ;;
halt|stop)
    pid=$(head -1 "$dir/data/postmaster.pid" 2>/dev/null || true)
    if [ -n "$pid" ]; then
        kill -INT "$pid" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    if [ "$cmd" = stop ]; then rm -rf "$dir"; fi
    ;;
esac
