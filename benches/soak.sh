#!/usr/bin/env bash
# Soak test for cuttle: minutes of mixed traffic on loopback, watching for errors and leaks.
#
# Question: under a steady mix of forward and reverse traffic (hits, misses, CONNECT tunnels,
# uploads, slow clients and floods of idle connections), does cuttle keep answering without
# errors, and do its resident memory and open file descriptors stay flat after warm-up?
#
# Everything runs on 127.0.0.1 with free ports: a Python origin (cacheable and uncacheable
# objects, upload sink), a TCP echo server as the CONNECT target (its port is the only one in
# the soak config's forward.connect_ports), and cuttle with one forward and one reverse port.
# A Python driver runs the traffic for SOAK_SECS and prints one line every SAMPLE_SECS:
# requests done, errors, cuttle's RSS (VmRSS) and open fds. The script stops by itself; a trap
# stops every process it started and removes its temp dir.
#
# Usage: benches/soak.sh                  (SOAK_SECS=180 SAMPLE_SECS=15)
#        SOAK_SECS=60 benches/soak.sh
# Env:   SOAK_SECS, SAMPLE_SECS, CUTTLE (binary; default target/release/cuttle, else
#        target/debug/cuttle), IDLE_FLOOD (idle connections per flood, 300).
# Exit:  0 when there were no errors and RSS after warm-up (the last sample against the one
#        at a third of the run) grew by less than 20 %; 1 otherwise.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

SOAK_SECS=${SOAK_SECS:-180}
SAMPLE_SECS=${SAMPLE_SECS:-15}
IDLE_FLOOD=${IDLE_FLOOD:-300}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
if [ -z "${CUTTLE:-}" ]; then
  CUTTLE=$ROOT/target/release/cuttle
  [ -x "$CUTTLE" ] || CUTTLE=$ROOT/target/debug/cuttle
fi
[ -x "$CUTTLE" ] || { echo "no cuttle binary: cargo build --release" >&2; exit 2; }

TMP=$(mktemp -d /tmp/cuttle-soak.XXXXXX)
declare -a PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.5
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT

ORIGIN=$(free_port); ECHO=$(free_port); FWD=$(free_port); REV=$(free_port)

cat >"$TMP/origin.py" <<'EOF'
import socket, socketserver, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def send(self, body, cc):
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", cc)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
    def do_GET(self):
        size = 4096 if "/small/" in self.path else 262144
        body = (self.path.encode() * (size // len(self.path) + 1))[:size]
        self.send(body, "no-store" if "/miss/" in self.path else "public, max-age=3600")
    do_HEAD = do_GET
    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        left = n
        while left > 0:
            chunk = self.rfile.read(min(left, 65536))
            if not chunk: break
            left -= len(chunk)
        self.send(str(n - left).encode(), "no-store")

class S(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512

class Echo(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
class E(socketserver.BaseRequestHandler):
    def handle(self):
        while True:
            d = self.request.recv(65536)
            if not d: return
            self.request.sendall(d)

e = Echo(("127.0.0.1", int(sys.argv[2])), E)
threading.Thread(target=e.serve_forever, daemon=True).start()
S(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
EOF

cat >"$TMP/cuttle.toml" <<EOF
visible_hostname = "soak"
[[http_port]]
listen = "127.0.0.1:$FWD"
mode = "forward"
[[http_port]]
listen = "127.0.0.1:$REV"
mode = "reverse"
[acl]
localhost = { src = ["127.0.0.0/8"] }
[[http_access]]
allow = ["localhost"]
[[http_access]]
deny = ["all"]
[[site]]
hosts = ["site.example"]
upstream = "app"
[upstream.app]
servers = [{ address = "127.0.0.1:$ORIGIN" }]
[forward]
connect_ports = [$ECHO]
[timeouts]
client_idle = "10s"
[cache.memory]
max_size = "64 MiB"
[cache.disk]
path = "$TMP/cache"
max_size = "256 MiB"
[log]
access_log = "none"
EOF

python3 "$TMP/origin.py" "$ORIGIN" "$ECHO" &
PIDS+=($!)
"$CUTTLE" -c "$TMP/cuttle.toml" >"$TMP/cuttle.log" 2>&1 &
CUTTLE_PID=$!
PIDS+=($CUTTLE_PID)
for _ in $(seq 100); do # up to 10 s for both to listen
  if (exec 3<>/dev/tcp/127.0.0.1/$FWD) 2>/dev/null && (exec 3<>/dev/tcp/127.0.0.1/$ORIGIN) 2>/dev/null; then break; fi
  sleep 0.1
done

echo "# cuttle soak: $(date -u '+%Y-%m-%d %H:%M UTC'), ${SOAK_SECS}s, binary $(basename "$(dirname "$CUTTLE")")/cuttle, $(nproc) cores"
cat >"$TMP/driver.py" <<'EOF'
import os, socket, sys, threading, time
fwd, rev, origin, echo, pid, secs, sample, flood = map(int, sys.argv[1:9])
stop = time.time() + secs
lock = threading.Lock()
count = {}
errors = {}
def bump(d, k):
    with lock: d[k] = d.get(k, 0) + 1

def read_response(s):
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = s.recv(65536)
        if not d: raise IOError("closed before the header")
        buf += d
    head, _, body = buf.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    n = 0
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length": n = int(v)
    while len(body) < n:
        d = s.recv(65536)
        if not d: raise IOError("body cut short")
        body += d
    return status, body

def exchange(port, req, kind, slow=False):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
            if slow:
                for i in range(0, len(req), 7):
                    s.sendall(req[i:i+7]); time.sleep(0.05)
            else:
                s.sendall(req)
            status, _ = read_response(s)
            if status != 200: raise IOError("status %d" % status)
        bump(count, kind)
    except Exception as e:
        bump(errors, "%s: %s" % (kind, str(e)[:60]))

def worker(kind, fn):
    i = 0
    while time.time() < stop:
        fn(i); i += 1

o = "127.0.0.1:%d" % origin
jobs = {
  "fwd-hit": lambda i: exchange(fwd, b"GET http://%s/hit/%d HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % (o.encode(), i % 50, o.encode()), "fwd-hit"),
  "fwd-miss": lambda i: exchange(fwd, b"GET http://%s/miss/small/%d HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % (o.encode(), i, o.encode()), "fwd-miss"),
  "rev-hit": lambda i: exchange(rev, b"GET /hit/small/%d HTTP/1.1\r\nHost: site.example\r\nConnection: close\r\n\r\n" % (i % 50), "rev-hit"),
  "rev-miss": lambda i: exchange(rev, b"GET /miss/%d HTTP/1.1\r\nHost: site.example\r\nConnection: close\r\n\r\n" % i, "rev-miss"),
  "upload": lambda i: exchange(fwd, b"POST http://%s/up HTTP/1.1\r\nHost: %s\r\nContent-Length: 131072\r\nConnection: close\r\n\r\n" % (o.encode(), o.encode()) + b"u" * 131072, "upload"),
  "slow": lambda i: exchange(rev, b"GET /hit/small/%d HTTP/1.1\r\nHost: site.example\r\nConnection: close\r\n\r\n" % (i % 50), "slow", slow=True),
}
def connect(i):
    try:
        with socket.create_connection(("127.0.0.1", fwd), timeout=20) as s:
            s.sendall(b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % (echo, echo))
            buf = b""
            while b"\r\n\r\n" not in buf:
                d = s.recv(4096)
                if not d: raise IOError("closed")
                buf += d
            if not buf.startswith(b"HTTP/1.1 200"): raise IOError(buf[:20].decode("latin-1"))
            msg = os.urandom(16384)
            s.sendall(msg)
            got = b""
            while len(got) < len(msg):
                d = s.recv(65536)
                if not d: raise IOError("tunnel closed")
                got += d
            if got != msg: raise IOError("echo differs")
        bump(count, "connect")
    except Exception as e:
        bump(errors, "connect: %s" % str(e)[:60])
jobs["connect"] = connect
def idle_flood(i):
    socks = []
    try:
        for _ in range(flood):
            socks.append(socket.create_connection(("127.0.0.1", fwd), timeout=5))
        time.sleep(3)
        bump(count, "idle-flood")
    except Exception as e:
        bump(errors, "idle-flood: %s" % str(e)[:60])
    finally:
        for s in socks: s.close()
    time.sleep(2)
jobs["idle-flood"] = idle_flood

threads = [threading.Thread(target=worker, args=(k, f), daemon=True) for k, f in jobs.items()]
for t in threads: t.start()

def rss_kib():
    for line in open("/proc/%d/status" % pid):
        if line.startswith("VmRSS:"): return int(line.split()[1])
def fds(): return len(os.listdir("/proc/%d/fd" % pid))

start = time.time()
samples = []
print("| t (s) | requests | errors | RSS (MiB) | fds |")
print("|---|---|---|---|---|")
while True:
    time.sleep(min(sample, max(0.1, stop - time.time())))
    with lock:
        done = sum(count.values()); errs = sum(errors.values())
    r = rss_kib(); samples.append(r)
    print("| %d | %d | %d | %.1f | %d |" % (time.time() - start, done, errs, r / 1024, fds()), flush=True)
    if time.time() >= stop: break
for t in threads: t.join(timeout=30)
time.sleep(1)
print()
print("done: " + ", ".join("%s %d" % kv for kv in sorted(count.items())))
print("errors: " + (", ".join("%s x%d" % kv for kv in sorted(errors.items())) or "none"))
warm = samples[len(samples) // 3]
growth = (samples[-1] - warm) / warm * 100
print("RSS after warm-up: %.1f MiB at t=%ds -> %.1f MiB at the end (%+.1f %%); fds at rest: %d"
      % (warm / 1024, (len(samples) // 3 + 1) * sample, samples[-1] / 1024, growth, fds()))
sys.exit(0 if not errors and growth < 20 else 1)
EOF
python3 "$TMP/driver.py" "$FWD" "$REV" "$ORIGIN" "$ECHO" "$CUTTLE_PID" "$SOAK_SECS" "$SAMPLE_SECS" "$IDLE_FLOOD"
