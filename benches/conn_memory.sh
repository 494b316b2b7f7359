#!/usr/bin/env bash
# Memory per idle keep-alive client connection, cuttle beside HAProxy and nginx.
#
# Question: what does a client connection that sits idle between requests (a browser's
# keep-alive connection, a reverse proxy's keep-alive client) cost in the proxy's memory? A
# forward proxy holds several per browser, an accelerator thousands.
#
# Method: a local nginx origin serves a 1 KiB object (`max-age=3600`); each proxy runs in
# reverse mode in front of it (cuttle with the embedded default config, one worker, disk tier
# on; HAProxy's cache and nginx's proxy_cache as every bench runs them, lib.sh). Warm-up: the
# object is fetched once and 200 connections make one request each and stay open. Then N more
# connections each make one request (a hit), read the whole response and stay open; the
# proxy's resident memory (VmRSS, summed over its processes: nginx's master and worker) is
# read before and SETTLE seconds after (5: well past cuttle's `client_conn::RELEASE_AFTER`, 1 s into
# an idle wait, when a connection lets its buffers go). Bytes per connection = the difference / N. Kernel socket
# buffers are not in RSS, and are alike for all three.
#
# Usage: benches/conn_memory.sh          (N=2000)
# Env:   N (connections), SETTLE (seconds between the last connection's response and the
#        second reading; 1 before session 17), CUTTLE (the binary; default target/release/cuttle, built first).
# Output: a Markdown table on stdout (progress on stderr). Needs nginx, haproxy, python3, curl.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

N=${N:-2000}
SETTLE=${SETTLE:-5}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
if [ -z "${CUTTLE:-}" ]; then
  CUTTLE=$ROOT/target/release/cuttle
  printf 'building cuttle (cargo build --release)\n' >&2
  (cd "$ROOT" && cargo build --release --quiet --bin cuttle)
fi
export PATH=$PATH:/usr/sbin:/sbin
for bin in nginx haproxy python3 curl; do
  command -v "$bin" >/dev/null || {
    printf 'needs %s\n' "$bin" >&2
    exit 1
  }
done
# Each connection is a descriptor in the proxy and in the client (this script's python).
ulimit -n $((2 * N + 5000)) 2>/dev/null || {
  printf 'cannot raise the open-file limit to %d (ulimit -n)\n' $((2 * N + 5000)) >&2
  exit 1
}

use_scratch cuttle-connmem

mkdir -p "$TMP/www/static" "$TMP/origin"
head -c 1024 /dev/urandom >"$TMP/www/static/1k"
ORIGIN_PORT=$(free_port)
write_nginx_conf "$TMP/origin" <<EOF
  access_log off;
  server {
    listen 127.0.0.1:$ORIGIN_PORT;
    root $TMP/www;
    location /static/ { add_header Cache-Control "public, max-age=3600"; }
  }
EOF
nginx -e "$TMP/origin/error.log" -p "$TMP/origin" -c "$TMP/origin/nginx.conf"
STOP_PIDS+=("$(pid_from_file "$TMP/origin/nginx.pid")")
wait_port "$ORIGIN_PORT"

# measure NAME PORT PID...: prints the row for the proxy on PORT whose processes are PID...
# (and their children).
measure() {
  local name=$1 port=$2
  shift 2
  printf '%s: %d idle connections\n' "$name" "$N" >&2
  curl -sS -o /dev/null "http://127.0.0.1:$port/static/1k"
  python3 - "$port" "$N" "$name" "$SETTLE" "$@" <<'EOF'
import socket, sys, time

port, n, name, settle, pids = (int(sys.argv[1]), int(sys.argv[2]), sys.argv[3],
                              float(sys.argv[4]), sys.argv[5:])
REQUEST = b"GET /static/1k HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"

def processes():
    found = set(pids)
    for pid in pids:
        try:
            with open(f"/proc/{pid}/task/{pid}/children") as f:
                found.update(f.read().split())
        except OSError:
            pass
    return found

def rss_kib():
    total = 0
    for pid in processes():
        with open(f"/proc/{pid}/status") as f:
            total += next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
    return total

def open_idle(count):
    """count connections, each after one whole 1 KiB response, left open."""
    conns = []
    for _ in range(count):
        # Each asks at once: one left waiting would meet the proxy's first-byte timeout.
        s = socket.create_connection(("127.0.0.1", port), timeout=30)
        s.sendall(REQUEST)
        conns.append(s)
    for s in conns:
        got = b""
        while True:
            head, sep, body = got.partition(b"\r\n\r\n")
            if sep:
                length = next((int(l.split(b":", 1)[1]) for l in head.split(b"\r\n")
                               if l.lower().startswith(b"content-length:")), None)
                if length is not None and len(body) >= length:
                    break
            chunk = s.recv(65536)
            if not chunk:
                sys.exit(f"{name}: a connection closed before its response ended: {got[:200]!r}")
            got += chunk
        status = got.split(b"\r\n", 1)[0]
        if b" 200 " not in status:
            sys.exit(f"{name}: expected a 200, got {status!r}")
    return conns

warm = open_idle(200)
time.sleep(1)
before = rss_kib()
idle = open_idle(n)
time.sleep(settle)
after = rss_kib()
per = (after - before) * 1024 / n
print(f"| {name} | {before:,} | {after:,} | {per:,.0f} |")
EOF
}

echo "| proxy | RSS before (KiB) | RSS with $N more idle connections (KiB) | bytes per idle connection |"
echo "|---|---|---|---|"

port=$(free_port)
"$CUTTLE" --listen "127.0.0.1:$port" --origin "http://127.0.0.1:$ORIGIN_PORT" --workers 1 \
  --cache-dir "$TMP/cuttle-cache" --log-level warn >/dev/null 2>"$TMP/cuttle.err" &
pid=$!
STOP_PIDS+=("$pid")
wait_port "$port" || {
  cat "$TMP/cuttle.err" >&2
  exit 1
}
measure cuttle "$port" "$pid"

mkdir -p "$TMP/haproxy"
port=$(free_port)
haproxy_cache_config "$port" "$ORIGIN_PORT" "$TMP/haproxy/haproxy.pid" >"$TMP/haproxy/haproxy.cfg"
# HAProxy's own connection limit defaults from the open-file limit; say it outright.
sed -i "s/^global$/global\n  maxconn $((N + 500))/" "$TMP/haproxy/haproxy.cfg"
haproxy -f "$TMP/haproxy/haproxy.cfg"
pid=$(pid_from_file "$TMP/haproxy/haproxy.pid")
STOP_PIDS+=("$pid")
wait_port "$port"
measure "HAProxy $(haproxy -v | head -n1 | awk '{print $3}')" "$port" "$pid"

d=$TMP/nginx_cache
port=$(free_port)
write_nginx_cache_conf "$d" "$port" "$ORIGIN_PORT"
sed -i "s/worker_connections 4096/worker_connections $((N + 500))/" "$d/nginx.conf"
nginx -e "$d/error.log" -p "$d" -c "$d/nginx.conf"
pid=$(pid_from_file "$d/nginx.pid")
STOP_PIDS+=("$pid")
wait_port "$port"
measure "nginx $(nginx -v 2>&1 | sed 's|.*nginx/||')" "$port" "$pid"
