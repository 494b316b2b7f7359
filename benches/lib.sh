# Helpers the bench scripts share (sourced, not run): loopback ports from the kernel, a wait for
# a server to accept on one, and the common part of an nginx config.

# free_port: a port on 127.0.0.1 the kernel had free a moment ago.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# use_scratch PREFIX: makes TMP, a fresh directory below /tmp (readable by nginx workers, which
# may run as another user), and arranges that on exit every pid in STOP_PIDS is killed and
# waited for and TMP is removed.
use_scratch() {
  TMP=$(mktemp -d "/tmp/$1.XXXXXX")
  chmod 755 "$TMP"
  STOP_PIDS=()
  trap stop_scratch EXIT
  trap 'exit 1' INT TERM
}

stop_scratch() {
  local p
  for p in "${STOP_PIDS[@]}"; do
    kill "$p" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  rm -rf "$TMP"
}

# pid_from_file FILE: the pid in FILE once a daemon has written it (waits up to 10 s).
pid_from_file() {
  local f=$1 tries=100
  while [ "$tries" -gt 0 ] && ! [ -s "$f" ]; do
    sleep 0.1
    tries=$((tries - 1))
  done
  head -n1 "$f" | tr -d ' \n'
}

# wait_port PORT [SECONDS]: wait (15 s unless told) until something accepts on 127.0.0.1:PORT.
wait_port() {
  local port=$1 tries=$((${2:-15} * 10))
  while [ "$tries" -gt 0 ]; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      return 0
    fi
    sleep 0.1
    tries=$((tries - 1))
  done
  return 1
}

# write_nginx_conf DIR: writes DIR/nginx.conf, the settings every nginx of the benches shares
# (origins and proxies) around the rest of the http block, which is read from stdin.
write_nginx_conf() {
  local d=$1
  {
    cat <<EOF
user root;
worker_processes 1;
pid $d/nginx.pid;
error_log $d/error.log warn;
events { worker_connections 4096; }
http {
  default_type application/octet-stream;
  keepalive_requests 1000000;
  client_body_temp_path $d/body;
  proxy_temp_path $d/proxy;
  fastcgi_temp_path $d/fastcgi;
  uwsgi_temp_path $d/uwsgi;
  scgi_temp_path $d/scgi;
EOF
    cat
    echo "}"
  } >"$d/nginx.conf"
}

# haproxy_cache_config PORT ORIGIN_PORT [PIDFILE]: HAProxy's cache on PORT in front of the
# origin, one thread, no log, as every bench runs it (a hit gets `X-Cache: HIT`). With PIDFILE
# it daemonises and writes its pid there; without, it stays in the foreground (`-db`).
haproxy_cache_config() {
  local global=""
  [ -n "${3:-}" ] && global=$'\n  daemon\n  pidfile '"$3"
  cat <<EOF
global
  nbthread 1$global
defaults
  mode http
  option http-keep-alive
  timeout connect 5s
  timeout client 30s
  timeout server 30s
cache c
  total-max-size 256
  max-object-size 2000000
  max-age 3600
frontend f
  bind 127.0.0.1:$1
  http-request cache-use c
  http-response cache-store c
  http-response set-header X-Cache HIT if { res.cache_hit }
  default_backend b
backend b
  http-reuse always
  server origin 127.0.0.1:$2
EOF
}

# write_nginx_cache_conf DIR PORT ORIGIN_PORT: DIR/nginx.conf for nginx's proxy_cache on PORT in
# front of the origin, as every bench runs it (access log buffered, keep-alive to the origin; a
# hit says so in `X-Cache-Status`).
write_nginx_cache_conf() {
  local d=$1 port=$2 origin=$3
  mkdir -p "$d/cache"
  write_nginx_conf "$d" <<EOF
  access_log $d/access.log combined buffer=64k flush=5s;
  proxy_cache_path $d/cache levels=1:2 keys_zone=c:10m max_size=1g inactive=60m use_temp_path=off;
  upstream origin { server 127.0.0.1:$origin; keepalive 32; }
  server {
    listen 127.0.0.1:$port;
    location / {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_cache c;
      add_header X-Cache-Status \$upstream_cache_status;
    }
  }
EOF
}
