#!/usr/bin/env bash
# Gateway-core benchmark: the fake upstream directly, nginx in front of it, cutover in front of it.
#
#   bash bench/run.sh            (or `make bench`, which builds first)
#
# Everything runs on this machine, on 127.0.0.1 only, and stops by itself (about 65 s with the
# defaults). Nothing is pinned: wrk, the simulator and the proxy under test share all cores, so
# a proxy's CPU use slows the simulator and wrk too; that is part of what is measured.
#
# Targets (from the spec):
#   cutover throughput >= 0.8 x nginx's       cutover's added p99 (vs direct) <= 1 ms
#   cutover RSS <= 64 MiB under load and with 2,000 idle client connections
#   streaming adds <= 1 ms to time to first byte (median, direct vs through cutover)
#
# Environment knobs: CUTOVER_BIN (default build/cutover), BENCH_DURATION (s, default 10),
# BENCH_WARMUP (s, default 2), BENCH_CONNECTIONS (64), BENCH_THREADS (wrk threads, 2),
# BENCH_IDLE (idle connections, 2000), BENCH_IDLE_HOLD (s, 6), BENCH_TTFB_COUNT (200),
# SIM_THREADS (simulator event-loop threads, 1), BENCH_ACCESS_LOG_RUN (1: extra cutover run with
# the access log written to /dev/null; 0 skips it), BENCH_STRICT (1: exit 1 if a target is missed).
# The summary is printed and written to bench/out/latest.md.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BENCH="$ROOT/bench"
# shellcheck source=bench/common.sh
source "$BENCH/common.sh"
BIN="${CUTOVER_BIN:-$ROOT/build/cutover}"
DURATION="${BENCH_DURATION:-10}"
WARMUP="${BENCH_WARMUP:-2}"
CONNECTIONS="${BENCH_CONNECTIONS:-64}"
WRK_THREADS="${BENCH_THREADS:-2}"
IDLE_COUNT="${BENCH_IDLE:-2000}"
IDLE_HOLD="${BENCH_IDLE_HOLD:-6}"
TTFB_COUNT="${BENCH_TTFB_COUNT:-200}"
SIM_THREADS="${SIM_THREADS:-1}"
ACCESS_LOG_RUN="${BENCH_ACCESS_LOG_RUN:-1}"
STRICT="${BENCH_STRICT:-0}"
PACE_MS="${BENCH_PACE_MS:-20}"
PACED_DURATION="${BENCH_PACED_DURATION:-6}"
OUT_DIR="$BENCH/out"
REPORT="$OUT_DIR/latest.md"

for tool in wrk nginx python3 curl; do
  command -v "$tool" >/dev/null || { echo "bench: '$tool' not found (run scripts/install-deps.sh)" >&2; exit 1; }
done
[[ -x "$BIN" ]] || { echo "bench: $BIN not found; build first (make build)" >&2; exit 1; }

# 2,000 idle clients plus the gateway's own sockets need more than the usual 1,024 descriptors;
# the limit is inherited by everything started below.
ulimit -n 8192 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if (($(ulimit -n) < IDLE_COUNT + 256)); then
  echo "bench: ulimit -n is $(ulimit -n); the idle-connection test needs $((IDLE_COUNT + 256))" >&2
  exit 1
fi

TMP="$(mktemp -d "${TMPDIR:-/tmp}/cutover-bench.XXXXXX")"
PIDS=()

cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# Drops a pid from the list that cleanup() ends.
forget() {
  local keep=() p
  for p in "${PIDS[@]}"; do [[ "$p" == "$1" ]] || keep+=("$p"); done
  PIDS=("${keep[@]+"${keep[@]}"}")
}

# Stops one process started by this script (TERM, then KILL after 10 s) and forgets it.
stop() {
  local pid="$1"
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  forget "$pid"
}

# One chat completion through PORT must answer 200 before it is load-tested.
check_chat() {
  local name="$1" port="$2" status
  status="$(curl -sS -o "$TMP/check-$name.json" -w '%{http_code}' --max-time 5 \
    -H "Authorization: Bearer $CUTOVER_CLIENT_KEY" -H 'Content-Type: application/json' \
    -d '{"model":"gpt-4","messages":[{"role":"user","content":"hello"}]}' \
    "http://127.0.0.1:$port/v1/chat/completions")" || status="curl-failed"
  if [[ "$status" != 200 ]] || ! grep -q '"choices"' "$TMP/check-$name.json"; then
    echo "bench: $name: sanity request answered $status:" >&2
    cat "$TMP/check-$name.json" >&2 2>/dev/null || true
    return 1
  fi
}

vm_kib() { # vm_kib PID FIELD  -> value in KiB from /proc/PID/status (0 if gone)
  local key value rest
  while read -r key value rest; do
    [[ "$key" == "$2:" ]] && { echo "$value"; return 0; }
  done <"/proc/$1/status" 2>/dev/null
  echo 0
}

# Samples VmRSS of PID every 100 ms until STOPFILE exists; keeps the peak (KiB) in OUTFILE.
rss_sampler() {
  local pid="$1" outfile="$2" stopfile="$3" peak=0 now
  while [[ ! -e "$stopfile" ]] && kill -0 "$pid" 2>/dev/null; do
    now="$(vm_kib "$pid" VmRSS)"
    ((now > peak)) && peak="$now"
    echo "$peak" >"$outfile"
    sleep 0.1
  done
}

kv() { # kv KEY FILE -> value of KEY=value on the first matching BENCH/TTFB line
  grep -oE "(^| )$1=[^ ]+" "$2" | head -1 | cut -d= -f2
}

# cpu_ticks PID...: user+system CPU clock ticks of these processes and their direct children
# (nginx's workers are children of its master; cutover's workers are threads, already included).
cpu_ticks() {
  local total=0 pid child stat fields
  for pid in "$@"; do
    for child in $pid $(cat /proc/"$pid"/task/*/children 2>/dev/null); do
      stat="$(cat "/proc/$child/stat" 2>/dev/null)" || continue
      read -ra fields <<<"${stat##*) }"  # fields[0] is field 3 (state); utime, stime are 14, 15
      total=$((total + fields[11] + fields[12]))
    done
  done
  echo "$total"
}

# run_wrk NAME PORT [PROXY_PID]: warm-up, then the measured run; the BENCH line lands in
# $TMP/wrk-NAME.txt. Also records the CPU time the simulator and the proxy used per request.
run_wrk() {
  local name="$1" port="$2" proxy="${3:-}" url="http://127.0.0.1:$2/v1/chat/completions"
  local sim_before proxy_before=0 requests
  log "$name: warm-up ${WARMUP}s"
  wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"${WARMUP}s" -s "$BENCH/chat.lua" "$url" >"$TMP/warmup-$name.txt"
  log "$name: measuring ${DURATION}s, $CONNECTIONS connections, $WRK_THREADS wrk threads"
  sim_before="$(cpu_ticks "$SIM_PID")"
  [[ -n "$proxy" ]] && proxy_before="$(cpu_ticks "$proxy")"
  wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --timeout 5s --latency \
    -s "$BENCH/chat.lua" "$url" >"$TMP/wrk-$name.txt"
  requests="$(kv requests "$TMP/wrk-$name.txt")"
  CPU_SIM[$name]="$(awk -v t="$(($(cpu_ticks "$SIM_PID") - sim_before))" -v hz="$CLK_TCK" -v n="$requests" \
    'BEGIN { printf "%.1f", n ? t / hz * 1e6 / n : 0 }')"
  CPU_PROXY[$name]="-"
  if [[ -n "$proxy" ]]; then
    CPU_PROXY[$name]="$(awk -v t="$(($(cpu_ticks "$proxy") - proxy_before))" -v hz="$CLK_TCK" -v n="$requests" \
      'BEGIN { printf "%.1f", n ? t / hz * 1e6 / n : 0 }')"
  fi
  sed -e 's/^/    /' "$TMP/wrk-$name.txt" | grep -v '^    BENCH' >&2
  grep -q '^BENCH ' "$TMP/wrk-$name.txt" || { echo "bench: wrk printed no summary for $name" >&2; return 1; }
}

# paced_wrk NAME PORT: the same request, each connection pausing PACE_MS between requests, so
# the machine is far from saturated; the BENCH line lands in $TMP/paced-NAME.txt.
paced_wrk() {
  local name="$1" url="http://127.0.0.1:$2/v1/chat/completions"
  log "$name: paced run ${PACED_DURATION}s, $CONNECTIONS connections, ${PACE_MS} ms between requests"
  BENCH_PACE_MS="$PACE_MS" wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"${PACED_DURATION}s" --timeout 5s \
    --latency -s "$BENCH/chat.lua" "$url" >"$TMP/paced-$name.txt"
  grep -q '^BENCH ' "$TMP/paced-$name.txt" || { echo "bench: wrk printed no summary for paced $name" >&2; return 1; }
}

# start_cutover NAME ACCESS_LOG -> sets CUTOVER_PID and CUTOVER_PORT
start_cutover() {
  local name="$1" access_log="$2"
  cat >"$TMP/$name.yaml" <<EOF
listen: 127.0.0.1:0
workers: 0
access_log: "$access_log"
auth:
  client_keys:
    - name: bench
      key_env: CUTOVER_CLIENT_KEY
providers:
  sim:
    base_url: http://127.0.0.1:$SIM_PORT/v1
    no_api_key: true
    models: {gpt-4: sim-gpt-4.1}
    max_connections: 256
routes:
  - models: [gpt-4]
    provider: sim
EOF
  "$BIN" serve -c "$TMP/$name.yaml" >"$TMP/$name.stdout" 2>"$TMP/$name.stderr" &
  CUTOVER_PID=$!
  PIDS+=("$CUTOVER_PID")
  CUTOVER_PORT="$(wait_for_log "$TMP/$name.stderr" "$CUTOVER_PID" 'listening on')"
  check_chat "$name" "$CUTOVER_PORT"
  log "$name: pid $CUTOVER_PID on 127.0.0.1:$CUTOVER_PORT ($(grep -oE 'with [0-9]+ workers' "$TMP/$name.stderr" | head -1)), access_log $access_log"
}

# cutover_load_run NAME: wrk against the running cutover while sampling its RSS.
cutover_load_run() {
  local name="$1"
  rm -f "$TMP/stop-sampler"
  rss_sampler "$CUTOVER_PID" "$TMP/rss-$name" "$TMP/stop-sampler" &
  local sampler=$!
  PIDS+=("$sampler")
  run_wrk "$name" "$CUTOVER_PORT" "$CUTOVER_PID"
  touch "$TMP/stop-sampler"
  wait "$sampler" 2>/dev/null || true
  forget "$sampler"
  RSS_PEAK[$name]="$(cat "$TMP/rss-$name" 2>/dev/null || echo 0)"
  RSS_HWM[$name]="$(vm_kib "$CUTOVER_PID" VmHWM)"
  log "$name: peak VmRSS during the run $((${RSS_PEAK[$name]} / 1024)) MiB, VmHWM $((${RSS_HWM[$name]} / 1024)) MiB"
}

# idle_round N: IDLE_COUNT idle keep-alive connections to cutover, held IDLE_HOLD seconds, while
# sampling its VmRSS and descriptor count; fills IDLE_RSS[N], IDLE_FDS[N], IDLE_OK[N],
# IDLE_STILL_OPEN[N] and RSS_AFTER_IDLE[N].
idle_round() {
  local n="$1" pid now fds
  log "cutover: round $n, opening $IDLE_COUNT idle keep-alive connections for ${IDLE_HOLD}s"
  python3 "$BENCH/idle_connections.py" --port "$CUTOVER_PORT" --count "$IDLE_COUNT" \
    --hold "$IDLE_HOLD" --request chat >"$TMP/idle-$n.txt" 2>"$TMP/idle-$n.stderr" &
  pid=$!
  PIDS+=("$pid")
  for _ in $(seq 600); do
    grep -q '^READY' "$TMP/idle-$n.txt" 2>/dev/null && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if ! grep -q '^READY' "$TMP/idle-$n.txt"; then
    echo "bench: the idle connections did not open:" >&2
    cat "$TMP/idle-$n.stderr" >&2
    exit 1
  fi
  IDLE_RSS[$n]=0
  IDLE_FDS[$n]=0
  for _ in $(seq $((IDLE_HOLD * 2 - 2))); do  # sample while they are held (0.5 s steps)
    now="$(vm_kib "$CUTOVER_PID" VmRSS)"
    ((now > ${IDLE_RSS[$n]})) && IDLE_RSS[$n]="$now"
    fds="$(find "/proc/$CUTOVER_PID/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)"
    ((fds > ${IDLE_FDS[$n]})) && IDLE_FDS[$n]="$fds"
    sleep 0.5
  done
  wait "$pid" || { echo "bench: idle_connections.py failed:" >&2; cat "$TMP/idle-$n.stderr" >&2; exit 1; }
  forget "$pid"
  IDLE_STILL_OPEN[$n]="$(kv still_open "$TMP/idle-$n.txt")"
  IDLE_OK[$n]="$(kv ok "$TMP/idle-$n.txt")"
  sleep 1
  RSS_AFTER_IDLE[$n]="$(vm_kib "$CUTOVER_PID" VmRSS)"
  log "cutover: round $n: VmRSS $((${IDLE_RSS[$n]} / 1024)) MiB with them open, ${IDLE_FDS[$n]} fds; $(grep '^READY' "$TMP/idle-$n.txt"); still open after the hold: ${IDLE_STILL_OPEN[$n]}; VmRSS after closing $((${RSS_AFTER_IDLE[$n]} / 1024)) MiB"
}

# Notes, once a second, whether a compiler or linker is running beside the benchmark (their CPU
# use makes the numbers noisy); the count of such seconds goes into the report.
busy_monitor() {
  local seconds=0 found
  while :; do
    found="$(cat /proc/[0-9]*/comm 2>/dev/null | grep -cxE 'cc1plus|cc1|ld|ld\.gold|ld\.lld|lto1|collect2|rustc' || true)"
    [[ "$found" == 0 ]] || seconds=$((seconds + 1))
    echo "$seconds" >"$TMP/busy-seconds"
    sleep 1
  done
}

declare -A RSS_PEAK RSS_HWM CPU_SIM CPU_PROXY
declare -a IDLE_RSS IDLE_FDS IDLE_OK IDLE_STILL_OPEN RSS_AFTER_IDLE
CLK_TCK="$(getconf CLK_TCK)"
export CUTOVER_CLIENT_KEY="bench-$RANDOM$RANDOM"
mkdir -p "$OUT_DIR"
LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
STARTED="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
busy_monitor &
PIDS+=("$!")
if [[ "$(cat /proc/[0-9]*/comm 2>/dev/null | grep -cxE 'cc1plus|cc1|ld|lto1|collect2|rustc' || true)" != 0 ]]; then
  log "warning: a compiler or linker is running; the numbers will be noisy"
fi
log "all processes (wrk, simulator, nginx/cutover) share $(nproc) cores, nothing pinned; load average $LOAD_BEFORE"

# --- the fake upstream -------------------------------------------------------------------------
"$BIN" simulate provider --port 0 --profile fast --threads "$SIM_THREADS" \
  >"$TMP/sim.stdout" 2>"$TMP/sim.stderr" &
SIM_PID=$!
PIDS+=("$SIM_PID")
SIM_PORT="$(wait_for_log "$TMP/sim.stderr" "$SIM_PID" 'listening on')"
check_chat direct "$SIM_PORT"
log "simulator: pid $SIM_PID on 127.0.0.1:$SIM_PORT (profile fast, $SIM_THREADS thread(s))"

# --- (a) direct -------------------------------------------------------------------------------
run_wrk direct "$SIM_PORT"
paced_wrk direct "$SIM_PORT"

# --- (b) nginx -> simulator --------------------------------------------------------------------
NGINX_PORT="$(free_port)"
mkdir -p "$TMP/nginx"
NGINX_USER=""
[[ "$(id -u)" == 0 ]] && NGINX_USER="user root root;"  # workers would otherwise drop to nobody
cat >"$TMP/nginx/nginx.conf" <<EOF
daemon off;
worker_processes auto;
$NGINX_USER
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $TMP/nginx/client_body;
  proxy_temp_path $TMP/nginx/proxy;
  fastcgi_temp_path $TMP/nginx/fastcgi;
  uwsgi_temp_path $TMP/nginx/uwsgi;
  scgi_temp_path $TMP/nginx/scgi;
  upstream sim {
    server 127.0.0.1:$SIM_PORT;
    keepalive 64;
  }
  server {
    listen 127.0.0.1:$NGINX_PORT;
    location / {
      proxy_pass http://sim;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
EOF
nginx -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" -e "$TMP/nginx/error.log" \
  >"$TMP/nginx/stdout" 2>&1 &
NGINX_PID=$!
PIDS+=("$NGINX_PID")
wait_for_tcp "$NGINX_PORT" "$NGINX_PID" "$TMP/nginx/error.log"
check_chat nginx "$NGINX_PORT"
log "nginx: pid $NGINX_PID on 127.0.0.1:$NGINX_PORT ($(nginx -v 2>&1 | cut -d/ -f2), worker_processes auto)"
run_wrk nginx "$NGINX_PORT" "$NGINX_PID"
paced_wrk nginx "$NGINX_PORT"
stop "$NGINX_PID"

# --- (c) cutover -> simulator, access log off ---------------------------------------------------
start_cutover cutover off
RSS_START="$(vm_kib "$CUTOVER_PID" VmRSS)"
cutover_load_run cutover
paced_wrk cutover "$CUTOVER_PORT"

# Memory with idle keep-alive clients: each connection is served one chat completion first, then
# sits in cutover's keep-alive wait. Two rounds: a second round that needs more memory than the
# first would point at per-connection memory that is not reused.
for round in 1 2; do
  idle_round "$round"
done

# Streaming time to first byte, direct vs through cutover, alternating requests.
log "streaming TTFB: $TTFB_COUNT sequential requests each, direct and through cutover"
python3 "$BENCH/ttfb.py" --target "direct=$SIM_PORT" --target "cutover=$CUTOVER_PORT" \
  --count "$TTFB_COUNT" >"$TMP/ttfb.txt"
sed -e 's/^/    /' "$TMP/ttfb.txt" >&2
grep '^TTFB name=direct ' "$TMP/ttfb.txt" >"$TMP/ttfb-direct.txt"
grep '^TTFB name=cutover ' "$TMP/ttfb.txt" >"$TMP/ttfb-cutover.txt"
RSS_FINAL="$(vm_kib "$CUTOVER_PID" VmRSS)"
HWM_FINAL="$(vm_kib "$CUTOVER_PID" VmHWM)"
stop "$CUTOVER_PID"

# --- (d) cutover with the access log on (written to /dev/null) --------------------------------
if [[ "$ACCESS_LOG_RUN" == 1 ]]; then
  start_cutover cutover-log /dev/null
  cutover_load_run cutover-log
  stop "$CUTOVER_PID"
fi
stop "$SIM_PID"
# Warnings and errors the servers logged during the whole run (beyond start-up and shutdown).
log_problems() { { grep -ciE '\b(warn|warning|error|critical|alert|emerg)\b' "$@" 2>/dev/null || true; } | awk -F: '{ n += $NF } END { print n + 0 }'; }
PROBLEMS_CUTOVER="$(log_problems "$TMP"/cutover*.stderr)"
PROBLEMS_SIM="$(log_problems "$TMP/sim.stderr")"
PROBLEMS_NGINX="$(log_problems "$TMP/nginx/error.log")"
grep -hiE '\b(warn|warning|error|critical)\b' "$TMP"/cutover*.stderr 2>/dev/null | head -5 | sed -e 's/^/    cutover log: /' >&2 || true
LOAD_AFTER="$(cut -d' ' -f1-3 /proc/loadavg)"
BUSY_SECONDS="$(cat "$TMP/busy-seconds" 2>/dev/null || echo 0)"
FINISHED_IN=$SECONDS

# --- summary -----------------------------------------------------------------------------------
num() { awk -v x="$1" 'BEGIN { printf "%.2f", x }'; }
ms() { awk -v x="$1" 'BEGIN { v = x / 1000; if (v > -0.005 && v < 0.005) v = 0; printf "%.2f", v }'; }
mib() { awk -v x="$1" 'BEGIN { printf "%.1f", x / 1024 }'; }
verdict() { awk -v ok="$1" 'BEGIN { print (ok ? "met" : "**missed**") }'; }

RUNS=(direct nginx cutover)
[[ "$ACCESS_LOG_RUN" == 1 ]] && RUNS+=(cutover-log)
declare -A LABEL=([direct]="simulator directly" [nginx]="nginx → simulator"
  [cutover]="cutover → simulator" [cutover-log]="cutover → simulator, access log → /dev/null")

D99="$(kv p99_us "$TMP/wrk-direct.txt")"
RPS_NGINX="$(kv rps "$TMP/wrk-nginx.txt")"
RPS_CUTOVER="$(kv rps "$TMP/wrk-cutover.txt")"
RATIO="$(awk -v a="$RPS_CUTOVER" -v b="$RPS_NGINX" 'BEGIN { printf "%.2f", a / b }')"
ADDED_P99_CUTOVER="$(awk -v a="$(kv p99_us "$TMP/wrk-cutover.txt")" -v d="$D99" 'BEGIN { print a - d }')"
ADDED_P99_NGINX="$(awk -v a="$(kv p99_us "$TMP/wrk-nginx.txt")" -v d="$D99" 'BEGIN { print a - d }')"
TTFB_D50="$(kv body_p50_us "$TMP/ttfb-direct.txt")"
TTFB_C50="$(kv body_p50_us "$TMP/ttfb-cutover.txt")"
TTFB_D99="$(kv body_p99_us "$TMP/ttfb-direct.txt")"
TTFB_C99="$(kv body_p99_us "$TMP/ttfb-cutover.txt")"
TTFB_ADDED50="$(awk -v a="$TTFB_C50" -v d="$TTFB_D50" 'BEGIN { print a - d }')"
TTFB_ADDED99="$(awk -v a="$TTFB_C99" -v d="$TTFB_D99" 'BEGIN { print a - d }')"
RSS_LOAD_MAX="${RSS_PEAK[cutover]}"
[[ "$ACCESS_LOG_RUN" == 1 ]] && ((${RSS_PEAK[cutover-log]} > RSS_LOAD_MAX)) && RSS_LOAD_MAX="${RSS_PEAK[cutover-log]}"

OK_RATIO="$(awk -v r="$RATIO" 'BEGIN { print (r >= 0.8) }')"
OK_P99="$(awk -v a="$ADDED_P99_CUTOVER" 'BEGIN { print (a <= 1000) }')"
OK_RSS_LOAD="$(awk -v r="$RSS_LOAD_MAX" 'BEGIN { print (r <= 64 * 1024) }')"
IDLE_RSS_MAX="${IDLE_RSS[1]}"
((${IDLE_RSS[2]} > IDLE_RSS_MAX)) && IDLE_RSS_MAX="${IDLE_RSS[2]}"
OK_RSS_IDLE="$(awk -v r="$IDLE_RSS_MAX" -v o1="${IDLE_STILL_OPEN[1]}" -v o2="${IDLE_STILL_OPEN[2]}" -v n="$IDLE_COUNT" \
  'BEGIN { print (r <= 64 * 1024 && o1 == n && o2 == n) }')"
OK_TTFB="$(awk -v a="$TTFB_ADDED50" 'BEGIN { print (a <= 1000) }')"
PACED_ADDED_P99="$(awk -v a="$(kv p99_us "$TMP/paced-cutover.txt")" -v d="$(kv p99_us "$TMP/paced-direct.txt")" 'BEGIN { print a - d }')"
PACED_ADDED_P99_NGINX="$(awk -v a="$(kv p99_us "$TMP/paced-nginx.txt")" -v d="$(kv p99_us "$TMP/paced-direct.txt")" 'BEGIN { print a - d }')"
OK_PACED_P99="$(awk -v a="$PACED_ADDED_P99" 'BEGIN { print (a <= 1000) }')"

{
  echo "## cutover gateway-core benchmark — $STARTED"
  echo
  echo "- machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) RAM; loopback only"
  echo "- all processes (wrk, simulator, nginx or cutover) share these $(nproc) cores; nothing is pinned"
  echo "- load average before: $LOAD_BEFORE; after: $LOAD_AFTER; seconds in which a compiler/linker was running alongside: $BUSY_SECONDS of ${FINISHED_IN}"
  echo "- cutover: \`$BIN\` ($(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet HEAD -- src 2>/dev/null || echo ', src/ modified'))$( [[ -f "$ROOT/build/CMakeCache.txt" ]] && grep -oE 'CMAKE_BUILD_TYPE:STRING=.*' "$ROOT/build/CMakeCache.txt" | sed 's/.*=/, build type /'), workers: one per core; nginx $(nginx -v 2>&1 | cut -d/ -f2), worker_processes auto, upstream keepalive 64"
  echo "- warning/error lines logged: cutover $PROBLEMS_CUTOVER, simulator $PROBLEMS_SIM, nginx $PROBLEMS_NGINX"
  echo "- wrk: $WRK_THREADS threads, $CONNECTIONS connections, ${DURATION}s measured after ${WARMUP}s warm-up, small non-streaming chat-completion POST; simulator profile \`fast\`, $SIM_THREADS thread(s)"
  echo
  echo "| run | requests/s | p50 ms | p90 ms | p99 ms | max ms | errors (connect/read/write/timeout) | non-2xx | simulator CPU µs/req | proxy CPU µs/req |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  for run in "${RUNS[@]}"; do
    f="$TMP/wrk-$run.txt"
    printf '| %s | %s | %s | %s | %s | %s | %s/%s/%s/%s | %s | %s | %s |\n' "${LABEL[$run]}" \
      "$(awk -v x="$(kv rps "$f")" 'BEGIN { printf "%.0f", x }')" \
      "$(ms "$(kv p50_us "$f")")" "$(ms "$(kv p90_us "$f")")" "$(ms "$(kv p99_us "$f")")" \
      "$(ms "$(kv max_us "$f")")" "$(kv connect_errors "$f")" "$(kv read_errors "$f")" \
      "$(kv write_errors "$f")" "$(kv timeouts "$f")" "$(kv non2xx "$f")" \
      "${CPU_SIM[$run]}" "${CPU_PROXY[$run]}"
  done
  echo
  echo "| paced: $CONNECTIONS connections, ${PACE_MS} ms pause between requests, ${PACED_DURATION}s | requests/s | p50 ms | p99 ms | added p99 vs direct ms | non-2xx |"
  echo "|---|---:|---:|---:|---:|---:|"
  for run in direct nginx cutover; do
    f="$TMP/paced-$run.txt"
    printf '| %s | %s | %s | %s | %s | %s |\n' "${LABEL[$run]}" \
      "$(awk -v x="$(kv rps "$f")" 'BEGIN { printf "%.0f", x }')" "$(ms "$(kv p50_us "$f")")" \
      "$(ms "$(kv p99_us "$f")")" \
      "$(ms "$(awk -v a="$(kv p99_us "$f")" -v d="$(kv p99_us "$TMP/paced-direct.txt")" 'BEGIN { print a - d }')")" \
      "$(kv non2xx "$f")"
  done
  echo
  echo "| streaming (SSE), $TTFB_COUNT sequential requests | first header byte p50 ms | first body byte p50 ms | p90 ms | p99 ms |"
  echo "|---|---:|---:|---:|---:|"
  for run in direct cutover; do
    f="$TMP/ttfb-$run.txt"
    printf '| %s | %s | %s | %s | %s |\n' "${LABEL[$run]}" "$(ms "$(kv header_p50_us "$f")")" \
      "$(ms "$(kv body_p50_us "$f")")" "$(ms "$(kv body_p90_us "$f")")" "$(ms "$(kv body_p99_us "$f")")"
  done
  echo
  echo "| cutover memory (VmRSS) | MiB |"
  echo "|---|---:|"
  echo "| after start, idle | $(mib "$RSS_START") |"
  echo "| peak during the wrk run (100 ms samples) | $(mib "${RSS_PEAK[cutover]}") |"
  [[ "$ACCESS_LOG_RUN" == 1 ]] && echo "| peak during the wrk run with the access log on | $(mib "${RSS_PEAK[cutover-log]}") |"
  for n in 1 2; do
    echo "| round $n: with $IDLE_COUNT idle keep-alive client connections open (peak; ${IDLE_FDS[$n]} fds; ${IDLE_OK[$n]}/$IDLE_COUNT served a request first; ${IDLE_STILL_OPEN[$n]} still open at the end) | $(mib "${IDLE_RSS[$n]}") |"
    echo "| round $n: 1 s after they closed | $(mib "${RSS_AFTER_IDLE[$n]}") |"
  done
  echo "| after the TTFB test; VmHWM (lifetime peak) | $(mib "$RSS_FINAL"); $(mib "$HWM_FINAL") |"
  echo
  echo "| target | measured | verdict |"
  echo "|---|---:|---|"
  echo "| cutover throughput ≥ 0.8 × nginx | $RATIO × ($(num "$RPS_CUTOVER") vs $(num "$RPS_NGINX") req/s) | $(verdict "$OK_RATIO") |"
  echo "| cutover added p99 ≤ 1 ms (p99 − direct p99), at saturation | $(ms "$ADDED_P99_CUTOVER") ms (nginx adds $(ms "$ADDED_P99_NGINX") ms) | $(verdict "$OK_P99") |"
  echo "| cutover added p99 ≤ 1 ms, paced below saturation | $(ms "$PACED_ADDED_P99") ms (nginx adds $(ms "$PACED_ADDED_P99_NGINX") ms) | $(verdict "$OK_PACED_P99") |"
  echo "| RSS ≤ 64 MiB under load | $(mib "$RSS_LOAD_MAX") MiB | $(verdict "$OK_RSS_LOAD") |"
  echo "| RSS ≤ 64 MiB with $IDLE_COUNT idle connections | $(mib "$IDLE_RSS_MAX") MiB | $(verdict "$OK_RSS_IDLE") |"
  echo "| streaming adds ≤ 1 ms to TTFB (median first body byte) | $(ms "$TTFB_ADDED50") ms (p99: $(ms "$TTFB_ADDED99") ms) | $(verdict "$OK_TTFB") |"
} >"$REPORT"

echo
cat "$REPORT"
echo
echo "(written to ${REPORT#"$ROOT/"})"
if [[ "$STRICT" == 1 ]] && ((!(OK_RATIO && OK_P99 && OK_RSS_LOAD && OK_RSS_IDLE && OK_TTFB))); then
  exit 1
fi
