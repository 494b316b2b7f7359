# Helpers the bench scripts share (sourced, not run): loopback ports from the kernel, and a wait
# for a server to accept on one.

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
