#!/usr/bin/env bash
# Pinned reference benchmark (issue #14): the proxy under test alone on one core, the load
# generator and the upstream on the other, nginx and haproxy measured beside cutover in one run.
#
#   bash bench/pinned.sh              (or `make bench-pinned`, which builds first)
#   BENCH_QUICK=1 bash bench/pinned.sh     a short smoke run (1 run × 3 s per row)
#
# Layout. CPU 0 (BENCH_PROXY_CPU) runs only the proxy under test: cutover (`workers: 1`), nginx
# as a reverse proxy (`worker_processes 1`, keepalive upstream) or haproxy (`nbthread 1`), each
# started with `taskset -c 0`; all three stay up for the whole run, only one is loaded at a time.
# CPU 1 (BENCH_LOAD_CPU) runs wrk (1 thread), the upstream (nginx, `worker_processes 1`) and this
# script with its samplers (the script pins itself there first). Other work on the machine is
# not pinned and may land on either core: each row reports what else ran on CPU 0 ("others").
#
# The upstream is nginx answering fixed bodies (bench/pinned.py): for POST /v1/chat/completions
# a 577-byte OpenAI chat.completion with usage, or, when the request's Accept header asks for
# text/event-stream, a 13-event SSE answer (role chunk, 9 content chunks, finish chunk, usage
# chunk, data: [DONE]); for POST /v1/messages an Anthropic Message, or a 13-event Messages
# stream. wrk sends the same request to every target (Accept: text/event-stream on streamed
# rows); cutover sets that header upstream for streamed requests itself, so one provider and
# one route serve both modes and the proxied requests differ only in "stream":true.
#
# cutover runs with every feature a chat request uses today: client-key authentication, model
# mapping (gpt-4 → gpt-4.1-2025-04-14), usage capture and cost (a price for the model),
# normalization, metrics (with an admin listener that the script scrapes at the end), and the
# access log buffered to a file (truncated between rows so the disk does not fill).
#
# Rows, each run: {direct (the upstream itself), nginx, haproxy, cutover} × {plain, sse} × the
# connection counts (1, 32, 256), then cutover's other client/provider paths at 32 connections,
# plain and sse: Messages → OpenAI and Responses → OpenAI (translated), chat → Anthropic
# (translated) and Messages → Anthropic (pass-through). Per row: BENCH_WARMUP s of warm-up, then
# BENCH_DURATION s measured; BENCH_RUNS runs, interleaved (each run does every row); medians.
# Reported per row: req/s, p50, p99 (wrk's histogram), added p50/p99 (the proxy's median minus
# direct's median at the same mode and connections), the proxy's CPU µs per request (utime +
# stime of the process and its children, /proc/PID/stat, over the measured window ÷ requests),
# its peak RSS (process and children, sampled every 0.25 s), the upstream's CPU µs/req, and how
# busy each core was. Then idle keep-alive memory (bench/idle_connections.py: N connections, each
# served one chat completion and then held open, opened in two halves): the average (RSS with all
# open − RSS before) ÷ N and the marginal cost (RSS with all − RSS with the first half) ÷ N/2, for
# cutover, nginx and haproxy after the load rows, and for a second cutover started afresh then
# (a separate process, so that the first one's peak under load is the load's alone).
#
# Targets (issue #14), judged against nginx in the same run:
#   throughput ≥ 0.8 × nginx at c=32 and c=256, plain and sse
#   CPU per request ≤ 1.25 × nginx's (c=32 and c=256, plain and sse)
#   added p99 at c=256 ≤ 1.5 × nginx's added p99 (plain and sse)
#   at c=1, added p50 within 20 µs of nginx's (plain and sse)
#   RSS ≤ 64 MiB under load; ≤ 8 KiB per idle keep-alive connection (the marginal cost, the worse
#   of fresh and after the load: the average of a fresh process also counts what the first burst
#   of connections allocates once, and after the load it reuses memory the load left behind)
#
# Environment knobs: CUTOVER_BIN (default build/cutover), BENCH_QUICK (1: defaults become 1 run,
# 3 s, 1 s warm-up), BENCH_RUNS (3), BENCH_DURATION (s, 10), BENCH_WARMUP (s, 2),
# BENCH_CONNECTIONS ("1 32 256", the connection counts of the main rows),
# BENCH_TRANSLATED_CONNECTIONS (32), BENCH_TRANSLATED (1; 0 skips the other paths),
# BENCH_TARGETS ("direct nginx haproxy cutover"), BENCH_PROXY_CPU (0), BENCH_LOAD_CPU (1),
# BENCH_IDLE (idle connections, 2000; 0 skips the idle test and its target), BENCH_IDLE_HOLD (s, 4), BENCH_STRICT (1: exit 1 if a
# target is missed). haproxy is skipped, and said so, when it is not installed
# (scripts/install-deps.sh installs it). A default run takes about
# RUNS × 32 rows × (WARMUP + DURATION) + 1 min ≈ 20 min; BENCH_QUICK=1 about 3 min.
# Loopback only; every process it starts is stopped on exit. It exits 1 if a check fails or a
# measured request was not a 2xx. The summary is printed and written to bench/out/pinned.md.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BENCH="$ROOT/bench"
# shellcheck source=bench/common.sh
source "$BENCH/common.sh"
BIN="${CUTOVER_BIN:-$ROOT/build/cutover}"
QUICK="${BENCH_QUICK:-0}"
if [[ "$QUICK" == 1 ]]; then
  default_runs=1 default_duration=3 default_warmup=1
else
  default_runs=3 default_duration=10 default_warmup=2
fi
RUNS="${BENCH_RUNS:-$default_runs}"
DURATION="${BENCH_DURATION:-$default_duration}"
WARMUP="${BENCH_WARMUP:-$default_warmup}"
read -ra CONNS <<<"${BENCH_CONNECTIONS:-1 32 256}"
TRANSLATED_C="${BENCH_TRANSLATED_CONNECTIONS:-32}"
TRANSLATED="${BENCH_TRANSLATED:-1}"
read -ra TARGETS <<<"${BENCH_TARGETS:-direct nginx haproxy cutover}"
PROXY_CPU="${BENCH_PROXY_CPU:-0}"
LOAD_CPU="${BENCH_LOAD_CPU:-1}"
IDLE_COUNT="${BENCH_IDLE:-2000}"
IDLE_HOLD="${BENCH_IDLE_HOLD:-4}"
STRICT="${BENCH_STRICT:-0}"
OUT_DIR="$BENCH/out"
REPORT="$OUT_DIR/pinned.md"
MODES=(plain sse)

for tool in wrk nginx python3 curl taskset; do
  command -v "$tool" >/dev/null || { echo "pinned: '$tool' not found (run scripts/install-deps.sh)" >&2; exit 1; }
done
[[ -x "$BIN" ]] || { echo "pinned: $BIN not found; build first (make build)" >&2; exit 1; }
for cpu in "$PROXY_CPU" "$LOAD_CPU"; do
  taskset -c "$cpu" true 2>/dev/null || { echo "pinned: cannot pin to CPU $cpu (nproc: $(nproc))" >&2; exit 1; }
done
[[ "$PROXY_CPU" != "$LOAD_CPU" ]] || { echo "pinned: the proxy and the load need different CPUs" >&2; exit 1; }
HAVE_HAPROXY=1
HAPROXY_DESC="$(haproxy -v 2>/dev/null | awk 'NR == 1 { print $3 ", nbthread 1, http-reuse always" }' || true)"
if ! command -v haproxy >/dev/null; then
  HAVE_HAPROXY=0
  HAPROXY_DESC="not installed, skipped"
  echo "pinned: haproxy is not installed (scripts/install-deps.sh installs it); its rows are skipped" >&2
fi
declare -a ACTIVE=()
for t in "${TARGETS[@]}"; do
  case "$t" in
    direct | nginx | cutover) ACTIVE+=("$t") ;;
    haproxy) ((HAVE_HAPROXY)) && ACTIVE+=("$t") ;;
    *) echo "pinned: unknown target '$t' in BENCH_TARGETS" >&2; exit 1 ;;
  esac
done
TARGETS=("${ACTIVE[@]}")
has_target() { [[ " ${TARGETS[*]} " == *" $1 "* ]]; }
has_target direct || { echo "pinned: BENCH_TARGETS must include direct (added latency is measured against it)" >&2; exit 1; }

# This script, its samplers, wrk and the upstream live on LOAD_CPU; proxies are started on
# PROXY_CPU explicitly.
taskset -cp "$LOAD_CPU" $$ >/dev/null

# The idle-connection test needs IDLE_COUNT descriptors and more; inherited by everything below.
ulimit -n 16384 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if (($(ulimit -n) < IDLE_COUNT + 512)); then
  echo "pinned: ulimit -n is $(ulimit -n); the idle-connection test needs $((IDLE_COUNT + 512))" >&2
  exit 1
fi

TMP="$(mktemp -d "${TMPDIR:-/tmp}/cutover-pinned.XXXXXX")"
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

log() { printf '[pinned %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

forget() {
  local keep=() p
  for p in "${PIDS[@]}"; do [[ "$p" == "$1" ]] || keep+=("$p"); done
  PIDS=("${keep[@]+"${keep[@]}"}")
}

kv() { # kv KEY FILE -> value of KEY=value on the first matching BENCH line
  grep -oE "(^| )$1=[^ ]+" "$2" | head -1 | cut -d= -f2
}

# pid_tree PID: PID and its direct children (nginx's worker is a child of its master).
pid_tree() { echo "$1" $(cat /proc/"$1"/task/*/children 2>/dev/null); }

# cpu_ticks PID: utime+stime clock ticks of PID (all its threads) and its direct children.
cpu_ticks() {
  local total=0 p stat fields
  for p in $(pid_tree "$1"); do
    stat="$(cat "/proc/$p/stat" 2>/dev/null)" || continue
    read -ra fields <<<"${stat##*) }"  # fields[0] is field 3 (state); utime, stime are 14, 15
    total=$((total + fields[11] + fields[12]))
  done
  echo "$total"
}

# rss_kib PID: VmRSS of PID and its direct children together, KiB.
rss_kib() {
  local total=0 p key value rest
  for p in $(pid_tree "$1"); do
    while read -r key value rest; do
      [[ "$key" == VmRSS: ]] && { total=$((total + value)); break; }
    done <"/proc/$p/status" 2>/dev/null || true
  done
  echo "$total"
}

vm_hwm_kib() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }

# Peak rss_kib of PID every 0.25 s until STOPFILE exists, kept in OUTFILE.
rss_sampler() {
  local pid="$1" outfile="$2" stopfile="$3" peak=0 now
  while [[ ! -e "$stopfile" ]] && kill -0 "$pid" 2>/dev/null; do
    now="$(rss_kib "$pid")"
    ((now > peak)) && peak="$now"
    echo "$peak" >"$outfile"
    sleep 0.25
  done
}

# cpu_line CPU: "busy nice total" clock ticks of that CPU (/proc/stat): busy is all but idle and
# iowait, nice the part of it in niced processes (such as other sessions' builds).
cpu_line() {
  awk -v c="cpu$1" '$1 == c { busy = $2 + $3 + $4 + $7 + $8 + $9; print busy, $3, busy + $5 + $6 }' /proc/stat
}

# Notes, once a second, whether a compiler or linker is running beside the benchmark.
busy_monitor() {
  local seconds=0 found
  while :; do
    found="$(cat /proc/[0-9]*/comm 2>/dev/null | grep -cxE 'cc1plus|cc1|ld|ld\.gold|ld\.lld|lto1|collect2|rustc' || true)"
    [[ "$found" == 0 ]] || seconds=$((seconds + 1))
    echo "$seconds" >"$TMP/busy-seconds"
    sleep 1
  done
}

CLK_TCK="$(getconf CLK_TCK)"
export CUTOVER_CLIENT_KEY="bench-$RANDOM$RANDOM"
export CUTOVER_BENCH_ADMIN_TOKEN="bench-admin-token-$RANDOM$RANDOM"
mkdir -p "$OUT_DIR"
LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
STARTED="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
busy_monitor &
PIDS+=("$!")
log "proxy under test on CPU $PROXY_CPU; wrk, the upstream and this script on CPU $LOAD_CPU; $(getconf _NPROCESSORS_ONLN) cores; load average $LOAD_BEFORE"
log "targets: ${TARGETS[*]}; runs $RUNS × (${WARMUP}s warm-up + ${DURATION}s) per row; connections ${CONNS[*]}"

# --- the upstream (CPU LOAD_CPU) ---------------------------------------------------------------
UP_PORT="$(free_port)"
python3 "$BENCH/pinned.py" upstream --dir "$TMP/answers" --port "$UP_PORT" >"$TMP/answers.txt"
nginx_conf "$TMP/upstream" "  include $TMP/answers/locations.conf;"
taskset -c "$LOAD_CPU" nginx -p "$TMP/upstream" -c "$TMP/upstream/nginx.conf" -e "$TMP/upstream/error.log" \
  >"$TMP/upstream/stdout" 2>&1 &
UP_PID=$!
PIDS+=("$UP_PID")
wait_for_tcp "$UP_PORT" "$UP_PID" "$TMP/upstream/error.log"
log "upstream: nginx pid $UP_PID on 127.0.0.1:$UP_PORT, CPU $LOAD_CPU; $(cat "$TMP/answers.txt")"

# --- the proxies (CPU PROXY_CPU) ---------------------------------------------------------------
declare -A PORT PID
PORT[direct]="$UP_PORT"
PID[direct]=""

if has_target nginx; then
  PORT[nginx]="$(free_port)"
  nginx_conf "$TMP/nginx" "$(nginx_proxy_block "${PORT[nginx]}" "$UP_PORT")"
  taskset -c "$PROXY_CPU" nginx -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" -e "$TMP/nginx/error.log" \
    >"$TMP/nginx/stdout" 2>&1 &
  PID[nginx]=$!
  PIDS+=("${PID[nginx]}")
  wait_for_tcp "${PORT[nginx]}" "${PID[nginx]}" "$TMP/nginx/error.log"
  log "nginx $(nginx -v 2>&1 | cut -d/ -f2): pid ${PID[nginx]} on 127.0.0.1:${PORT[nginx]}, CPU $PROXY_CPU, 1 worker, keepalive 256 upstream"
fi

if has_target haproxy; then
  PORT[haproxy]="$(free_port)"
  mkdir -p "$TMP/haproxy"
  cat >"$TMP/haproxy/haproxy.cfg" <<EOF
global
  nbthread 1
  maxconn $(( $(ulimit -n) / 2 - 64 ))
defaults
  mode http
  timeout connect 5s
  timeout client 300s
  timeout server 300s
  timeout http-keep-alive 300s
frontend bench
  bind 127.0.0.1:${PORT[haproxy]}
  default_backend bench_upstream
backend bench_upstream
  http-reuse always
  server upstream 127.0.0.1:$UP_PORT
EOF
  taskset -c "$PROXY_CPU" haproxy -db -f "$TMP/haproxy/haproxy.cfg" >"$TMP/haproxy/stdout" 2>&1 &
  PID[haproxy]=$!
  PIDS+=("${PID[haproxy]}")
  wait_for_tcp "${PORT[haproxy]}" "${PID[haproxy]}" "$TMP/haproxy/stdout"
  log "haproxy ${HAPROXY_DESC%%,*}: pid ${PID[haproxy]} on 127.0.0.1:${PORT[haproxy]}, CPU $PROXY_CPU, nbthread 1, http-reuse always"
fi

# start_cutover NAME: a cutover with every chat feature on, pinned to PROXY_CPU, as PID[NAME] and
# PORT[NAME]; its access log is $TMP/NAME-access.log and its admin listener ADMIN_PORT[NAME].
declare -A ADMIN_PORT
start_cutover() {
  local name="$1"
  ADMIN_PORT[$name]="$(free_port)"
  cat >"$TMP/$name.yaml" <<EOF
listen: 127.0.0.1:0
workers: 1
access_log: "$TMP/$name-access.log"
metrics: true
auth:
  client_keys:
    - name: bench
      key_env: CUTOVER_CLIENT_KEY
admin:
  listen: 127.0.0.1:${ADMIN_PORT[$name]}
  token_env: CUTOVER_BENCH_ADMIN_TOKEN
providers:
  openai:
    base_url: http://127.0.0.1:$UP_PORT/v1
    no_api_key: true
    models: {gpt-4: gpt-4.1-2025-04-14, messages-openai: gpt-4.1-2025-04-14, responses-openai: gpt-4.1-2025-04-14}
    max_connections: 256
    prices: {gpt-4.1-2025-04-14: {input: 2.00, output: 8.00}}
  anthropic:
    dialect: anthropic
    base_url: http://127.0.0.1:$UP_PORT/v1
    no_api_key: true
    models: {messages-anthropic: claude-sonnet-4-5-20250929, chat-anthropic: claude-sonnet-4-5-20250929}
    max_connections: 256
    prices: {claude-sonnet-4-5-20250929: {input: 3.00, output: 15.00}}
routes:
  - models: [gpt-4, messages-openai, responses-openai]
    provider: openai
  - models: [messages-anthropic, chat-anthropic]
    provider: anthropic
EOF
  taskset -c "$PROXY_CPU" "$BIN" serve -c "$TMP/$name.yaml" >"$TMP/$name.stdout" 2>"$TMP/$name.stderr" &
  PID[$name]=$!
  PIDS+=("${PID[$name]}")
  PORT[$name]="$(wait_for_log "$TMP/$name.stderr" "${PID[$name]}" 'listening on')"
  log "$name: pid ${PID[$name]} on 127.0.0.1:${PORT[$name]}, CPU $PROXY_CPU ($(grep -oE 'with [0-9]+ workers?' "$TMP/$name.stderr" | head -1)), access log to a file, metrics on, admin on 127.0.0.1:${ADMIN_PORT[$name]}"
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

ACCESS_LOG="$TMP/cutover-access.log"
has_target cutover && start_cutover cutover

for t in "${TARGETS[@]}"; do
  [[ -n "${PID[$t]}" ]] || continue
  log "$t: affinity $(taskset -cp "${PID[$t]}" | awk '{print $NF}')"
done

# --- requests and checks ----------------------------------------------------------------------
# body KIND MODEL STREAM(true|false), as in bench/dialects.sh.
body() {
  case "$1" in
    chat) printf '{"model":"%s","stream":%s,"messages":[{"role":"user","content":"hello"}]}' "$2" "$3" ;;
    messages) printf '{"model":"%s","max_tokens":64,"stream":%s,"messages":[{"role":"user","content":"hello"}]}' "$2" "$3" ;;
    responses) printf '{"model":"%s","stream":%s,"input":"hello"}' "$2" "$3" ;;
  esac
}
stream_of() { [[ "$1" == sse ]] && echo true || echo false; }
accept_of() { [[ "$1" == sse ]] && echo text/event-stream || echo ""; }

# The direct upstream and the reference proxies must return the fixed answers byte for byte.
for t in "${TARGETS[@]}"; do
  [[ "$t" == cutover ]] && continue
  for mode in "${MODES[@]}"; do
    expected="$TMP/answers/openai.json"
    accept=()
    [[ "$mode" == sse ]] && { expected="$TMP/answers/openai.sse"; accept=(-H 'Accept: text/event-stream'); }
    status="$(curl -sS -o "$TMP/check-$t-$mode" -w '%{http_code}' --max-time 5 "${accept[@]}" \
      -H "Authorization: Bearer $CUTOVER_CLIENT_KEY" -H 'Content-Type: application/json' \
      --data-binary "$(body chat gpt-4 "$(stream_of "$mode")")" \
      "http://127.0.0.1:${PORT[$t]}/v1/chat/completions")" || status=curl-failed
    if [[ "$status" != 200 ]] || ! cmp -s "$TMP/check-$t-$mode" "$expected"; then
      echo "pinned: $t $mode: answered $status, not the fixed answer:" >&2
      head -c 800 "$TMP/check-$t-$mode" >&2 2>/dev/null || true
      exit 1
    fi
  done
done

# cutover's paths: path-name → "URL KIND AUTH MODEL PROVIDER" (bench/dialects.py check).
declare -A CPATH=(
  [chat]="/v1/chat/completions chat bearer gpt-4 openai"
  [messages-openai]="/v1/messages messages x-api-key messages-openai openai"
  [responses-openai]="/v1/responses responses bearer responses-openai openai"
  [chat-anthropic]="/v1/chat/completions chat bearer chat-anthropic anthropic"
  [messages-anthropic]="/v1/messages messages x-api-key messages-anthropic anthropic")
declare -A CPATH_LABEL=(
  [chat]="chat → OpenAI (the main rows)"
  [messages-openai]="Messages → OpenAI (translated)"
  [responses-openai]="Responses → OpenAI (translated)"
  [chat-anthropic]="chat → Anthropic (translated)"
  [messages-anthropic]="Messages → Anthropic (pass-through)")
TRANSLATED_PATHS=(messages-openai responses-openai chat-anthropic messages-anthropic)
if has_target cutover; then
  for p in chat "${TRANSLATED_PATHS[@]}"; do
    read -r url kind auth model provider <<<"${CPATH[$p]}"
    for mode in "${MODES[@]}"; do
      flag=()
      [[ "$mode" == sse ]] && flag=(--stream)
      if ! python3 "$BENCH/dialects.py" check --port "${PORT[cutover]}" --url "$url" --kind "$kind" \
        --auth "$auth" --provider "$provider" --model "$model" "${flag[@]}" \
        --body "$(body "$kind" "$model" "$(stream_of "$mode")")"; then
        echo "pinned: cutover path $p, $mode: FAILED its check (above); nothing was measured" >&2
        exit 1
      fi
    done
  done
  log "cutover: every path, plain and sse, answers 200 in its client's format"
fi

# --- load -------------------------------------------------------------------------------------
declare -A RPS P50 P99 CPU_US UP_US RSS OTHERS0 NICE0 PROXY0 BUSY1 BAD

# measure KEY RUN TARGET URL BODY AUTH ACCEPT CONNECTIONS
measure() {
  local key="$1" r="$2" t="$3" url="$4" c="$8" out="$TMP/wrk-$1-$2.txt"
  local -x BENCH_BODY="$5" BENCH_KEY_HEADER="$6" BENCH_ACCEPT="$7"
  local pid="${PID[$t]}" full="http://127.0.0.1:${PORT[$t]}$4"
  wrk -t1 -c"$c" -d"${WARMUP}s" --timeout 5s -s "$BENCH/pinned.lua" "$full" >"$TMP/warmup.txt"
  [[ "$t" == cutover ]] && : >"$ACCESS_LOG"
  local p0=0 p1=0 u0 u1 c0 c1 l0 l1 sampler="" requests
  rm -f "$TMP/stop-sampler" "$TMP/rss-peak"
  if [[ -n "$pid" ]]; then
    rss_sampler "$pid" "$TMP/rss-peak" "$TMP/stop-sampler" &
    sampler=$!
    PIDS+=("$sampler")
    p0="$(cpu_ticks "$pid")"
  fi
  u0="$(cpu_ticks "$UP_PID")"
  c0="$(cpu_line "$PROXY_CPU")"
  l0="$(cpu_line "$LOAD_CPU")"
  wrk -t1 -c"$c" -d"${DURATION}s" --timeout 5s --latency -s "$BENCH/pinned.lua" "$full" >"$out"
  [[ -n "$pid" ]] && p1="$(cpu_ticks "$pid")"
  u1="$(cpu_ticks "$UP_PID")"
  c1="$(cpu_line "$PROXY_CPU")"
  l1="$(cpu_line "$LOAD_CPU")"
  if [[ -n "$sampler" ]]; then
    touch "$TMP/stop-sampler"
    wait "$sampler" 2>/dev/null || true
    forget "$sampler"
  fi
  grep -q '^BENCH ' "$out" || { echo "pinned: wrk printed no summary for $key:" >&2; cat "$out" >&2; exit 1; }
  requests="$(kv requests "$out")"
  RPS[$key,$r]="$(kv rps "$out")"
  P50[$key,$r]="$(kv p50_us "$out")"
  P99[$key,$r]="$(kv p99_us "$out")"
  per_req() { awk -v t="$1" -v hz="$CLK_TCK" -v n="$requests" 'BEGIN { printf "%.1f", n ? t / hz * 1e6 / n : 0 }'; }
  pct() { awk -v x="$1" -v t="$2" 'BEGIN { x = t ? 100 * x / t : 0; printf("%.0f", (x < 0 ? 0 : x)) }'; }
  CPU_US[$key,$r]="-"
  RSS[$key,$r]="-"
  if [[ -n "$pid" ]]; then
    CPU_US[$key,$r]="$(per_req $((p1 - p0)))"
    RSS[$key,$r]="$(cat "$TMP/rss-peak" 2>/dev/null || echo 0)"
  fi
  UP_US[$key,$r]="$(per_req $((u1 - u0)))"
  local b0 n0 t0 b1 n1 t1
  read -r b0 n0 t0 <<<"$c0"
  read -r b1 n1 t1 <<<"$c1"
  PROXY0[$key,$r]="$(pct $((p1 - p0)) $((t1 - t0)))"
  OTHERS0[$key,$r]="$(pct $((b1 - b0 - (p1 - p0))) $((t1 - t0)))"
  NICE0[$key,$r]="$(pct $((n1 - n0)) $((t1 - t0)))"
  read -r b0 n0 t0 <<<"$l0"
  read -r b1 n1 t1 <<<"$l1"
  BUSY1[$key,$r]="$(pct $((b1 - b0)) $((t1 - t0)))"
  BAD[$key,$r]="$(($(kv non2xx "$out") + $(kv connect_errors "$out") + $(kv read_errors "$out") + \
    $(kv write_errors "$out") + $(kv timeouts "$out")))"
  log "run $r, $key: ${RPS[$key,$r]} req/s, p50 ${P50[$key,$r]} µs, p99 ${P99[$key,$r]} µs, proxy ${CPU_US[$key,$r]} µs CPU/req (${PROXY0[$key,$r]} % of CPU $PROXY_CPU, others ${OTHERS0[$key,$r]} %, niced ${NICE0[$key,$r]} %), upstream ${UP_US[$key,$r]} µs/req, CPU $LOAD_CPU ${BUSY1[$key,$r]} %, RSS ${RSS[$key,$r]} KiB, bad ${BAD[$key,$r]}"
}

# --- idle keep-alive memory ---------------------------------------------------------------------
declare -A IDLE_BEFORE IDLE_HALF IDLE_WITH IDLE_AVG IDLE_MARGINAL IDLE_OPEN IDLE_OK
# rss_peak_for PID SECONDS: the largest rss_kib of PID over SECONDS (0.25 s samples).
rss_peak_for() {
  local peak=0 now
  for _ in $(seq $(($2 * 4))); do
    now="$(rss_kib "$1")"
    ((now > peak)) && peak="$now"
    sleep 0.25
  done
  echo "$peak"
}
# open_idle NAME TARGET COUNT: bench/idle_connections.py in the background, holding COUNT
# connections (each served one chat completion first) until $TMP/release-NAME exists; returns once
# they are all open and answered. Its pid is left in IDLE_PY.
open_idle() {
  local name="$1" t="$2"
  python3 "$BENCH/idle_connections.py" --port "${PORT[$t]}" --count "$3" --hold 300 \
    --release-file "$TMP/release-${name%-*}" --request chat >"$TMP/idle-$name.txt" 2>"$TMP/idle-$name.stderr" &
  IDLE_PY=$!
  PIDS+=("$IDLE_PY")
  for _ in $(seq 600); do
    grep -q '^READY' "$TMP/idle-$name.txt" 2>/dev/null && break
    kill -0 "$IDLE_PY" 2>/dev/null || break
    sleep 0.1
  done
  grep -q '^READY' "$TMP/idle-$name.txt" || { echo "pinned: the idle connections did not open:" >&2; cat "$TMP/idle-$name.stderr" >&2; exit 1; }
}
# idle_round NAME TARGET: IDLE_COUNT idle keep-alive connections in two halves. The average is
# (RSS with all open − RSS before) ÷ IDLE_COUNT; the marginal cost, what one more idle connection
# takes once the first half has warmed whatever a burst of connections allocates once, is
# (RSS with all open − RSS with the first half open) ÷ the second half.
idle_round() {
  local name="$1" t="$2" pid="${PID[$2]}" half=$((IDLE_COUNT / 2)) first second
  rm -f "$TMP/release-$name"
  IDLE_BEFORE[$name]="$(rss_kib "$pid")"
  log "idle ($name): $IDLE_COUNT keep-alive connections to $t in two halves; RSS before ${IDLE_BEFORE[$name]} KiB"
  open_idle "$name-1" "$t" "$half"
  first="$IDLE_PY"
  IDLE_HALF[$name]="$(rss_peak_for "$pid" 1)"
  open_idle "$name-2" "$t" $((IDLE_COUNT - half))
  second="$IDLE_PY"
  IDLE_WITH[$name]="$(rss_peak_for "$pid" "$IDLE_HOLD")"
  touch "$TMP/release-$name"
  wait "$first" && wait "$second" || { echo "pinned: idle_connections.py failed:" >&2; cat "$TMP/idle-$name"-*.stderr >&2; exit 1; }
  forget "$first"
  forget "$second"
  IDLE_AVG[$name]="$(awk -v a="${IDLE_WITH[$name]}" -v b="${IDLE_BEFORE[$name]}" -v n="$IDLE_COUNT" 'BEGIN { printf "%.2f", (a - b) / n }')"
  IDLE_MARGINAL[$name]="$(awk -v a="${IDLE_WITH[$name]}" -v b="${IDLE_HALF[$name]}" -v n=$((IDLE_COUNT - half)) 'BEGIN { printf "%.2f", (a - b) / n }')"
  IDLE_OK[$name]=$(($(kv ok "$TMP/idle-$name-1.txt") + $(kv ok "$TMP/idle-$name-2.txt")))
  IDLE_OPEN[$name]=$(($(kv still_open "$TMP/idle-$name-1.txt") + $(kv still_open "$TMP/idle-$name-2.txt")))
  log "idle ($name): RSS ${IDLE_HALF[$name]} KiB with half open, ${IDLE_WITH[$name]} KiB with all: ${IDLE_AVG[$name]} KiB per connection on average, ${IDLE_MARGINAL[$name]} marginal; ${IDLE_OK[$name]} served, ${IDLE_OPEN[$name]} still open at the end"
  sleep 1
}

main_rows() { # the keys of one run's main rows, in order
  local c mode t
  for c in "${CONNS[@]}"; do
    for mode in "${MODES[@]}"; do
      for t in "${TARGETS[@]}"; do
        echo "$t|$mode|$c"
      done
    done
  done
}
translated_rows() {
  local p mode
  if [[ "$TRANSLATED" == 1 ]] && has_target cutover; then
    for p in "${TRANSLATED_PATHS[@]}"; do
      for mode in "${MODES[@]}"; do
        echo "cutover:$p|$mode|$TRANSLATED_C"
      done
    done
  fi
}
mapfile -t MAIN_KEYS < <(main_rows)
mapfile -t TRANSLATED_KEYS < <(translated_rows)

for r in $(seq "$RUNS"); do
  log "run $r of $RUNS"
  for key in "${MAIN_KEYS[@]}" "${TRANSLATED_KEYS[@]}"; do
    IFS='|' read -r t mode c <<<"$key"
    p=chat
    if [[ "$t" == cutover:* ]]; then
      p="${t#cutover:}"
      t=cutover
    fi
    read -r url kind auth model _ <<<"${CPATH[$p]}"
    measure "$key" "$r" "$t" "$url" "$(body "$kind" "$model" "$(stream_of "$mode")")" "$auth" \
      "$(accept_of "$mode")" "$c"
  done
done

HWM_LOAD=0
if has_target cutover; then
  HWM_LOAD="$(vm_hwm_kib "${PID[cutover]}")"
  # The features were on: the access log has usage and cost, the metrics count the requests.
  sleep 1.5
  FEATURE_LOG="$(grep -c '"prompt_tokens":19,"completion_tokens":10' "$ACCESS_LOG" || true)"
  FEATURE_COST="$(grep -c '"cost":' "$ACCESS_LOG" || true)"
  FEATURE_METRICS="$(curl -sS --max-time 5 -H "Authorization: Bearer $CUTOVER_BENCH_ADMIN_TOKEN" \
    "http://127.0.0.1:${ADMIN_PORT[cutover]}/metrics" | awk '/^cutover_requests_total/ { n += $NF } END { printf "%.0f", n }')"
  log "cutover: access log lines of the last row with usage $FEATURE_LOG, with cost $FEATURE_COST; cutover_requests_total $FEATURE_METRICS; VmHWM $HWM_LOAD KiB"
fi
for t in cutover nginx haproxy; do
  ((IDLE_COUNT > 0)) || break
  has_target "$t" || continue
  idle_round "$t" "$t"
done
# A second cutover, started now with the same configuration, for the idle test of a fresh process.
if has_target cutover && ((IDLE_COUNT > 0)); then
  start_cutover cutover-fresh
  idle_round cutover-fresh cutover-fresh
  stop "${PID[cutover-fresh]}"
fi

PROBLEMS_CUTOVER=0
has_target cutover && PROBLEMS_CUTOVER="$(cat "$TMP"/cutover*.stderr | { grep -ciE '\b(warn|warning|error|critical)\b' || true; })"
LOAD_AFTER="$(cut -d' ' -f1-3 /proc/loadavg)"
BUSY_SECONDS="$(cat "$TMP/busy-seconds" 2>/dev/null || echo 0)"
FINISHED_IN=$SECONDS

# --- summary -----------------------------------------------------------------------------------
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
maxof() { printf '%s\n' "$@" | sort -g | tail -1; }
# over ARRAY KEY: the values of ARRAY[KEY,1..RUNS]
over() {
  local -n a="$1"
  local r
  for r in $(seq "$RUNS"); do echo "${a[$2,$r]}"; done
}
declare -A M_RPS M_P50 M_P99 M_CPU M_UP M_RSS M_OTH M_NICE M_PRX M_BUSY1 M_BAD ROUNDS_RPS
ANY_BAD=0
for key in "${MAIN_KEYS[@]}" "${TRANSLATED_KEYS[@]}"; do
  M_RPS[$key]="$(median $(over RPS "$key"))"
  M_P50[$key]="$(median $(over P50 "$key"))"
  M_P99[$key]="$(median $(over P99 "$key"))"
  M_UP[$key]="$(median $(over UP_US "$key"))"
  M_OTH[$key]="$(median $(over OTHERS0 "$key"))"
  M_NICE[$key]="$(median $(over NICE0 "$key"))"
  M_PRX[$key]="$(median $(over PROXY0 "$key"))"
  M_BUSY1[$key]="$(median $(over BUSY1 "$key"))"
  M_BAD[$key]="$(($(over BAD "$key" | paste -sd+)))"
  [[ "${M_BAD[$key]}" == 0 ]] || ANY_BAD=1
  ROUNDS_RPS[$key]="$(over RPS "$key" | awk '{ printf("%s%.0f", (NR > 1 ? " / " : ""), $1) }')"
  if [[ "${CPU_US[$key,1]}" == - ]]; then
    M_CPU[$key]="-"
    M_RSS[$key]="-"
  else
    M_CPU[$key]="$(median $(over CPU_US "$key"))"
    M_RSS[$key]="$(maxof $(over RSS "$key"))"
  fi
done

f0() { awk -v x="$1" 'BEGIN { printf "%.0f", x }'; }
f1() { [[ "$1" == - ]] && { echo -; return; }; awk -v x="$1" 'BEGIN { printf "%.1f", x }'; }
mib() { [[ "$1" == - ]] && { echo -; return; }; awk -v x="$1" 'BEGIN { printf "%.1f", x / 1024 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || b + 0 <= 0) print "n/a"; else printf "%.2f", a / b }'; }
verdict() { case "$1" in 1) echo PASS ;; 0) echo "**FAIL**" ;; *) echo "n/a" ;; esac; }
le() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "n/a" || b == "n/a") print "n/a"; else print (a + 0 <= b + 0) ? 1 : 0 }'; }
ge() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "n/a" || b == "n/a") print "n/a"; else print (a + 0 >= b + 0) ? 1 : 0 }'; }
added() { # added TARGET MODE C FIELD(P50|P99) -> µs over direct, or n/a
  local -n m="M_$4"
  local k="$1|$2|$3" d="direct|$2|$3"
  [[ -n "${m[$k]:-}" && -n "${m[$d]:-}" ]] || { echo n/a; return; }
  awk -v a="${m[$k]}" -v b="${m[$d]}" 'BEGIN { printf "%.0f", a - b }'
}
has_c() { [[ " ${CONNS[*]} " == *" $1 "* ]]; }

ALL_MET=1
declare -a TARGET_LINES=()
judge() { # judge TEXT MEASURED OK
  local ok="$3"
  [[ "$ok" == 0 ]] && ALL_MET=0
  TARGET_LINES+=("| $1 | $2 | $(verdict "$ok") |")
}
if has_target cutover && has_target nginx; then
  for c in 32 256; do
    has_c "$c" || continue
    for mode in "${MODES[@]}"; do
      r="$(ratio "${M_RPS[cutover|$mode|$c]}" "${M_RPS[nginx|$mode|$c]}")"
      judge "throughput ≥ 0.8 × nginx, $mode, c=$c" "$r × ($(f0 "${M_RPS[cutover|$mode|$c]}") vs $(f0 "${M_RPS[nginx|$mode|$c]}") req/s)" "$(ge "$r" 0.8)"
    done
  done
  for c in 32 256; do
    has_c "$c" || continue
    for mode in "${MODES[@]}"; do
      r="$(ratio "${M_CPU[cutover|$mode|$c]}" "${M_CPU[nginx|$mode|$c]}")"
      judge "CPU/request ≤ 1.25 × nginx, $mode, c=$c" "$r × (${M_CPU[cutover|$mode|$c]} vs ${M_CPU[nginx|$mode|$c]} µs)" "$(le "$r" 1.25)"
    done
  done
  if has_c 256; then
    for mode in "${MODES[@]}"; do
      a="$(added cutover "$mode" 256 P99)"
      n="$(added nginx "$mode" 256 P99)"
      r="$(ratio "$a" "$n")"
      judge "added p99 ≤ 1.5 × nginx's, $mode, c=256" "$r × ($a vs $n µs over direct's ${M_P99[direct|$mode|256]} µs)" "$(le "$r" 1.5)"
    done
  fi
  if has_c 1; then
    for mode in "${MODES[@]}"; do
      a="$(added cutover "$mode" 1 P50)"
      n="$(added nginx "$mode" 1 P50)"
      d="$(awk -v a="$a" -v n="$n" 'BEGIN { printf "%.0f", a - n }')"
      judge "added p50 at c=1 within 20 µs of nginx's, $mode" "$d µs more ($a vs $n µs over direct's ${M_P50[direct|$mode|1]} µs)" "$(le "$d" 20)"
    done
  fi
fi
if has_target cutover; then
  RSS_LOAD_MAX=0
  for key in "${MAIN_KEYS[@]}" "${TRANSLATED_KEYS[@]}"; do
    [[ "$key" == cutover* ]] || continue
    rss="${M_RSS[$key]}"
    ((rss > RSS_LOAD_MAX)) && RSS_LOAD_MAX="$rss"
  done
  ((HWM_LOAD > RSS_LOAD_MAX)) && RSS_LOAD_MAX="$HWM_LOAD"
  judge "cutover RSS ≤ 64 MiB under load (VmHWM after the load rows)" "$(mib "$RSS_LOAD_MAX") MiB" "$(le "$RSS_LOAD_MAX" 65536)"
  if ((IDLE_COUNT == 0)); then
    TARGET_LINES+=("| cutover ≤ 8 KiB per idle keep-alive connection | not measured (BENCH_IDLE=0) | — |")
  else
    IDLE_WORST="$(maxof "${IDLE_MARGINAL[cutover-fresh]}" "${IDLE_MARGINAL[cutover]}")"
    idle_ok="$(le "$IDLE_WORST" 8)"
    [[ "${IDLE_OPEN[cutover-fresh]}" == "$IDLE_COUNT" && "${IDLE_OPEN[cutover]}" == "$IDLE_COUNT" ]] || idle_ok=0
    others=""
    for t in nginx haproxy; do
      [[ -n "${IDLE_MARGINAL[$t]:-}" ]] && others+="; $t ${IDLE_MARGINAL[$t]}"
    done
    judge "cutover ≤ 8 KiB per idle keep-alive connection (marginal, the worse of fresh and after the load)" "$IDLE_WORST KiB (fresh ${IDLE_MARGINAL[cutover-fresh]}, after the load ${IDLE_MARGINAL[cutover]}$others; averages over all $IDLE_COUNT: fresh ${IDLE_AVG[cutover-fresh]}, after the load ${IDLE_AVG[cutover]})" "$idle_ok"
  fi
fi

declare -A T_LABEL=([direct]="direct (upstream)" [nginx]="nginx" [haproxy]="haproxy" [cutover]="cutover")
BIN_DIR="$(cd "$(dirname "$BIN")" && pwd)"
BIN_COMMIT="$(git -C "$BIN_DIR" rev-parse --short HEAD 2>/dev/null || echo unknown)"
BUILD_TYPE="$(grep -oE 'CMAKE_BUILD_TYPE:STRING=.*' "$BIN_DIR/CMakeCache.txt" 2>/dev/null | sed 's/.*=//' || true)"

{
  echo "## cutover pinned reference benchmark (issue #14) — $STARTED"
  echo
  echo "- machine: $(getconf _NPROCESSORS_ONLN) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')); loopback only"
  echo "- layout: proxy under test alone on CPU $PROXY_CPU (taskset); wrk (1 thread), the nginx upstream (1 worker) and the script on CPU $LOAD_CPU"
  echo "- load average before: $LOAD_BEFORE; after: $LOAD_AFTER; seconds with a compiler/linker running alongside: $BUSY_SECONDS of $FINISHED_IN"
  echo "- cutover: \`$BIN\` (built $(date -u -r "$BIN" +%Y-%m-%dT%H:%M:%SZ); its repository is now at $BIN_COMMIT${BUILD_TYPE:+; build type $BUILD_TYPE}), workers: 1, auth, model mapping, prices, metrics + admin listener, access log buffered to a file; warning/error lines in its log: $PROBLEMS_CUTOVER"
  echo "- nginx $(nginx -v 2>&1 | cut -d/ -f2): worker_processes 1, keepalive 256 upstream connections; haproxy: $HAPROXY_DESC"
  echo "- upstream answers: $(cut -d' ' -f2- "$TMP/answers.txt") bytes"
  echo "- $RUNS run(s) × (${WARMUP}s warm-up + ${DURATION}s measured) per row, rows interleaved; medians over the runs (RSS: the largest peak)"
  if has_target cutover; then
    echo "- features checked after the load: access-log lines of the last row with usage $FEATURE_LOG, with cost $FEATURE_COST; cutover_requests_total $FEATURE_METRICS"
  fi
  echo
  echo "Latencies in µs. \"added\" = the proxy's median p50/p99 − direct's at the same mode and connections. CPU µs/req: the proxy's utime+stime over the measured window ÷ requests. CPU $PROXY_CPU: the proxy's share of that core / everything else's share there (in parentheses: niced processes, such as other sessions' builds, which only take what the proxy leaves idle or a small share); CPU $LOAD_CPU: how busy the load core was (wrk + upstream; at 100 % the load side, not the proxy, limits throughput)."
  echo
  echo "| mode | conns | target | req/s | p50 | p99 | added p50 | added p99 | proxy CPU µs/req | RSS MiB | upstream CPU µs/req | CPU $PROXY_CPU proxy/others (niced) % | CPU $LOAD_CPU % | req/s per run | bad |"
  echo "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|"
  for key in "${MAIN_KEYS[@]}"; do
    IFS='|' read -r t mode c <<<"$key"
    a50="-" a99="-"
    [[ "$t" != direct ]] && { a50="$(added "$t" "$mode" "$c" P50)"; a99="$(added "$t" "$mode" "$c" P99)"; }
    printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$mode" "$c" "${T_LABEL[$t]}" \
      "$(f0 "${M_RPS[$key]}")" "$(f0 "${M_P50[$key]}")" "$(f0 "${M_P99[$key]}")" "$a50" "$a99" \
      "$(f1 "${M_CPU[$key]}")" "$(mib "${M_RSS[$key]}")" "$(f1 "${M_UP[$key]}")" \
      "${M_PRX[$key]}/${M_OTH[$key]} (${M_NICE[$key]})" "${M_BUSY1[$key]}" "${ROUNDS_RPS[$key]}" "${M_BAD[$key]}"
  done
  echo
  if has_target nginx; then
    echo "| ratios to nginx | conns | target | throughput | CPU/req | added p99 |"
    echo "|---|---:|---|---:|---:|---:|"
    for c in "${CONNS[@]}"; do
      for mode in "${MODES[@]}"; do
        for t in haproxy cutover; do
          has_target "$t" || continue
          printf '| %s | %s | %s | %s | %s | %s |\n' "$mode" "$c" "$t" \
            "$(ratio "${M_RPS[$t|$mode|$c]}" "${M_RPS[nginx|$mode|$c]}")" \
            "$(ratio "${M_CPU[$t|$mode|$c]}" "${M_CPU[nginx|$mode|$c]}")" \
            "$(ratio "$(added "$t" "$mode" "$c" P99)" "$(added nginx "$mode" "$c" P99)")"
        done
      done
    done
    echo
  fi
  if ((${#TRANSLATED_KEYS[@]})); then
    echo "| cutover path, c=$TRANSLATED_C | mode | req/s | p50 | p99 | CPU µs/req | CPU/req ÷ chat path | CPU/req ÷ nginx | RSS MiB | CPU $PROXY_CPU proxy/others (niced) % | CPU $LOAD_CPU % | bad |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    for key in "${TRANSLATED_KEYS[@]}"; do
      IFS='|' read -r t mode c <<<"$key"
      p="${t#cutover:}"
      chat_cpu="${M_CPU[cutover|$mode|$c]:--}"
      nginx_cpu="${M_CPU[nginx|$mode|$c]:--}"
      printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "${CPATH_LABEL[$p]}" "$mode" \
        "$(f0 "${M_RPS[$key]}")" "$(f0 "${M_P50[$key]}")" "$(f0 "${M_P99[$key]}")" "$(f1 "${M_CPU[$key]}")" \
        "$(ratio "${M_CPU[$key]}" "$chat_cpu")" "$(ratio "${M_CPU[$key]}" "$nginx_cpu")" "$(mib "${M_RSS[$key]}")" \
        "${M_PRX[$key]}/${M_OTH[$key]} (${M_NICE[$key]})" "${M_BUSY1[$key]}" "${M_BAD[$key]}"
    done
    echo
  fi
  echo "| idle keep-alive connections ($IDLE_COUNT in two halves, each served one chat completion first) | RSS before MiB | with half open MiB | with all open MiB | KiB per connection, average | KiB per connection, marginal (second half) | served / still open at the end |"
  echo "|---|---:|---:|---:|---:|---:|---:|"
  for name in cutover-fresh cutover nginx haproxy; do
    [[ -n "${IDLE_AVG[$name]:-}" ]] || continue
    case "$name" in
      cutover-fresh) label="cutover, a second process freshly started (no load before)" ;;
      cutover) label="cutover, after the load rows" ;;
      nginx) label="nginx (master + worker), after the load rows" ;;
      *) label="$name, after the load rows" ;;
    esac
    echo "| $label | $(mib "${IDLE_BEFORE[$name]}") | $(mib "${IDLE_HALF[$name]}") | $(mib "${IDLE_WITH[$name]}") | ${IDLE_AVG[$name]} | ${IDLE_MARGINAL[$name]} | ${IDLE_OK[$name]} / ${IDLE_OPEN[$name]} |"
  done
  echo
  if ((${#TARGET_LINES[@]})); then
    echo "| target (issue #14) | measured | verdict |"
    echo "|---|---|---|"
    printf '%s\n' "${TARGET_LINES[@]}"
  fi
  if ((ANY_BAD)); then
    echo
    echo "**Some measured requests were not 2xx or failed (column \"bad\"); those rows are not valid.**"
  fi
} >"$REPORT"

echo
cat "$REPORT"
echo
echo "(written to ${REPORT#"$ROOT/"})"
((ANY_BAD == 0)) || { echo "pinned: some measured requests were not 2xx or failed" >&2; exit 1; }
if [[ "$STRICT" == 1 ]] && ((!ALL_MET)); then
  exit 1
fi
