#!/usr/bin/env bash
# Whole-proxy load benchmark for cuttle.
#
# Question: how do cuttle's throughput and latency compare, on this machine in the same run,
# with nginx proxy_cache, Varnish (malloc storage), HAProxy's cache and Squid (accel mode),
# and with the origin served directly (the one-core ceiling)?
#
# Every server (origin and proxies) is pinned to CPU 0 and wrk to CPU 1 with taskset; all
# listen on free high ports on 127.0.0.1 with configs, pids and caches in one mktemp -d
# directory, removed (and everything stopped) by a trap on exit.
#
# Usage: benches/load.sh            (REPS=5 SECS=10)
#        REPS=3 SECS=5 benches/load.sh
# Env:   REPS, SECS, CONNS (wrk connections, 50), CUTTLE2_CPUS (cores for cuttle --workers 2,
#        default "0,1": this shares core 1 with wrk, so it is a rough scaling note only),
#        OBJECTS (memory measurement, 100000), FILL_SECS (bound on each half of the fill, 60),
#        MEMORY_ONLY=1 (only the memory measurement), ROW_FILTER (run only the rows whose label
#        contains this text, e.g. "miss"; the memory measurement still runs),
#        ADMIN_COMPARE=1 (the 1 KiB memory-hit row also runs cuttle with its admin listener on
#        a free port, counting, and with `[admin] listen = "none"`, not counting: the cost of
#        /metrics counting on the hit path, in the same run), CUTTLE (the binary; default
#        target/release/cuttle, built first with `cargo build --release`; set it to compare
#        builds, e.g. two global allocators).
# Output: a Markdown table on stdout (progress on stderr). Needs root for apt-get only.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

REPS=${REPS:-5}
SECS=${SECS:-10}
CONNS=${CONNS:-50}
CUTTLE2_CPUS=${CUTTLE2_CPUS:-0,1}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CUTTLE=${CUTTLE:-}
CLK_TCK=$(getconf CLK_TCK)

log() { printf '%s\n' "$*" >&2; }

TMP=$(mktemp -d /tmp/cuttle-load.XXXXXX)
chmod 777 "$TMP" # squid drops root privileges and must still reach its files
declare -a STOP_PIDS=()
declare -A PID NOTRUN

cleanup() {
  local p
  for p in "${STOP_PIDS[@]}"; do
    kill "$p" 2>/dev/null || true
  done
  local tries=30 alive
  while [ "$tries" -gt 0 ]; do # give them up to 3 s to exit
    alive=0
    for p in "${STOP_PIDS[@]}"; do
      kill -0 "$p" 2>/dev/null && alive=1
    done
    [ "$alive" = 1 ] || break
    sleep 0.1
    tries=$((tries - 1))
  done
  for p in "${STOP_PIDS[@]}"; do
    kill -9 "$p" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT

install_deps() {
  local missing=() bin pkg
  for pkg in nginx:nginx varnishd:varnish haproxy:haproxy wrk:wrk squid:squid; do
    bin=${pkg%%:*}
    command -v "$bin" >/dev/null || [ -x "/usr/sbin/$bin" ] || missing+=("${pkg#*:}")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    log "installing: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
  fi
  # Debian enables these as services on install; stop them so they use no CPU during the run.
  local svc
  for svc in nginx varnish haproxy squid; do
    if command -v systemctl >/dev/null && systemctl is-active --quiet "$svc" 2>/dev/null; then
      systemctl stop "$svc" || true
    fi
  done
  export PATH=$PATH:/usr/sbin:/sbin
}

start_origin() {
  mkdir -p "$TMP/www/static" "$TMP/www/nocache" "$TMP/origin"
  head -c 1024 /dev/urandom >"$TMP/www/static/1k"
  head -c 102400 /dev/urandom >"$TMP/www/static/100k"
  head -c 1048576 /dev/urandom >"$TMP/www/static/1m"
  cp "$TMP/www/static/1k" "$TMP/www/nocache/1k"
  ORIGIN_PORT=$(free_port)
  local d=$TMP/origin
  write_nginx_conf "$d" <<EOF
  access_log off;
  sendfile on;
  tcp_nopush on;
  server {
    listen 127.0.0.1:$ORIGIN_PORT;
    root $TMP/www;
    location /static/ { add_header Cache-Control "public, max-age=3600"; }
    location /nocache/ { add_header Cache-Control "no-store"; }
    # Any /obj/NAME is the 1 KiB file: distinct cacheable URLs for the memory measurement.
    location /obj/ { add_header Cache-Control "public, max-age=3600"; try_files /static/1k =404; }
  }
EOF
  start_nginx origin "$d" "$ORIGIN_PORT"
}

# start_nginx NAME DIR PORT: starts nginx on DIR/nginx.conf pinned to core 0 and records it.
start_nginx() {
  taskset -c 0 nginx -e "$2/error.log" -p "$2" -c "$2/nginx.conf"
  started "$1" "$(pid_from_file "$2/nginx.pid")" "$3"
  wait_port "$3"
}

# started NAME PID PORT: remember a server so it is measured and stopped on exit.
started() {
  PID[$1]=$2
  STOP_PIDS+=("$2")
  PORT[$1]=$3
}

# start_cuttle_forward NAME: cuttle as a forward proxy (the embedded default config, 1 worker);
# wrk sends it absolute-form requests for the origin through a Lua script (see run_wrk).
start_cuttle_forward() {
  local name=$1 port
  port=$(free_port)
  taskset -c 0 "$CUTTLE" --listen "127.0.0.1:$port" --workers 1 --cache-dir "$TMP/$name" \
    --log-level warn >/dev/null 2>"$TMP/$name.err" &
  started "$name" "$!" "$port"
  wait_port "$port"
}

# start_cuttle NAME WORKERS CPUS [CONFIG [CACHE_DIR]]: CACHE_DIR "none" keeps the config's
# disk setting instead of passing --cache-dir.
start_cuttle() {
  local name=$1 workers=$2 cpus=$3 config=${4:-} cache_dir=${5:-$TMP/$1} port
  port=$(free_port)
  local args=(--listen "127.0.0.1:$port" --origin "http://127.0.0.1:$ORIGIN_PORT"
    --workers "$workers" --log-level warn)
  [ "$cache_dir" != none ] && args+=(--cache-dir "$cache_dir")
  [ -n "$config" ] && args=(--config "$config" "${args[@]}")
  taskset -c "$cpus" "$CUTTLE" "${args[@]}" >/dev/null 2>"$TMP/$name.err" &
  started "$name" "$!" "$port"
  wait_port "$port"
}

start_nginx_cache() {
  local d=$TMP/nginx_cache port
  port=$(free_port)
  write_nginx_cache_conf "$d" "$port" "$ORIGIN_PORT"
  start_nginx nginx "$d" "$port"
}

# launch_daemon NAME DIR PIDFILE PORT CMD...: runs CMD (which daemonises and writes PIDFILE)
# pinned to core 0 and records it under NAME, or records in NOTRUN why it is not running.
launch_daemon() {
  local name=$1 d=$2 pidfile=$3 port=$4
  shift 4
  if ! taskset -c 0 "$@" >"$d/out.log" 2>&1; then
    NOTRUN[$name]="$1 failed: $(tr '\n' ' ' <"$d/out.log" | cut -c1-120)"
    return 0
  fi
  started "$name" "$(pid_from_file "$pidfile")" "$port"
  wait_port "$port" || NOTRUN[$name]="$1 did not listen"
}

start_varnish() {
  local d=$TMP/varnish port
  port=$(free_port)
  mkdir -p "$d"
  launch_daemon varnish "$d" "$d/varnishd.pid" "$port" \
    varnishd -j none -a "127.0.0.1:$port" -b "127.0.0.1:$ORIGIN_PORT" \
    -s malloc,256m -n "$d/work" -P "$d/varnishd.pid"
}

start_haproxy() {
  local d=$TMP/haproxy port
  port=$(free_port)
  mkdir -p "$d"
  haproxy_cache_config "$port" "$ORIGIN_PORT" "$d/haproxy.pid" >"$d/haproxy.cfg"
  launch_daemon haproxy "$d" "$d/haproxy.pid" "$port" haproxy -f "$d/haproxy.cfg"
}

start_squid() {
  local d=$TMP/squid port
  port=$(free_port)
  mkdir -p "$d"
  chmod 777 "$d"
  cat >"$d/squid.conf" <<EOF
http_port 127.0.0.1:$port accel defaultsite=127.0.0.1 no-vhost
cache_peer 127.0.0.1 parent $ORIGIN_PORT 0 no-query originserver name=origin
cache_peer_access origin allow all
http_access allow all
cache_mem 256 MB
maximum_object_size_in_memory 2 MB
maximum_object_size 2 MB
pid_filename $d/squid.pid
cache_log $d/cache.log
access_log daemon:$d/access.log squid
cache_store_log none
coredump_dir $d
netdb_filename none
shutdown_lifetime 1 seconds
workers 1
EOF
  taskset -c 0 squid -N -f "$d/squid.conf" >"$d/out.log" 2>&1 &
  started "squid" "$!" "$port"
  wait_port "$port" 20 || NOTRUN[squid]="squid did not listen: $(tail -n2 "$d/cache.log" 2>/dev/null | tr '\n' ' ' | cut -c1-120)"
}

# is_hit NAME HEADERS: 0 if the (second) response's headers show a cache hit.
is_hit() {
  local name=$1 h=$2
  case $name in
    cuttle*) grep -qi '^cache-status:.*hit' <<<"$h" ;;
    nginx) grep -qi '^x-cache-status: *hit' <<<"$h" ;;
    varnish) grep -Eqi '^x-varnish: *[0-9]+ [0-9]+' <<<"$h" ;;
    haproxy) grep -qi '^x-cache: *hit' <<<"$h" || grep -Eqi '^age: *[0-9]' <<<"$h" ;;
    squid) grep -qi '^x-cache: *hit' <<<"$h" ;;
    *) return 0 ;;
  esac
}

# warm_and_check NAME PATH: fetch twice; the second must be a 200 hit (misses: just a 200).
# Prints nothing on success, a warning text otherwise.
warm_and_check() {
  local name=$1 path=$2 url h code
  local -a via=()
  url="http://127.0.0.1:${PORT[$name]}$path"
  if [[ $name == cuttle_fwd* ]]; then
    via=(-x "http://127.0.0.1:${PORT[$name]}")
    url="http://127.0.0.1:$ORIGIN_PORT$path"
  fi
  curl -s "${via[@]}" -o /dev/null "$url" || true
  sleep 0.2
  h=$(curl -s "${via[@]}" -D - -o /dev/null "$url" | tr -d '\r') || true
  code=$(head -n1 <<<"$h" | awk '{print $2}')
  if [ "$code" != 200 ]; then
    echo "WARN status ${code:-none}"
  elif [[ $path != /nocache/* ]] && ! is_hit "$name" "$h"; then
    echo "WARN not a hit"
  fi
}

# proc_ticks PID: utime+stime of PID and all its descendants, in clock ticks.
proc_ticks() {
  local total=0 p t kids
  local -a queue=("$1")
  while [ "${#queue[@]}" -gt 0 ]; do
    p=${queue[0]}
    queue=("${queue[@]:1}")
    if [ -r "/proc/$p/stat" ]; then
      t=$(sed 's/^.*) //' "/proc/$p/stat" | awk '{print $12 + $13}')
      total=$((total + t))
    fi
    kids=$(pgrep -P "$p" || true)
    for t in $kids; do queue+=("$t"); done
  done
  echo "$total"
}

to_ms() { # "123.45us" / "1.2ms" / "1.5s" -> milliseconds
  awk -v v="$1" 'BEGIN {
    n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
    if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000
    printf "%.3f", n }'
}

to_mib() { # wrk Transfer/sec "1.23MB" (1024-based) -> MiB/s
  awk -v v="$1" 'BEGIN {
    n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
    if (u == "B") n /= 1048576; else if (u == "KB") n /= 1024; else if (u == "GB") n *= 1024
    printf "%.1f", n }'
}

# run_wrk NAME PATH: one wrk run; prints "rps mib p50ms p99ms cpu% req-per-cpu-second errors".
run_wrk() {
  local name=$1 path=$2 out t0 t1 w0 w1 rps mib p50 p99 cpu errs
  local -a script=()
  if [[ $name == cuttle_fwd* ]]; then
    # A forward proxy gets absolute-form targets (RFC 9112 §3.2.2).
    printf 'local r\ninit = function() r = wrk.format(nil, "http://127.0.0.1:%s%s") end\nrequest = function() return r end\n' \
      "$ORIGIN_PORT" "$path" >"$TMP/fwd.lua"
    script=(-s "$TMP/fwd.lua")
  fi
  t0=$(proc_ticks "${PID[$name]}")
  w0=$(date +%s.%N)
  out=$(taskset -c 1 wrk -t1 -c"$CONNS" -d"${SECS}s" --latency "${script[@]}" \
    "http://127.0.0.1:${PORT[$name]}$path")
  w1=$(date +%s.%N)
  t1=$(proc_ticks "${PID[$name]}")
  rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
  mib=$(to_mib "$(awk '/^Transfer\/sec:/ {print $2}' <<<"$out")")
  p50=$(to_ms "$(awk '$1 == "50%" {print $2}' <<<"$out")")
  p99=$(to_ms "$(awk '$1 == "99%" {print $2}' <<<"$out")")
  cpu=$(awk -v a="$t0" -v b="$t1" -v s="$w0" -v e="$w1" -v hz="$CLK_TCK" \
    'BEGIN { printf "%.0f", (b - a) / hz / (e - s) * 100 }')
  # Requests served per second of the proxy's own CPU time (user + system), from the raw ticks:
  # the figure that compares proxies on one core whatever their share of it.
  pcs=$(awk -v r="${rps:-0}" -v a="$t0" -v b="$t1" -v s="$w0" -v e="$w1" -v hz="$CLK_TCK" \
    'BEGIN { c = (b - a) / hz; if (c > 0) printf "%.0f", r * (e - s) / c; else print 0 }')
  errs=$(awk '/Non-2xx|Socket errors/ {s = s $0 "; "} END {gsub(/  +/, " ", s); print s}' <<<"$out")
  echo "${rps:-0} ${mib:-0} ${p50:-0} ${p99:-0} ${cpu:-0} ${pcs:-0} ${errs// /_}"
}

median() { # median of the numbers given as arguments
  printf '%s\n' "$@" | sort -g | awk '{a[NR] = $1} END {
    if (NR % 2) print a[(NR + 1) / 2]; else printf "%.3f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

fmt_int() { awk -v v="$1" 'BEGIN { printf "%.0f", v }'; }

ratio() { awk -v a="$1" -v b="${2:-0}" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "-" }'; }

# ---------------------------------------------------------------------------------------------
install_deps
if [ -z "$CUTTLE" ]; then
  CUTTLE=$ROOT/target/release/cuttle
  log "building cuttle (cargo build --release)"
  (cd "$ROOT" && cargo build --release --quiet)
fi
declare -A PORT

start_origin
if [ "${MEMORY_ONLY:-0}" != 1 ]; then
start_cuttle cuttle 1 0
start_cuttle cuttle_w2 2 "$CUTTLE2_CPUS"
start_cuttle_forward cuttle_fwd
# Disk tier: the embedded default config (so http_access etc. stay as with no --config) with
# a memory tier that takes no object, so every hit is read from --cache-dir.
"$CUTTLE" --print-default-config | awk '
  /^\[/ { sect = $0 }
  sect == "[cache.memory]" && /^max_object_size/ { print "max_object_size = \"1 B\""; next }
  { print }' >"$TMP/cuttle_disk.toml"
start_cuttle cuttle_disk 1 0 "$TMP/cuttle_disk.toml"
if [ "${ADMIN_COMPARE:-0}" = 1 ]; then
  # The embedded default config with the admin listener on a free port (counting) or off.
  admin_conf() { # FILE LISTEN
    "$CUTTLE" --print-default-config | awk -v listen="$2" '
      /^\[admin\]/ { print; print "listen = \"" listen "\""; next }
      { print }' >"$1"
  }
  admin_conf "$TMP/cuttle_admin.toml" "127.0.0.1:$(free_port)"
  admin_conf "$TMP/cuttle_noadmin.toml" none
  start_cuttle cuttle_admin 1 0 "$TMP/cuttle_admin.toml"
  start_cuttle cuttle_noadmin 1 0 "$TMP/cuttle_noadmin.toml"
fi
start_nginx_cache
start_varnish
start_haproxy
start_squid

declare -A LABEL=(
  [origin]="origin direct (nginx)" [cuttle]="cuttle (1 worker)"
  [cuttle_fwd]="cuttle forward mode (1 worker)"
  [cuttle_w2]="cuttle (2 workers, cores $CUTTLE2_CPUS)" [cuttle_disk]="cuttle (disk tier)"
  [nginx]="nginx proxy_cache" [varnish]="Varnish (malloc)" [haproxy]="HAProxy cache"
  [squid]="Squid (accel)"
  [cuttle_admin]="cuttle, admin listener on (counting)"
  [cuttle_noadmin]="cuttle, admin listener off (not counting)"
)
ADMIN_PEERS=""
[ "${ADMIN_COMPARE:-0}" = 1 ] && ADMIN_PEERS=" cuttle_admin cuttle_noadmin"
MEM_PEERS=(origin cuttle cuttle_fwd cuttle_w2 nginx varnish haproxy squid)
ROWS=(
  "1 KiB memory hit|/static/1k|${MEM_PEERS[*]}$ADMIN_PEERS"
  "100 KiB memory hit|/static/100k|${MEM_PEERS[*]}"
  "1 MiB memory hit|/static/1m|${MEM_PEERS[*]}"
  "1 KiB miss (no-store)|/nocache/1k|${MEM_PEERS[*]}"
  "100 KiB disk hit|/static/100k|origin cuttle_disk nginx"
)

echo "| row | proxy | median req/s (min-max) | MiB/s | p50 ms | p99 ms | proxy CPU | req per CPU-second (min-max) | per CPU vs HAProxy | vs nginx proxy_cache | vs origin direct | note |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
for spec in "${ROWS[@]}"; do
  IFS='|' read -r row path peers <<<"$spec"
  [[ "$row" == *"${ROW_FILTER:-}"* ]] || continue
  read -r -a names <<<"$peers"
  declare -A NOTE=() RPS=() MIBS=() P50S=() P99S=() CPUS=() PCS=() ERRS=()
  for n in "${names[@]}"; do
    if [ -n "${NOTRUN[$n]:-}" ] || [ -z "${PORT[$n]:-}" ]; then continue; fi
    NOTE[$n]=$(warm_and_check "$n" "$path")
  done
  for ((r = 1; r <= REPS; r++)); do
    for n in "${names[@]}"; do
      if [ -n "${NOTRUN[$n]:-}" ] || [ -z "${PORT[$n]:-}" ]; then continue; fi
      log "$row: ${LABEL[$n]} run $r/$REPS"
      read -r rps mib p50 p99 cpu pcs errs <<<"$(run_wrk "$n" "$path")"
      RPS[$n]+="$rps "
      MIBS[$n]+="$mib "
      P50S[$n]+="$p50 "
      P99S[$n]+="$p99 "
      CPUS[$n]+="$cpu "
      PCS[$n]+="$pcs "
      [ -n "$errs" ] && ERRS[$n]="${errs//_/ }"
    done
  done
  declare -A MED=() MEDPCS=()
  for n in "${names[@]}"; do
    [ -n "${RPS[$n]:-}" ] || continue
    # shellcheck disable=SC2086 # word splitting of the per-run lists is intended
    MED[$n]=$(median ${RPS[$n]})
    # shellcheck disable=SC2086
    MEDPCS[$n]=$(median ${PCS[$n]})
  done
  for n in "${names[@]}"; do
    if [ -z "${RPS[$n]:-}" ]; then
      echo "| $row | ${LABEL[$n]} | not run: ${NOTRUN[$n]:-no port} | | | | | | | | | |"
      continue
    fi
    # shellcheck disable=SC2086
    {
      lo=$(printf '%s\n' ${RPS[$n]} | sort -g | head -n1)
      hi=$(printf '%s\n' ${RPS[$n]} | sort -g | tail -n1)
      mib=$(median ${MIBS[$n]})
      p50=$(median ${P50S[$n]})
      p99=$(median ${P99S[$n]})
      cpu=$(median ${CPUS[$n]})
      pcs_lo=$(printf '%s\n' ${PCS[$n]} | sort -g | head -n1)
      pcs_hi=$(printf '%s\n' ${PCS[$n]} | sort -g | tail -n1)
    }
    note="${NOTE[$n]:-}${ERRS[$n]:+ ${ERRS[$n]}}"
    printf '| %s | %s | %s (%s-%s) | %s | %s | %s | %s%% | %s (%s-%s) | %s | %s | %s | %s |\n' \
      "$row" "${LABEL[$n]}" "$(fmt_int "${MED[$n]}")" "$(fmt_int "$lo")" "$(fmt_int "$hi")" \
      "$(awk -v v="$mib" 'BEGIN { printf "%.1f", v }')" \
      "$(awk -v v="$p50" 'BEGIN { printf "%.2f", v }')" \
      "$(awk -v v="$p99" 'BEGIN { printf "%.2f", v }')" \
      "$cpu" "$(fmt_int "${MEDPCS[$n]}")" "$(fmt_int "$pcs_lo")" "$(fmt_int "$pcs_hi")" \
      "$(ratio "${MEDPCS[$n]}" "${MEDPCS[haproxy]:-}")" \
      "$(ratio "${MED[$n]}" "${MED[nginx]:-}")" "$(ratio "${MED[$n]}" "${MED[origin]:-}")" \
      "$note"
  done
  unset NOTE RPS MIBS P50S P99S CPUS PCS ERRS MED MEDPCS
done
for n in "${!NOTRUN[@]}"; do
  log "not run: ${LABEL[$n]}: ${NOTRUN[$n]}"
done
fi # MEMORY_ONLY

# ---------------------------------------------------------------------------------------------
# Memory: RSS per cached 1 KiB object. A fresh cuttle with the memory tier only (no disk tier,
# no access log) is filled with OBJECTS distinct 1 KiB objects (/obj/1../obj/N, each a miss that
# is stored), in two halves. Its RSS growth divided by N is the cost of one object including
# start-up growth (allocator arenas, connection buffers); the growth over the second half divided
# by its objects is the marginal cost of one more object. Either minus the 1024 body bytes is
# the per-object overhead.
OBJECTS=${OBJECTS:-100000}
"$CUTTLE" --print-default-config | awk '
  /^\[/ { sect = $0 }
  sect == "[cache.disk]" && /^path/ { print "path = \"\""; next }
  sect == "[cache.memory]" && /^max_size/ { print "max_size = \"2 GiB\""; next }
  sect == "[log]" && /^access_log *=/ { print "access_log = \"none\""; next }
  { print }' >"$TMP/cuttle_mem.toml"
start_cuttle cuttle_mem 1 0 "$TMP/cuttle_mem.toml" none
mem_url="http://127.0.0.1:${PORT[cuttle_mem]}"
curl -s -o /dev/null "$mem_url/obj/0"
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
# fill FIRST LAST: asks for /obj/FIRST+2../obj/LAST (wrk calls request() once per thread before
# sending and drops that one, so /obj/FIRST+1 is never asked for); prints how many requests
# were sent (0 if wrk printed no count).
fill() {
  cat >"$TMP/fill.lua" <<EOF
local n = $1
request = function()
  n = n + 1
  if n > $2 then wrk.thread:stop() end
  return wrk.format(nil, "/obj/" .. n)
end
EOF
  # wrk keeps its clock running after the script stops sending, so the duration bounds the fill.
  taskset -c 1 wrk -t1 -c10 -d"${FILL_SECS:-60}s" -s "$TMP/fill.lua" "$mem_url/" >"$TMP/fill.out" 2>&1 || true
  awk '/requests in/ {n = $1} END {print n + 0}' "$TMP/fill.out"
}
half=$((OBJECTS / 2))
log "memory: filling cuttle with $OBJECTS objects of 1 KiB"
rss0=$(rss_kib "${PID[cuttle_mem]}")
sent1=$(fill 0 "$half")
sleep 1
rss1=$(rss_kib "${PID[cuttle_mem]}")
sent2=$(fill "$half" "$OBJECTS")
sleep 1
rss2=$(rss_kib "${PID[cuttle_mem]}")
first=$(curl -s -D - -o /dev/null "$mem_url/obj/2" | tr -d '\r' | grep -i '^cache-status:' || true)
last=$(curl -s -D - -o /dev/null "$mem_url/obj/$OBJECTS" | tr -d '\r' | grep -i '^cache-status:' || true)
echo
echo "Memory tier, $((sent1 + sent2)) objects of 1 KiB: RSS $((rss0 / 1024)) MiB -> $((rss1 / 1024)) MiB" \
  "(after $sent1) -> $((rss2 / 1024)) MiB;" \
  "$(awk -v a="$rss0" -v c="$rss2" -v n="$((sent1 + sent2))" 'BEGIN {
    if (n == 0) { printf "no objects sent"; exit }
    per = (c - a) * 1024 / n; printf "%.0f bytes per object overall (%.0f beyond the 1024-byte body)", per, per - 1024 }')," \
  "$(awk -v b="$rss1" -v c="$rss2" -v n="$sent2" 'BEGIN {
    if (n == 0) { printf "no objects sent in the second half"; exit }
    per = (c - b) * 1024 / n; printf "%.0f bytes per object over the second half (%.0f beyond the body)", per, per - 1024 }')."
echo "Check: /obj/2 -> ${first:-no Cache-Status}; /obj/$OBJECTS -> ${last:-no Cache-Status}."
