#!/usr/bin/env bash
# Instructions per request for cuttle, under callgrind.
#
# Question: how many user-space instructions, how many simulated L1 instruction- and data-cache
# misses, and how much distinct code (the code run on every request, `benches/footprint.py`)
# does cuttle spend on one request: a 1 KiB memory hit, a 100 KiB (memory) hit and a
# 1 KiB miss of a no-store response, and a 1 KiB miss that is stored (every request a new URL)?
# Instruction counts are stable on a shared machine where
# wall-clock throughput is not, so this is the figure each performance change is tracked by.
#
# Method: a local nginx origin; cuttle in reverse mode in front of it (`--origin`, one worker,
# the embedded default config: access log on, written to a file here, admin listener on a free
# port, disk tier on with `--cache-dir`) runs under `valgrind --tool=callgrind --cache-sim=yes`.
# For each row cuttle is started twice: warm-up requests, then N (resp. 2N) requests from
# `wrk -t1 -cCONNS` (a Lua script stops it after that many responses), then SIGTERM. The
# per-request figure is (total(2N) - total(N)) / (served(2N) - served(N)), with "served" the
# access-log lines, so start-up, warm-up and shutdown drop out and wrk's overshoot is counted.
#
# Usage: benches/instructions.sh          (REQS=500 CONNS=10)
# Env:   REQS (N), CONNS (wrk connections), CUTTLE (the binary; default target/release/cuttle,
#        built first with `cargo build --release`; set it to compare two builds), ROW_FILTER
#        (only rows whose label contains this text), I1 (callgrind's L1i model, "65536,8,64":
#        64 KiB, 8-way, 64-byte lines), KEEP (a directory to keep the callgrind.out files in,
#        for callgrind_annotate), FIELDS (a file of request fields, `Name: value` a line, that
#        wrk adds to every request: benches/browser_fields.txt has a browser's; wrk's own
#        request has only Host), PROXY (`cuttle`, the default, or `haproxy`: the same rows for
#        HAProxy's cache, as load.sh configures it, one thread, no log; its requests are
#        counted by wrk, so each run's few responses in flight when wrk stops, which cancel out
#        of the difference, are not counted), TOP (a number: footprint.py lists that many
#        functions with the most per-request code lines, on stderr, for each row).
# Output: a Markdown table on stdout (progress on stderr). "code run" is the 64-byte lines of
# code run on every request (deterministic for a binary, unlike the misses, which move by up to
# ~20% between runs of one binary because they depend on what else ran in between); "D1
# misses" are read and write misses of callgrind's L1 data cache model (the machine's own L1d);
# "clock reads" are calls into libc's clock_gettime (~20 ns each in the vDSO outside valgrind).
# Needs valgrind, wrk, nginx, curl, python3.
# Caveat: valgrind's CPUID has no SHA extensions, so under it the disk tier's SHA-256 (cacache's
# integrity hash, in the stored-miss row) runs sha2's portable code; on a CPU with SHA-NI it
# runs the SHA-NI code (sha2 picks it at run time), so that row overstates the hashing: about
# 117k of its ~290k instructions are the portable SHA-256 (session 12, callgrind_annotate).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

REQS=${REQS:-500}
PROXY=${PROXY:-cuttle}
# FIELDS: a file of request fields wrk adds to every request, one `Name: value` per line.
declare -a WRK_FIELDS=()
if [ -n "${FIELDS:-}" ]; then
  while IFS= read -r line; do
    [ -n "$line" ] && WRK_FIELDS+=(-H "$line")
  done <"$FIELDS"
fi
CONNS=${CONNS:-10}
I1=${I1:-65536,8,64}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
if [ "$PROXY" = haproxy ]; then
  CUTTLE=
elif [ -z "${CUTTLE:-}" ]; then
  CUTTLE=$ROOT/target/release/cuttle
  printf 'building cuttle (cargo build --release)\n' >&2
  (cd "$ROOT" && cargo build --release --quiet --bin cuttle)
fi
export PATH=$PATH:/usr/sbin:/sbin

log() { printf '%s\n' "$*" >&2; }

for bin in valgrind wrk nginx curl python3; do
  command -v "$bin" >/dev/null || {
    log "needs $bin"
    exit 1
  }
done

use_scratch cuttle-instr

# The origin: nginx serving a cacheable 1 KiB and 100 KiB object, a no-store 1 KiB one, and the
# cacheable 1 KiB object under any path below /fresh/ (so each new URL there is a stored miss).
start_origin() {
  local d=$TMP/origin
  mkdir -p "$TMP/www/static" "$TMP/www/nocache" "$d"
  head -c 1024 /dev/urandom >"$TMP/www/static/1k"
  head -c 102400 /dev/urandom >"$TMP/www/static/100k"
  cp "$TMP/www/static/1k" "$TMP/www/nocache/1k"
  ORIGIN_PORT=$(free_port)
  # `user root` (lib.sh): only a root master reads it; others ignore it with a warning.
  write_nginx_conf "$d" <<EOF
  access_log off;
  server {
    listen 127.0.0.1:$ORIGIN_PORT;
    root $TMP/www;
    location /static/ { add_header Cache-Control "public, max-age=3600"; }
    location /nocache/ { add_header Cache-Control "no-store"; }
    location /fresh/ { add_header Cache-Control "public, max-age=3600"; try_files /static/1k =404; }
  }
EOF
  nginx -e "$d/error.log" -p "$d" -c "$d/nginx.conf"
  STOP_PIDS+=("$(pid_from_file "$d/nginx.pid")")
  wait_port "$ORIGIN_PORT" 15
}

# wrk exits after this many responses (one thread). `wrk.thread:stop()` would end the thread,
# but wrk's main thread still sleeps out the whole `-d`.
cat >"$TMP/stop.lua" <<'EOF'
local limit, n = 0, 0
function init(args) limit = tonumber(args[1]) end
function response(status, headers, body)
  n = n + 1
  if n >= limit then os.exit(0) end
end
EOF

# The same, but every request goes to a new URL below the row's path (/fresh/r1, /fresh/r2, ...),
# so each one is a miss that is stored.
cat >"$TMP/fresh.lua" <<'EOF'
local limit, n, sent = 0, 0, 0
function init(args) limit = tonumber(args[1]) end
function request()
  sent = sent + 1
  return wrk.format(nil, wrk.path .. "r" .. sent)
end
function response(status, headers, body)
  n = n + 1
  if n >= limit then os.exit(0) end
end
EOF

# is_hit HEADERS: whether a response head shows a cache hit (cuttle's Cache-Status, the
# X-Cache field lib.sh's haproxy_cache_config adds).
is_hit() {
  grep -Eqi '^(cache-status:.*;[[:space:]]*hit|x-cache: *hit)' <<<"$1"
}

# measure PATH REQS EXPECT: one callgrind run; prints "Ir I1mr served". EXPECT is hit, miss
# or stored-miss (a new URL below PATH each request; the checks use URLs wrk does not).
measure() {
  local path=$1 reqs=$2 expect=$3 run port conf pid
  run=$TMP/run.$RANDOM
  mkdir -p "$run"
  port=$(free_port)
  if [ "$PROXY" = haproxy ]; then
    conf=$run/haproxy.cfg
    haproxy_cache_config "$port" "$ORIGIN_PORT" >"$conf"
    valgrind --tool=callgrind --cache-sim=yes --dump-instr=yes --I1="$I1" \
      --callgrind-out-file="$run/callgrind.out" \
      haproxy -db -f "$conf" >/dev/null 2>"$run/valgrind.err" &
  else
    conf=$run/cuttle.toml
    "$CUTTLE" --print-default-config | awk -v alog="$run/access.log" -v admin="127.0.0.1:$(free_port)" '
      /^access_log = / { print "access_log = \"" alog "\""; next }
      /^\[admin\]/ { print; print "listen = \"" admin "\""; next }
      { print }' >"$conf"
    valgrind --tool=callgrind --cache-sim=yes --dump-instr=yes --I1="$I1" \
      --callgrind-out-file="$run/callgrind.out" "$CUTTLE" --config "$conf" \
      --listen "127.0.0.1:$port" --origin "http://127.0.0.1:$ORIGIN_PORT" --workers 1 \
      --cache-dir "$run/cache" --log-level warn >/dev/null 2>"$run/valgrind.err" &
  fi
  pid=$!
  # This runs in a command substitution, whose exit the main shell's trap does not see.
  trap 'kill -9 "$pid" 2>/dev/null' EXIT
  trap 'exit 1' INT TERM
  fail() {
    log "$1"
    exit 1
  }
  wait_port "$port" 120 || fail "cuttle did not start under valgrind: $(cat "$run/valgrind.err")"
  local url=http://127.0.0.1:$port$path h script=$TMP/stop.lua
  if [ "$expect" = stored-miss ]; then
    # The first check URL is stored: a second request for it must hit (so the row's misses
    # really are stored), and a request for another new URL must miss.
    curl -sS -o /dev/null "${url}warm"
    h=$(curl -sS -o /dev/null -D - "${url}warm")
    is_hit "$h" || fail "expected ${path}warm to be stored, got: $h"
    h=$(curl -sS -o /dev/null -D - "${url}check")
    expect=miss
    script=$TMP/fresh.lua
  else
    curl -sS -o /dev/null "$url"
    h=$(curl -sS -o /dev/null -D - "$url")
  fi
  case $expect in
    hit) is_hit "$h" || fail "expected a hit for $path, got: $h" ;;
    miss) ! is_hit "$h" || fail "expected a miss for $path, got: $h" ;;
  esac
  timeout 600 wrk -t1 -c"$CONNS" -d600s "${WRK_FIELDS[@]}" -s "$script" "$url" -- "$reqs" >"$run/wrk.out" ||
    fail "wrk failed: $(cat "$run/wrk.out")"
  kill -TERM "$pid"
  wait "$pid" || true
  trap - EXIT
  local served
  if [ "$PROXY" = haproxy ]; then
    served=$reqs
  else
    served=$(wc -l <"$run/access.log")
  fi
  local kept=$TMP/callgrind.$reqs.out
  mv "$run/callgrind.out" "$kept"
  awk -v served="$served" -v kept="$kept" '
    /^events:/ { for (i = 2; i <= NF; i++) col[$i] = i - 1 }
    /^(summary|totals):/ {
      print $(col["Ir"] + 1), $(col["I1mr"] + 1), $(col["D1mr"] + 1) + $(col["D1mw"] + 1), served, kept
      exit
    }
  ' "$kept"
  if [ -n "${KEEP:-}" ]; then
    mkdir -p "$KEEP"
    cp "$kept" "$KEEP/callgrind.out.${path//\//_}.$reqs"
  fi
  rm -rf "$run"
}

# row LABEL PATH EXPECT: prints a table row.
row() {
  local label=$1 path=$2 expect=$3
  [ -n "${ROW_FILTER:-}" ] && [[ $label != *"$ROW_FILTER"* ]] && return 0
  log "$label: $REQS and $((2 * REQS)) requests under callgrind"
  local a=() b=()
  read -r -a a <<<"$(measure "$path" "$REQS" "$expect")"
  read -r -a b <<<"$(measure "$path" $((2 * REQS)) "$expect")"
  if [ "${#a[@]}" != 5 ] || [ "${#b[@]}" != 5 ]; then
    log "$label: a measurement failed"
    exit 1
  fi
  local n=$((b[3] - a[3])) code=("-" "-" "-") out
  if [ "$n" -gt 0 ]; then
    out=$(python3 "$ROOT/benches/footprint.py" "${a[4]}" "${b[4]}" "$n" ${TOP:+"$TOP"}) || {
      log "$label: footprint.py failed"
      exit 1
    }
    read -r -a code <<<"$out"
  fi
  rm -f "${a[4]}" "${b[4]}"
  awk -v label="$label" -v ir1="${a[0]}" -v m1="${a[1]}" -v d1="${a[2]}" -v s1="${a[3]}" \
    -v ir2="${b[0]}" -v m2="${b[1]}" -v d2="${b[2]}" -v s2="${b[3]}" -v lines="${code[1]}" \
    -v clocks="${code[2]}" 'BEGIN {
      n = s2 - s1
      if (n <= 0) { printf "| %s | - | - | - | - | - | - |\n", label; exit }
      printf "| %s | %.1fk | %.0f | %.0f | %.0f | %s | %d |\n", label, (ir2 - ir1) / n / 1000,
        (m2 - m1) / n, lines * 64 / 1024, (d2 - d1) / n, clocks, n
    }'
}

start_origin
if [ "$PROXY" = haproxy ]; then
  command -v haproxy >/dev/null || {
    log "needs haproxy"
    exit 1
  }
  log "HAProxy: $(haproxy -v | head -n1); L1i model $I1; wrk -t1 -c$CONNS"
else
  log "cuttle: $CUTTLE; L1i model $I1; wrk -t1 -c$CONNS"
fi
echo "| $PROXY, per request (callgrind) | instructions | L1i misses | code run (KiB) | D1 misses | clock reads | requests |"
echo "|---|---|---|---|---|---|---|"
row "1 KiB memory hit" /static/1k hit
row "100 KiB hit" /static/100k hit
row "1 KiB miss (no-store)" /nocache/1k miss
row "1 KiB miss (stored)" /fresh/ stored-miss
