#!/usr/bin/env bash
# Proxy CPU per stored miss, against a no-store miss, for cuttle.
#
# Question: what does a miss that is stored (memory and disk tier) cost the proxy, beside a miss
# that is only relayed? `instructions.sh` counts user-space instructions only (and under valgrind
# SHA-256 runs its portable code); the disk tier's cost is mostly system time and hand-offs to
# tokio's blocking pool, which only the wall clock shows.
#
# Method: load.sh's setup: a local nginx origin and cuttle (reverse mode, `--origin`, one
# worker, the embedded default config: both tiers, access log on) pinned to CPU 0, `wrk -t1
# -cCONNS` on CPU 1. Each phase runs SECS seconds: "no-store" requests one no-store URL again and
# again; "stored" gives every request a new URL (a query string under a `max-age=3600` path, so
# each is a miss that is stored). Proxy CPU is read from /proc/PID/stat around each phase.
# Phases alternate (no-store, stored, no-store, stored): the first stored phase also starts the
# blocking pool's threads, so the second is the warm figure. The cache directory is on tmpfs
# (/dev/shm) unless CACHE_ROOT says otherwise: on a virtual disk the file system's own cost
# swings several-fold from one run to the next and hides cuttle's.
#
# Usage: benches/stored_miss.sh
# Env:   CUTTLE (the binary; default target/release/cuttle, built first), SECS (5), CONNS (50),
#        CACHE_ROOT (where the cache directory is made, /dev/shm), STRACE=1 (also `strace -c -f`
#        each phase: syscalls and futex hand-offs per request; slows everything down).
# Output: one line per phase on stdout: requests, and user and system CPU per request in µs.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SECS=${SECS:-5}
CONNS=${CONNS:-50}
CACHE_ROOT=${CACHE_ROOT:-/dev/shm}
CLK_TCK=$(getconf CLK_TCK)
if [ -z "${CUTTLE:-}" ]; then
  (cd "$ROOT" && cargo build --release --quiet --bin cuttle)
  CUTTLE=$ROOT/target/release/cuttle
fi

TMP=$(mktemp -d /tmp/cuttle-stored.XXXXXX)
CACHE=$(mktemp -d "$CACHE_ROOT/cuttle-stored-cache.XXXXXX")
declare -a PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do
    kill "$p" 2>/dev/null || true
  done
  [ -f "$TMP/origin/nginx.pid" ] && kill "$(cat "$TMP/origin/nginx.pid")" 2>/dev/null
  wait 2>/dev/null || true
  rm -rf "$TMP" "$CACHE"
}
trap cleanup EXIT

mkdir -p "$TMP/www/nocache" "$TMP/www/static" "$TMP/origin"
head -c 1024 /dev/urandom >"$TMP/www/nocache/1k"
cp "$TMP/www/nocache/1k" "$TMP/www/static/1k"
origin_port=$(free_port)
write_nginx_conf "$TMP/origin" <<EOF
  access_log off;
  server {
    listen 127.0.0.1:$origin_port;
    root $TMP/www;
    location /static/ { add_header Cache-Control "public, max-age=3600"; }
    location /nocache/ { add_header Cache-Control "no-store"; }
  }
EOF
taskset -c 0 nginx -e "$TMP/origin/error.log" -p "$TMP/origin" -c "$TMP/origin/nginx.conf"
wait_port "$origin_port"

port=$(free_port)
taskset -c 0 "$CUTTLE" --listen "127.0.0.1:$port" --origin "http://127.0.0.1:$origin_port" \
  --workers 1 --log-level warn --cache-dir "$CACHE/cache" >/dev/null 2>"$TMP/cuttle.err" &
pid=$!
PIDS+=("$pid")
wait_port "$port"

# Every request a new URL: wrk's counter and a random number (wrk runs one Lua state per thread).
cat >"$TMP/unique.lua" <<'EOF'
counter = 0
request = function()
  counter = counter + 1
  return wrk.format("GET", "/static/1k?n=" .. counter .. "-" .. math.random(1000000000))
end
EOF

cpu_ticks() { awk '{print $14, $15}' "/proc/$pid/stat"; }

for phase in no-store stored no-store stored; do
  if [ "$phase" = stored ]; then
    args=(-s "$TMP/unique.lua" "http://127.0.0.1:$port/")
  else
    args=("http://127.0.0.1:$port/nocache/1k")
  fi
  if [ -n "${STRACE:-}" ]; then
    strace -c -f -p "$pid" -o "$TMP/strace.$phase" &
    strace_pid=$!
    sleep 0.5
  fi
  read -r u0 s0 < <(cpu_ticks)
  taskset -c 1 wrk -t1 -c"$CONNS" -d"${SECS}s" "${args[@]}" >"$TMP/wrk.out"
  read -r u1 s1 < <(cpu_ticks)
  n=$(awk '/requests in/ {print $1}' "$TMP/wrk.out")
  awk -v p="$phase" -v n="$n" -v u=$((u1 - u0)) -v s=$((s1 - s0)) -v hz="$CLK_TCK" \
    'BEGIN { printf "%-8s %8d requests  user %6.1f µs  system %6.1f µs per request\n",
             p, n, u * 1e6 / hz / n, s * 1e6 / hz / n }'
  if [ -n "${STRACE:-}" ]; then
    kill -INT "$strace_pid"
    wait "$strace_pid" || true
    awk -v n="$n" 'NR > 2 && $NF != "total" && $4 ~ /^[0-9]+$/ {
      printf "    %-14s %6.2f per request\n", $NF, $4 / n }' "$TMP/strace.$phase" | head -8
  fi
done
if grep -qi "error\|warn" "$TMP/cuttle.err"; then
  echo "cuttle logged warnings or errors:" >&2
  grep -i "error\|warn" "$TMP/cuttle.err" | head -5 >&2
fi
