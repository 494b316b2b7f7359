# Helpers the bench scripts share (sourced, not run): loopback ports from the kernel, a wait for
# a server to accept on one, and the common part of an nginx config.

# free_port: a port on 127.0.0.1 the kernel had free a moment ago.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
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
