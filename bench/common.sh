# Helpers the benchmarks share (sourced by every bench/*.sh that starts servers): free ports and
# waiting for servers, the nginx configurations they run and the cutover configuration of the
# counted chat path. Everything they start listens on 127.0.0.1.

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_for_tcp PORT [PID LOG]: until something accepts on 127.0.0.1:PORT; fails (showing LOG) if
# it does not within 10 s or process PID exits first.
wait_for_tcp() {
  local port="$1" pid="${2:-}"
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    [[ -z "$pid" ]] || kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "bench: nothing listening on 127.0.0.1:$port${pid:+; the log of process $pid:}" >&2
  [[ -z "${3:-}" ]] || cat "$3" >&2 2>/dev/null || true
  return 1
}

# wait_for_log FILE PID TEXT [TENTHS]: prints the port after "TEXT 127.0.0.1:" once FILE has it
# (cutover logs "listening on 127.0.0.1:PORT" for a listener on port 0); fails, showing FILE, if
# it does not within TENTHS tenths of a second (100) or process PID exits first.
wait_for_log() {
  local port
  for _ in $(seq "${4:-100}"); do
    port="$(grep -oE "$3 127\.0\.0\.1:[0-9]+" "$1" 2>/dev/null | head -1 | sed 's/.*://' || true)"
    [[ -n "$port" ]] && { echo "$port"; return 0; }
    kill -0 "$2" 2>/dev/null || break
    sleep 0.1
  done
  cat "$1" >&2
  echo "bench: process $2 did not log '$3'" >&2
  return 1
}

# nginx_conf DIR BODY: a one-worker nginx (pid, logs and temporary files under DIR) whose http
# block is BODY. As root its worker stays root: it would otherwise drop to nobody, which cannot
# read DIR.
nginx_conf() {
  local dir="$1" user=""
  [[ "$(id -u)" == 0 ]] && user="user root root;"
  mkdir -p "$dir"
  cat >"$dir/nginx.conf" <<EOF
daemon off;
worker_processes 1;
$user
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 16384; }
http {
  access_log off;
  client_body_temp_path $dir/client_body;
  proxy_temp_path $dir/proxy;
  fastcgi_temp_path $dir/fastcgi;
  uwsgi_temp_path $dir/uwsgi;
  scgi_temp_path $dir/scgi;
$2
}
EOF
}

# nginx_proxy_block PORT UPSTREAM_PORT: the http block of nginx as the reference reverse proxy,
# listening on PORT, with keep-alive connections to the upstream on UPSTREAM_PORT.
nginx_proxy_block() {
  cat <<EOF
  upstream bench_upstream {
    server 127.0.0.1:$2;
    keepalive 256;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
  }
  server {
    listen 127.0.0.1:$1 backlog=4096;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    location / {
      proxy_pass http://bench_upstream;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
EOF
}

# chat_cutover_config FILE UPSTREAM_PORT ACCESS_LOG: cutover as the counted chat benchmarks run
# it (one worker; client-key auth with the key in CUTOVER_CLIENT_KEY, model mapping, prices,
# metrics, the access log buffered to ACCESS_LOG) in front of the upstream on UPSTREAM_PORT.
chat_cutover_config() {
  cat >"$1" <<EOF
listen: 127.0.0.1:0
workers: 1
access_log: "$3"
metrics: true
auth:
  client_keys:
    - name: bench
      key_env: CUTOVER_CLIENT_KEY
providers:
  openai:
    base_url: http://127.0.0.1:$2/v1
    no_api_key: true
    models: {gpt-4: gpt-4.1-2025-04-14}
    max_connections: 256
    prices: {gpt-4.1-2025-04-14: {input: 2.00, output: 8.00}}
routes:
  - models: [gpt-4]
    provider: openai
EOF
}
