#!/usr/bin/env bash
# Response cache and quota bookkeeping benchmark (issue #15, its performance part): the gateway's
# CPU per request with and without a route cache, for cache misses and hits, and with and without
# rate-limit headers on the provider's answers.
#
#   bash bench/cache.sh          (or `make bench-cache`, which builds first)
#
# Layout (issue #14's): one gateway (`workers: 1`, access log off) runs alone on CPU 0
# (taskset -c 0); wrk (1 thread, 32 connections, bench/cache.lua) and the upstream share CPU 1
# (taskset -c 1). The upstream is nginx (one worker) answering POST /v1/chat/completions with a
# fixed OpenAI `chat.completion` (about 580 bytes, with a usage object) on two ports: one without
# rate-limit headers, one adding x-ratelimit-{limit,remaining,reset}-{requests,tokens} (the names
# src/resilience/quota.cc reads) with limits so large that quota awareness never diverts, and one
# adding the same six fields with the same values under names the gateway does not read
# (z-ratelimit-…): the control for the quota run, whose answers are as long; a fourth port serves
# nginx's stub_status, whose request count tells how many requests reached nginx.
# The gateway has four routes, one per client model:
#   plain   → the upstream without rate-limit headers, no cache
#   cached  → the same upstream, with `cache: {ttl, max_bytes, max_entries}` (per client key)
#   quota   → the upstream with rate-limit headers, no cache
#   padded  → the upstream with the six other headers, no cache
# Every request is a small non-streaming chat completion with temperature 0 and a seed, so it is
# cacheable; the runs:
#   a  plain,  every request its own seed                       the baseline: a proxied request
#   b  cached, every request its own seed: every one a miss     miss overhead, vs a
#   c  cached, one body for all: every one a hit                hit cost, vs a
#   d  quota,  every request its own seed                       quota bookkeeping, vs e
#   e  padded, every request its own seed                       the control for d
#   f  no gateway: a second nginx (one worker) on the gateway's CPU answers the hit run's body
#      with the same fixed answer itself                          the floor: what answering a
#                                                                  request costs any server here
# (a sends the same distinct-seed bodies as b, d and e, so they differ only in the route.)
#
# Before any load, curl checks each route once: plain and quota answer 200 without an
# x-cutover-cache header and the quota route's provider endpoint then reports its quota through
# the admin API (GET /admin/v1/quotas); a fresh seed on the cached route answers `miss`, and the
# hit run's body answers `miss` then `hit` while nginx's request count moves by exactly one.
# Then rounds, each running a, d, e, b, c (and f, when timed) in that order (d and e back to back in every round): wrk for WARMUP seconds, then DURATION seconds measured. A round is
# quiet when, in each of its runs, the gateway had ≥ QUIET_GATEWAY % of its CPU, all other work
# (normal and niced, as /proc/stat counts it) ≤ QUIET_OTHERS % of that CPU and niced work ≤
# QUIET_OTHERS % of the load's CPU; on this shared machine other sessions' builds often are not.
# Rounds go on until ROUNDS were quiet or MAX_ROUNDS ran; the medians come from the quiet rounds
# when there are at least two (one when ROUNDS is 1), from all rounds otherwise, and the report
# says which.
# CPU per request is the gateway's utime+stime (/proc/PID/stat, all its threads) over the
# measured run divided by the requests wrk completed (the f run's: the second nginx's worker's);
# the report also splits it into user and system time. Per run it also records req/s, p99, the
# requests nginx saw (stub_status) and the cache's hits and misses (GET /admin/v1/cache). The
# table shows the medians over those rounds and the spread (min–max); each ratio is given as the
# ratio of the medians and as the spread of the ratios within a round.
#
# Targets (issue #15):
#   a cache hit costs at most a fifth of the CPU of a proxied request: a / c ≥ 5
#   a miss costs at most 5 % more CPU than no cache: b / a ≤ 1.05
#   quota bookkeeping costs ≤ 1 % CPU per request: d / e ≤ 1.01
# d / e is what reading and recording the six headers costs: both runs' answers carry six such
# fields of the same size, so receiving and parsing them (which any proxy pays for longer
# headers) is in both. The report also gives d / a, the headers' whole cost, transport included.
# The d run's figures leave the endpoint far more than a quarter of its limits, so the gateway
# reads them once every 50 ms (QuotaState::wants_reading), as it looks at e's endpoint, which
# reports nothing, once every 50 ms: d / e is then the bookkeeping of an endpoint with room.
# The quota target is smaller than the run-to-run noise of this 2-core machine; the report says
# how far the d and e runs alone spread.
# a / f is the most any cache hit could be cheaper than a proxied request on this machine: a hit
# still receives a request and sends an answer, and f does only that, with nginx's code (no
# authentication, no lookup, no accounting). Most of f is the kernel's (system time): a loopback
# receive and send, and waking the client.
#
# Environment knobs: CUTOVER_BIN (default build/cutover), BENCH_DURATION (s, default 10),
# BENCH_WARMUP (s, 2), BENCH_CONNECTIONS (32), BENCH_THREADS (wrk threads, 1), BENCH_ROUNDS (quiet
# rounds wanted, 3), BENCH_MAX_ROUNDS (2 × ROUNDS, at most 60), BENCH_QUIET_GATEWAY (%, 90),
# BENCH_QUIET_OTHERS (%, 5), BENCH_GATEWAY_CPU (0), BENCH_LOAD_CPU (1), BENCH_CACHE_TTL (10m),
# BENCH_CACHE_MAX_ENTRIES (10000, the default; the miss run fills the cache and then evicts one
# entry per request), BENCH_CACHE_MAX_BYTES (67108864, the default), BENCH_ACCESS_LOG (off, or a
# path such as /dev/null), BENCH_STRICT (1: exit 1 if a target is missed), BENCH_COUNT (1: the
# counted mode of bench/cache_counted.bash: the gateway under callgrind, each run's worker
# instructions per request instead of its CPU time; exactly BENCH_ROUNDS rounds), BENCH_KEEP (with
# BENCH_COUNT=1, a folder: each run's worker-thread callgrind file is copied there as
# RUN-ROUND.callgrind, for `callgrind_annotate --inclusive=yes`), BENCH_PERF (without
# BENCH_COUNT, a folder: `perf record -e cpu-clock -g` of the gateway during each measured run, as
# RUN-ROUND.perf, for `perf report -i`; the profiler takes some of the load's CPU). A round takes about
# 6 × (WARMUP + DURATION) s timed (five runs counted), 72 s with the defaults: 4 min on a quiet
# machine, 8 min at most.
# It exits 1 if a check fails or any measured request was not a 2xx. The summary is printed and
# written to bench/out/cache.md.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BENCH="$ROOT/bench"
BIN="${CUTOVER_BIN:-$ROOT/build/cutover}"
# shellcheck source=bench/common.sh
source "$BENCH/common.sh"
DURATION="${BENCH_DURATION:-10}"
WARMUP="${BENCH_WARMUP:-2}"
CONNECTIONS="${BENCH_CONNECTIONS:-32}"
WRK_THREADS="${BENCH_THREADS:-1}"
ROUNDS="${BENCH_ROUNDS:-3}"
MAX_ROUNDS="${BENCH_MAX_ROUNDS:-$((2 * ROUNDS))}"
QUIET_GATEWAY="${BENCH_QUIET_GATEWAY:-90}"
QUIET_OTHERS="${BENCH_QUIET_OTHERS:-5}"
GATEWAY_CPU="${BENCH_GATEWAY_CPU:-0}"
LOAD_CPU="${BENCH_LOAD_CPU:-1}"
CACHE_TTL="${BENCH_CACHE_TTL:-10m}"
CACHE_MAX_ENTRIES="${BENCH_CACHE_MAX_ENTRIES:-10000}"
CACHE_MAX_BYTES="${BENCH_CACHE_MAX_BYTES:-67108864}"
ACCESS_LOG="${BENCH_ACCESS_LOG:-off}"
STRICT="${BENCH_STRICT:-0}"
# 1: count instead of timing (see the end of the header): the gateway runs under callgrind.
COUNT="${BENCH_COUNT:-0}"
OUT_DIR="$BENCH/out"
REPORT="$OUT_DIR/cache.md"
if [[ "$COUNT" == 1 ]]; then
  MAX_ROUNDS="$ROUNDS"
  REPORT="$OUT_DIR/cache_counted.md"
  for tool in valgrind callgrind_control; do
    command -v "$tool" >/dev/null || { echo "bench: '$tool' not found (run scripts/install-deps.sh)" >&2; exit 1; }
  done
fi

for tool in wrk nginx curl python3 taskset; do
  command -v "$tool" >/dev/null || { echo "bench: '$tool' not found (run scripts/install-deps.sh)" >&2; exit 1; }
done
if [[ -n "${BENCH_PERF:-}" ]]; then
  command -v perf >/dev/null || { echo "bench: BENCH_PERF needs 'perf' (Debian's linux-perf)" >&2; exit 1; }
fi
[[ -x "$BIN" ]] || { echo "bench: $BIN not found; build first (make build)" >&2; exit 1; }
for cpu in "$GATEWAY_CPU" "$LOAD_CPU"; do
  taskset -c "$cpu" true 2>/dev/null || { echo "bench: cannot pin to CPU $cpu (nproc: $(nproc))" >&2; exit 1; }
done
[[ "$GATEWAY_CPU" != "$LOAD_CPU" ]] || { echo "bench: the gateway and the load need different CPUs" >&2; exit 1; }
((ROUNDS >= 1 && MAX_ROUNDS >= ROUNDS && MAX_ROUNDS <= 60)) ||
  { echo "bench: need 1 ≤ BENCH_ROUNDS ≤ BENCH_MAX_ROUNDS ≤ 60" >&2; exit 1; }

TMP="$(mktemp -d "${TMPDIR:-/tmp}/cutover-cache.XXXXXX")"
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

log() { printf '[cache %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
fail() { echo "bench: $*" >&2; exit 1; }

kv() { # kv KEY FILE -> value of KEY=value on the first BENCH line
  grep -oE "(^| )$1=[^ ]+" "$2" | head -1 | cut -d= -f2
}

# proc_ticks PID: utime+stime (clock ticks) of the process, all its threads together.
proc_ticks() {
  local stat fields
  stat="$(cat "/proc/$1/stat")"
  read -ra fields <<<"${stat##*) }"  # fields[0] is field 3 (state); utime, stime are 14, 15
  echo $((fields[11] + fields[12]))
}

# proc_user_system PID: "utime stime" (clock ticks) of the process, all its threads together.
proc_user_system() {
  local stat fields
  stat="$(cat "/proc/$1/stat")"
  read -ra fields <<<"${stat##*) }"
  echo "${fields[11]} ${fields[12]}"
}

# cpu_line CPU: "busy nice total" clock ticks of that CPU from /proc/stat: busy is all but idle,
# iowait and nice; nice is time in niced (background) processes, such as other sessions' builds.
cpu_line() {
  awk -v c="cpu$1" '$1 == c { busy = $2 + $4 + $7 + $8 + $9; print busy, $3, busy + $3 + $5 + $6 }' /proc/stat
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

# nginx_requests: the requests nginx has handled so far (stub_status; the query itself counts).
nginx_requests() {
  curl -sS --max-time 5 "http://127.0.0.1:$STATUS_PORT/status" | awk 'NR == 3 { print $3 }'
}

# cache_stats: "hits misses evictions entries" of the cached route's cache (admin API).
cache_stats() {
  curl -sS --max-time 5 -H "Authorization: Bearer $CUTOVER_BENCH_ADMIN_TOKEN" \
    "http://127.0.0.1:$ADMIN_PORT/admin/v1/cache" | python3 -c '
import json, sys
for c in json.load(sys.stdin)["caches"]:
    if c["model"] == "cached":
        print(c["hits"], c["misses"], c["evictions"], c["entries"])
        break
else:
    print("0 0 0 0")'
}

# The request: a small deterministic chat completion; the seed's value goes between the two.
body_prefix() { printf '{"model":"%s","temperature":0,"messages":[{"role":"user","content":"Say hello."}],"seed":' "$1"; }
BODY_SUFFIX='}'
HIT_SEED=1000000000  # the hit run's one body; every distinct seed is larger (see next_seed_base)
SEED_RUNS=0
SEED_BASE=0
# next_seed_base: sets SEED_BASE to a range of seeds no earlier request used (2e7 seeds; 10 digits,
# like HIT_SEED, for up to 400 ranges). Not in a $(...): the count must survive.
next_seed_base() {
  SEED_RUNS=$((SEED_RUNS + 1))
  SEED_BASE=$((HIT_SEED + SEED_RUNS * 20000000))
}

# chat MODEL SEED -> writes headers to $TMP/h.txt and the body to $TMP/b.json; prints the status.
chat() {
  curl -sS -D "$TMP/h.txt" -o "$TMP/b.json" -w '%{http_code}' --max-time 5 \
    -H "Authorization: Bearer $CUTOVER_CLIENT_KEY" -H 'Content-Type: application/json' \
    -d "$(body_prefix "$1")$2$BODY_SUFFIX" "http://127.0.0.1:$GATEWAY_PORT/v1/chat/completions" || echo curl-failed
}
header_of() { # header_of NAME -> its value in $TMP/h.txt (empty when absent)
  awk -v n="$(tr '[:upper:]' '[:lower:]' <<<"$1")" -F': *' 'tolower($1) == n { sub(/\r$/, "", $2); print $2 }' "$TMP/h.txt"
}
expect_chat() { # expect_chat MODEL SEED CACHE_HEADER(or "none") WHAT
  local status cache
  status="$(chat "$1" "$2")"
  cache="$(header_of x-cutover-cache)"
  if [[ "$status" != 200 ]] || ! grep -q '"chat.completion"' "$TMP/b.json"; then
    echo "bench: check '$4': answered $status:" >&2
    cat "$TMP/h.txt" "$TMP/b.json" >&2 2>/dev/null || true
    exit 1
  fi
  if [[ "$3" == none && -n "$cache" ]] || [[ "$3" != none && "$cache" != "$3" ]]; then
    echo "bench: check '$4': x-cutover-cache is '${cache:-absent}', expected '$3'" >&2
    cat "$TMP/h.txt" >&2
    exit 1
  fi
  log "check: $4: 200, x-cutover-cache ${cache:-absent}"
}

# --- the fixed answer ------------------------------------------------------------------------------
# Goes into nginx.conf between single quotes: no ' and no $ in it.
ANSWER='{"id":"chatcmpl-bench00000000000000000000000000","object":"chat.completion","created":1764460800,"model":"bench-gpt-4.1","choices":[{"index":0,"message":{"role":"assistant","content":"Hello! This is a fixed answer from the benchmark upstream: the same bytes every time. How can I help?","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":11,"completion_tokens":24,"total_tokens":35,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0}},"system_fingerprint":"fp_bench"}'

CLK_TCK="$(getconf CLK_TCK)"
export CUTOVER_CLIENT_KEY="bench-$RANDOM$RANDOM"
export CUTOVER_BENCH_ADMIN_TOKEN="admin-$RANDOM$RANDOM$RANDOM"
mkdir -p "$OUT_DIR"
LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
STARTED="$(date)"
busy_monitor &
PIDS+=("$!")
log "gateway on CPU $GATEWAY_CPU; wrk and nginx on CPU $LOAD_CPU; $(nproc) cores; load average $LOAD_BEFORE"

# --- the upstream: nginx, one worker, on CPU LOAD_CPU ---------------------------------------------
PLAIN_PORT="$(free_port)"
QUOTA_PORT="$(free_port)"
PADDED_PORT="$(free_port)"
STATUS_PORT="$(free_port)"
# rate_limit_headers LETTER: nginx's add_header lines for the six rate-limit fields, named
# LETTER-ratelimit-…: "x" gives the names the gateway reads, "z" the control's (same sizes).
rate_limit_headers() {
  printf '      add_header %s-ratelimit-%s always;\n' \
    "$1" "limit-requests 1000000000" "$1" "remaining-requests 999999999" \
    "$1" "reset-requests 1s" "$1" "limit-tokens 100000000000" \
    "$1" "remaining-tokens 99999999950" "$1" "reset-tokens 6m0s"
}
# The http settings both nginx processes share: long keep-alive, JSON answers.
KEEP_ALIVE_JSON='  keepalive_requests 100000000;
  keepalive_timeout 300s;
  default_type application/json;'
nginx_conf "$TMP/nginx" "$KEEP_ALIVE_JSON
  server {
    listen 127.0.0.1:$PLAIN_PORT;
    location = /v1/chat/completions { return 200 '$ANSWER'; }
  }
  server {
    listen 127.0.0.1:$QUOTA_PORT;
    location = /v1/chat/completions {
$(rate_limit_headers x)
      return 200 '$ANSWER';
    }
  }
  server {
    listen 127.0.0.1:$PADDED_PORT;
    location = /v1/chat/completions {
$(rate_limit_headers z)
      return 200 '$ANSWER';
    }
  }
  server {
    listen 127.0.0.1:$STATUS_PORT;
    location = /status { stub_status; }
  }"
taskset -c "$LOAD_CPU" nginx -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" -e "$TMP/nginx/error.log" \
  >"$TMP/nginx/stdout" 2>&1 &
NGINX_PID=$!
PIDS+=("$NGINX_PID")
for port in "$PLAIN_PORT" "$QUOTA_PORT" "$PADDED_PORT" "$STATUS_PORT"; do
  wait_for_tcp "$port" "$NGINX_PID" "$TMP/nginx/error.log" || fail "nginx did not start"
done
ANSWER_BYTES="$(curl -sS --max-time 5 -o "$TMP/direct.json" -w '%{size_download}' -d '{}' \
  "http://127.0.0.1:$PLAIN_PORT/v1/chat/completions")"
python3 -c 'import json, sys; a = json.load(open(sys.argv[1])); assert a["usage"]["total_tokens"] > 0' \
  "$TMP/direct.json" || fail "nginx's fixed answer is not the expected JSON"
# six_headers PORT LETTER: how many of the six LETTER-ratelimit-… fields PORT's answer carries.
six_headers() {
  curl -sS --max-time 5 -D - -o /dev/null -d '{}' "http://127.0.0.1:$1/v1/chat/completions" |
    grep -ciE "^$2-ratelimit-(limit|remaining|reset)-(requests|tokens):" || true
}
QUOTA_HEADERS="$(six_headers "$QUOTA_PORT" x)"
[[ "$QUOTA_HEADERS" == 6 ]] || fail "the quota upstream sent $QUOTA_HEADERS of the 6 rate-limit headers"
PADDED_HEADERS="$(six_headers "$PADDED_PORT" z)"
[[ "$PADDED_HEADERS" == 6 && "$(six_headers "$PADDED_PORT" x)" == 0 ]] ||
  fail "the control upstream sent $PADDED_HEADERS of its 6 other headers (and must send no rate-limit header)"
log "nginx $(nginx -v 2>&1 | cut -d/ -f2): pid $NGINX_PID, 1 worker, affinity $(taskset -cp "$NGINX_PID" | awk '{print $NF}'); a $ANSWER_BYTES-byte answer on 127.0.0.1:$PLAIN_PORT, the same with 6 rate-limit headers on :$QUOTA_PORT and with 6 other headers as long on :$PADDED_PORT, stub_status on :$STATUS_PORT"

# --- the floor (timed runs only): a second nginx, one worker, on CPU GATEWAY_CPU ------------------
# It answers the same fixed body itself: what receiving a request and sending this answer costs
# a lean server here, the least a cache hit could cost.
FLOOR_PORT=""
FLOOR_WORKER=""
if [[ "$COUNT" != 1 ]]; then
  FLOOR_PORT="$(free_port)"
  nginx_conf "$TMP/floor" "$KEEP_ALIVE_JSON
  server {
    listen 127.0.0.1:$FLOOR_PORT;
    location = /v1/chat/completions { return 200 '$ANSWER'; }
  }"
  taskset -c "$GATEWAY_CPU" nginx -p "$TMP/floor" -c "$TMP/floor/nginx.conf" -e "$TMP/floor/error.log" \
    >"$TMP/floor/stdout" 2>&1 &
  FLOOR_PID=$!
  PIDS+=("$FLOOR_PID")
  wait_for_tcp "$FLOOR_PORT" "$FLOOR_PID" "$TMP/floor/error.log" || fail "the floor nginx did not start"
  FLOOR_WORKER="$(pgrep -P "$FLOOR_PID" | head -1)"
  [[ -n "$FLOOR_WORKER" ]] || fail "the floor nginx has no worker process"
  FLOOR_BYTES="$(curl -sS --max-time 5 -o /dev/null -w '%{size_download}' -d '{}' \
    "http://127.0.0.1:$FLOOR_PORT/v1/chat/completions")"
  [[ "$FLOOR_BYTES" == "$ANSWER_BYTES" ]] || fail "the floor nginx answered $FLOOR_BYTES bytes, not $ANSWER_BYTES"
  log "floor: nginx worker pid $FLOOR_WORKER on 127.0.0.1:$FLOOR_PORT, affinity $(taskset -cp "$FLOOR_WORKER" | awk '{print $NF}'), the same $ANSWER_BYTES-byte answer"
fi

# --- the gateway: one worker, on CPU GATEWAY_CPU --------------------------------------------------
access_log_value="$ACCESS_LOG"
[[ "$access_log_value" == off ]] && access_log_value='"off"'
cat >"$TMP/gateway.yaml" <<EOF
listen: 127.0.0.1:0
workers: 1
access_log: $access_log_value
auth:
  client_keys:
    - name: bench
      key_env: CUTOVER_CLIENT_KEY
admin:
  listen: 127.0.0.1:0
  token_env: CUTOVER_BENCH_ADMIN_TOKEN
providers:
  upstream:
    base_url: http://127.0.0.1:$PLAIN_PORT/v1
    no_api_key: true
    models: {plain: bench-gpt-4.1, cached: bench-gpt-4.1}
    max_connections: 256
  upstream-quota:
    base_url: http://127.0.0.1:$QUOTA_PORT/v1
    no_api_key: true
    models: {quota: bench-gpt-4.1}
    max_connections: 256
  upstream-padded:
    base_url: http://127.0.0.1:$PADDED_PORT/v1
    no_api_key: true
    models: {padded: bench-gpt-4.1}
    max_connections: 256
routes:
  - models: [plain]
    provider: upstream
  - models: [cached]
    provider: upstream
    cache: {ttl: $CACHE_TTL, max_bytes: $CACHE_MAX_BYTES, max_entries: $CACHE_MAX_ENTRIES, shared_across_keys: false}
  - models: [quota]
    provider: upstream-quota
  - models: [padded]
    provider: upstream-padded
EOF
LAUNCH=()
if [[ "$COUNT" == 1 ]]; then
  mkdir -p "$TMP/callgrind"
  LAUNCH=(valgrind --tool=callgrind --separate-threads=yes --dump-instr=no --compress-strings=no
    --compress-pos=no "--callgrind-out-file=$TMP/callgrind/out")
fi
taskset -c "$GATEWAY_CPU" "${LAUNCH[@]}" "$BIN" serve -c "$TMP/gateway.yaml" >"$TMP/gateway.stdout" 2>"$TMP/gateway.stderr" &
GATEWAY_PID=$!
PIDS+=("$GATEWAY_PID")
# valgrind's start is slow: five minutes at most under it, ten seconds otherwise.
START_TENTHS="$([[ "$COUNT" == 1 ]] && echo 3000 || echo 100)"
GATEWAY_PORT="$(wait_for_log "$TMP/gateway.stderr" "$GATEWAY_PID" 'listening on' "$START_TENTHS")"
ADMIN_PORT="$(wait_for_log "$TMP/gateway.stderr" "$GATEWAY_PID" 'admin API on' "$START_TENTHS")"
log "gateway: pid $GATEWAY_PID on 127.0.0.1:$GATEWAY_PORT ($(grep -oE 'with [0-9]+ workers?' "$TMP/gateway.stderr" | head -1)), admin on :$ADMIN_PORT, affinity $(taskset -cp "$GATEWAY_PID" | awk '{print $NF}'), access log $ACCESS_LOG"

# --- checks before any load -----------------------------------------------------------------------
next_seed_base
expect_chat plain "$SEED_BASE" none "a: route without cache"
next_seed_base
expect_chat quota "$SEED_BASE" none "d: route to the upstream with rate-limit headers"
QUOTA_SEEN="$(curl -sS --max-time 5 -H "Authorization: Bearer $CUTOVER_BENCH_ADMIN_TOKEN" \
  "http://127.0.0.1:$ADMIN_PORT/admin/v1/quotas" | python3 -c '
import json, sys
for q in json.load(sys.stdin)["quotas"]:
    if q["provider"] == "upstream-quota":
        print("reported=%s request_limit=%s token_limit=%s requests_reset_ms=%s exhausted=%s" % (
            q["reported"], q["request_limit"], q["token_limit"], q["requests_reset_ms"], q["exhausted"]))')"
[[ "$QUOTA_SEEN" == "reported=True request_limit=1000000000 "* && "$QUOTA_SEEN" == *"exhausted=False" ]] ||
  fail "the gateway did not record the quota upstream's headers: ${QUOTA_SEEN:-nothing}"
log "check: d: the gateway recorded the headers: $QUOTA_SEEN"
next_seed_base
expect_chat padded "$SEED_BASE" none "e: route to the upstream with the six other headers"
next_seed_base
expect_chat cached "$SEED_BASE" miss "b: a fresh seed on the cached route"
expect_chat cached "$HIT_SEED" miss "c: the hit run's body, first time"
before="$(nginx_requests)"
expect_chat cached "$HIT_SEED" hit "c: the hit run's body, again"
after="$(nginx_requests)"
# The second stub_status query counts itself: one more means the hit never reached nginx.
[[ $((after - before)) == 1 ]] || fail "nginx saw $((after - before - 1)) request(s) for a cache hit"
log "check: c: nginx saw no request for the hit"

# --- load: ROUNDS rounds of a, d, e, b, c ---------------------------------------------------------
RUN_IDS=(a d e b c)
[[ "$COUNT" == 1 ]] || RUN_IDS+=(f)
declare -A R_LABEL=([a]="a: proxied, no cache" [b]="b: cache, every request a miss"
  [c]="c: cache, every request a hit" [d]="d: proxied, upstream sends rate-limit headers"
  [e]="e: proxied, upstream sends six other headers as long"
  [f]="f: no gateway, nginx answers itself on CPU $GATEWAY_CPU (the floor)")
declare -A R_MODEL=([a]=plain [b]=cached [c]=cached [d]=quota [e]=padded [f]=cached)
declare -A R_SEED=([a]=distinct [b]=distinct [c]=same [d]=distinct [e]=distinct [f]=same)
declare -A RPS CPU_US USER_US SYSTEM_US P99 NGINX_N HITS MISSES EVICT UTIL OTHER NICE0 LOADBUSY NICE1 BAD IR

# worker_instructions: the worker thread's instructions in callgrind's latest dump (one file per
# thread, named out.DUMP-THREAD; the worker's event loop is the thread that executed the most).
worker_instructions() {
  local latest
  latest="$(find "$TMP/callgrind" -name 'out.*-*' | sed -E 's/.*out\.([0-9]+)-.*/\1/' | sort -n | tail -1)"
  [[ -n "$latest" ]] || fail "no callgrind dump in $TMP/callgrind"
  for f in "$TMP/callgrind/out.$latest"-*; do awk '/^(summary|totals):/ { print $2; exit }' "$f"; done | sort -g | tail -1
}

# keep_worker_file RUN ROUND: copies the latest dump's worker-thread file into BENCH_KEEP.
keep_worker_file() {
  local latest top f
  [[ -n "${BENCH_KEEP:-}" ]] || return 0
  mkdir -p "$BENCH_KEEP"
  latest="$(find "$TMP/callgrind" -name 'out.*-*' | sed -E 's/.*out\.([0-9]+)-.*/\1/' | sort -n | tail -1)"
  top="$(worker_instructions)"
  for f in "$TMP/callgrind/out.$latest"-*; do
    if awk '/^(summary|totals):/ { print $2; exit }' "$f" | grep -qx "$top"; then
      cp "$f" "$BENCH_KEEP/$1-$2.callgrind"
      return 0
    fi
  done
}

pct() { awk -v x="$1" -v t="$2" 'BEGIN { x = t ? 100 * x / t : 0; printf "%.0f", x < 0 ? 0 : x }'; }

# run_case RUN ROUND
run_case() {
  local id="$1" r="$2" out="$TMP/wrk-$1-$2.txt" url="http://127.0.0.1:$GATEWAY_PORT/v1/chat/completions"
  # The process whose CPU is measured: the gateway, or for f the floor's nginx worker.
  local measured="$GATEWAY_PID"
  [[ "$id" == f ]] && { measured="$FLOOR_WORKER"; url="http://127.0.0.1:$FLOOR_PORT/v1/chat/completions"; }
  local -x BENCH_BODY_PREFIX BENCH_BODY_SUFFIX="$BODY_SUFFIX" BENCH_SEED="${R_SEED[$id]}" BENCH_SEED_BASE
  local -x BENCH_WRK_THREADS="$WRK_THREADS"
  BENCH_BODY_PREFIX="$(body_prefix "${R_MODEL[$id]}")"
  BENCH_SEED_BASE="$HIT_SEED"
  if [[ "$BENCH_SEED" == distinct ]]; then next_seed_base; BENCH_SEED_BASE="$SEED_BASE"; fi
  taskset -c "$LOAD_CPU" wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"${WARMUP}s" --timeout 5s \
    -s "$BENCH/cache.lua" "$url" >"$TMP/warmup-$1-$2.txt"
  if [[ "$BENCH_SEED" == distinct ]]; then next_seed_base; BENCH_SEED_BASE="$SEED_BASE"; fi
  local n0 n1 s0 s1 g0 g1 us0 us1 u0 u1 sy0 sy1 c0 c1 l0 l1 requests b0 nc0 t0 b1 nc1 t1 h0 m0 e0 h1 m1 e1 entries
  n0="$(nginx_requests)"
  s0="$(cache_stats)"
  g0="$(proc_ticks "$measured")"
  us0="$(proc_user_system "$measured")"
  c0="$(cpu_line "$GATEWAY_CPU")"
  l0="$(cpu_line "$LOAD_CPU")"
  [[ "$COUNT" == 1 ]] && { callgrind_control -z "$GATEWAY_PID" >/dev/null || fail "callgrind_control -z failed"; }
  local profiler=""
  if [[ -n "${BENCH_PERF:-}" && "$COUNT" != 1 ]]; then
    mkdir -p "$BENCH_PERF"
    perf record -e cpu-clock -F 4000 -g -p "$GATEWAY_PID" -o "$BENCH_PERF/$id-$r.perf" \
      -- sleep "$DURATION" >/dev/null 2>&1 &
    profiler=$!
  fi
  taskset -c "$LOAD_CPU" wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --timeout 5s --latency \
    -s "$BENCH/cache.lua" "$url" >"$out"
  [[ -n "$profiler" ]] && { wait "$profiler" || fail "perf record failed"; }
  [[ "$COUNT" == 1 ]] && { callgrind_control -d "$GATEWAY_PID" >/dev/null || fail "callgrind_control -d failed"; }
  g1="$(proc_ticks "$measured")"
  us1="$(proc_user_system "$measured")"
  c1="$(cpu_line "$GATEWAY_CPU")"
  l1="$(cpu_line "$LOAD_CPU")"
  s1="$(cache_stats)"
  n1="$(nginx_requests)"
  grep -q '^BENCH ' "$out" || { echo "bench: wrk printed no summary for run $id:" >&2; cat "$out" >&2; exit 1; }
  requests="$(kv requests "$out")"
  RPS[$id,$r]="$(kv rps "$out")"
  P99[$id,$r]="$(kv p99_us "$out")"
  CPU_US[$id,$r]="$(awk -v t="$((g1 - g0))" -v hz="$CLK_TCK" -v n="$requests" \
    'BEGIN { printf "%.1f", n ? t / hz * 1e6 / n : 0 }')"
  read -r u0 sy0 <<<"$us0"
  read -r u1 sy1 <<<"$us1"
  USER_US[$id,$r]="$(awk -v t="$((u1 - u0))" -v hz="$CLK_TCK" -v n="$requests" \
    'BEGIN { printf "%.1f", n ? t / hz * 1e6 / n : 0 }')"
  SYSTEM_US[$id,$r]="$(awk -v t="$((sy1 - sy0))" -v hz="$CLK_TCK" -v n="$requests" \
    'BEGIN { printf "%.1f", n ? t / hz * 1e6 / n : 0 }')"
  NGINX_N[$id,$r]=$((n1 - n0 - 1))  # less the stub_status query itself
  [[ "$COUNT" == 1 ]] && IR[$id,$r]="$(($(worker_instructions) / requests))" && keep_worker_file "$id" "$r"
  read -r h0 m0 e0 _ <<<"$s0"
  read -r h1 m1 e1 entries <<<"$s1"
  HITS[$id,$r]=$((h1 - h0))
  MISSES[$id,$r]=$((m1 - m0))
  EVICT[$id,$r]=$((e1 - e0))
  read -r b0 nc0 t0 <<<"$c0"
  read -r b1 nc1 t1 <<<"$c1"
  UTIL[$id,$r]="$(pct "$((g1 - g0))" "$((t1 - t0))")"
  OTHER[$id,$r]="$(pct "$((b1 - b0 - (g1 - g0)))" "$((t1 - t0))")"
  NICE0[$id,$r]="$(pct "$((nc1 - nc0))" "$((t1 - t0))")"
  read -r b0 nc0 t0 <<<"$l0"
  read -r b1 nc1 t1 <<<"$l1"
  LOADBUSY[$id,$r]="$(pct "$((b1 - b0))" "$((t1 - t0))")"
  NICE1[$id,$r]="$(pct "$((nc1 - nc0))" "$((t1 - t0))")"
  BAD[$id,$r]="$(($(kv non2xx "$out") + $(kv connect_errors "$out") + $(kv read_errors "$out") + \
    $(kv write_errors "$out") + $(kv timeouts "$out")))"
  log "round $r, ${R_LABEL[$id]}: $([[ "$COUNT" == 1 ]] && echo "${IR[$id,$r]} worker instructions/req (under callgrind), ")${RPS[$id,$r]} req/s, ${CPU_US[$id,$r]} µs CPU/req (user ${USER_US[$id,$r]}, system ${SYSTEM_US[$id,$r]}), p99 ${P99[$id,$r]} µs; nginx saw ${NGINX_N[$id,$r]} of $requests; cache hits ${HITS[$id,$r]}, misses ${MISSES[$id,$r]}, evictions ${EVICT[$id,$r]} ($entries entries); gateway ${UTIL[$id,$r]} % of CPU $GATEWAY_CPU (others ${OTHER[$id,$r]} %, niced ${NICE0[$id,$r]} %), CPU $LOAD_CPU ${LOADBUSY[$id,$r]} % (niced ${NICE1[$id,$r]} %), non-2xx+errors ${BAD[$id,$r]}"
  # A miss run must miss, a hit run hit, and every request but the hits reach nginx.
  case "$id" in
    a | d) ((HITS[$id,$r] == 0 && MISSES[$id,$r] == 0 && NGINX_N[$id,$r] >= requests)) ||
      fail "run $id: ${HITS[$id,$r]} cache hits, ${MISSES[$id,$r]} misses, nginx saw ${NGINX_N[$id,$r]}, for $requests requests" ;;
    b) ((HITS[$id,$r] == 0 && MISSES[$id,$r] >= requests && NGINX_N[$id,$r] >= requests)) ||
      fail "run b: ${HITS[$id,$r]} hits, ${MISSES[$id,$r]} misses, nginx saw ${NGINX_N[$id,$r]}, for $requests requests" ;;
    c) ((MISSES[$id,$r] == 0 && HITS[$id,$r] >= requests && NGINX_N[$id,$r] == 0)) ||
      fail "run c: ${HITS[$id,$r]} hits, ${MISSES[$id,$r]} misses, nginx saw ${NGINX_N[$id,$r]}, for $requests requests" ;;
    f) ((HITS[$id,$r] == 0 && MISSES[$id,$r] == 0 && NGINX_N[$id,$r] == 0 && requests > 0)) ||
      fail "run f: the gateway or the upstream saw requests meant for the floor's nginx" ;;
  esac
}

# quiet_round R: whether nothing else got in the way in round R: in each of its runs the gateway
# had ≥ QUIET_GATEWAY % of its CPU, everything else together (normal and niced) ≤ QUIET_OTHERS %
# of that CPU, and niced work ≤ QUIET_OTHERS % of the load's CPU.
quiet_round() {
  local id
  for id in "${RUN_IDS[@]}"; do
    ((UTIL[$id,$1] >= QUIET_GATEWAY && OTHER[$id,$1] + NICE0[$id,$1] <= QUIET_OTHERS && \
      NICE1[$id,$1] <= QUIET_OTHERS)) || return 1
  done
}

QUIET_ROUNDS=()
NOISY_ROUNDS=()
ROUNDS_RUN=0
for r in $(seq "$MAX_ROUNDS"); do
  log "round $r (${#QUIET_ROUNDS[@]} of $ROUNDS quiet rounds so far, $MAX_ROUNDS rounds at most): ${WARMUP}s warm-up + ${DURATION}s measured per run, $CONNECTIONS connections, $WRK_THREADS wrk thread(s)"
  for id in "${RUN_IDS[@]}"; do
    run_case "$id" "$r"
  done
  ROUNDS_RUN="$r"
  if quiet_round "$r"; then
    QUIET_ROUNDS+=("$r")
  else
    NOISY_ROUNDS+=("$r")
    log "round $r was not quiet (other work on the CPUs; see the lines above): another round follows if $MAX_ROUNDS allow"
  fi
  ((${#QUIET_ROUNDS[@]} < ROUNDS)) || break
done
# The medians come from the quiet rounds when there are at least two of them (or ROUNDS is 1),
# from every round otherwise.
if ((${#QUIET_ROUNDS[@]} >= (ROUNDS < 2 ? ROUNDS : 2))); then
  USED_ROUNDS=("${QUIET_ROUNDS[@]}")
  USED_WHICH="the ${#QUIET_ROUNDS[@]} quiet round(s) ($(IFS=,; echo "${QUIET_ROUNDS[*]}"))"
else
  mapfile -t USED_ROUNDS < <(seq "$ROUNDS_RUN")
  USED_WHICH="all $ROUNDS_RUN rounds (only ${#QUIET_ROUNDS[@]} quiet)"
fi

# The hit still comes back after the load (and nothing in the cache's way changed).
expect_chat cached "$HIT_SEED" hit "c: the hit run's body, after the load"

GATEWAY_PROBLEMS="$({ grep -ciE '\b(warn|warning|error|critical)\b' "$TMP/gateway.stderr" || true; })"
NGINX_PROBLEMS="$({ grep -ciE '\b(warn|error|crit|alert|emerg)\b' "$TMP/nginx/error.log" || true; })"
LOAD_AFTER="$(cut -d' ' -f1-3 /proc/loadavg)"
BUSY_SECONDS="$(cat "$TMP/busy-seconds" 2>/dev/null || echo 0)"
FINISHED_IN=$SECONDS

if [[ "$COUNT" == 1 ]]; then
  # shellcheck source=bench/cache_counted.bash
  source "$BENCH/cache_counted.bash"
  exit 0
fi

# --- summary -----------------------------------------------------------------------------------------
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
minmax() { printf '%s\n' "$@" | sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%s–%s", lo, hi }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b ? a / b : 0 }'; }
ms() { awk -v x="$1" 'BEGIN { printf "%.2f", x / 1000 }'; }
# verdict OK SETTLED: met or missed by the ratio of the medians; "not established" when the rounds'
# own ratios fall on both sides of the target.
verdict() {
  local v="**missed**"
  [[ "$1" == 1 ]] && v=met
  [[ "${2:-}" == *disagree* ]] && v="$v, not established"
  echo "$v"
}

declare -A M_RPS M_CPU M_USER M_SYSTEM M_P99 M_UTIL M_OTHER M_NICE0 M_LOADBUSY M_NICE1 M_BAD M_NGINX SPREAD_CPU ROUND_CPU
ANY_BAD=0
for id in "${RUN_IDS[@]}"; do
  rps=() cpu=() user=() system=() p99=() util=() other=() nice0=() loadbusy=() nice1=() nginx=()
  bad=0
  for r in "${USED_ROUNDS[@]}"; do
    rps+=("${RPS[$id,$r]}")
    cpu+=("${CPU_US[$id,$r]}")
    user+=("${USER_US[$id,$r]}")
    system+=("${SYSTEM_US[$id,$r]}")
    p99+=("${P99[$id,$r]}")
    util+=("${UTIL[$id,$r]}")
    other+=("${OTHER[$id,$r]}")
    nice0+=("${NICE0[$id,$r]}")
    loadbusy+=("${LOADBUSY[$id,$r]}")
    nice1+=("${NICE1[$id,$r]}")
    nginx+=("${NGINX_N[$id,$r]}")
  done
  all_cpu=()
  for r in $(seq "$ROUNDS_RUN"); do
    bad=$((bad + ${BAD[$id,$r]}))
    if [[ " ${NOISY_ROUNDS[*]} " == *" $r "* ]]; then all_cpu+=("${CPU_US[$id,$r]}*"); else all_cpu+=("${CPU_US[$id,$r]}"); fi
  done
  M_RPS[$id]="$(awk -v x="$(median "${rps[@]}")" 'BEGIN { printf "%.0f", x }')"
  M_CPU[$id]="$(awk -v x="$(median "${cpu[@]}")" 'BEGIN { printf "%.1f", x }')"
  M_USER[$id]="$(awk -v x="$(median "${user[@]}")" 'BEGIN { printf "%.1f", x }')"
  M_SYSTEM[$id]="$(awk -v x="$(median "${system[@]}")" 'BEGIN { printf "%.1f", x }')"
  M_P99[$id]="$(median "${p99[@]}")"
  M_UTIL[$id]="$(median "${util[@]}")"
  M_OTHER[$id]="$(median "${other[@]}")"
  M_NICE0[$id]="$(median "${nice0[@]}")"
  M_LOADBUSY[$id]="$(median "${loadbusy[@]}")"
  M_NICE1[$id]="$(median "${nice1[@]}")"
  M_NGINX[$id]="$(awk -v x="$(median "${nginx[@]}")" 'BEGIN { printf "%.0f", x }')"
  M_BAD[$id]="$bad"
  SPREAD_CPU[$id]="$(awk -v lo="$(printf '%s\n' "${cpu[@]}" | sort -g | head -1)" \
    -v hi="$(printf '%s\n' "${cpu[@]}" | sort -g | tail -1)" -v m="${M_CPU[$id]}" \
    'BEGIN { printf "%.1f", m ? 100 * (hi - lo) / m : 0 }')"
  ROUND_CPU[$id]="$(IFS=/; echo "${all_cpu[*]}")"
  ((bad == 0)) || ANY_BAD=1
done

# Per-round ratios (each run against the a run of its own round) and their spread.
round_ratios() { # round_ratios NUM DEN -> the ratios NUM/DEN, one per round
  local r
  for r in "${USED_ROUNDS[@]}"; do ratio "${CPU_US[$1,$r]}" "${CPU_US[$2,$r]}"; echo; done
}
mapfile -t HIT_RATIOS < <(round_ratios a c)
mapfile -t MISS_RATIOS < <(round_ratios b a)
mapfile -t QUOTA_RATIOS < <(round_ratios d e)
mapfile -t HEADERS_RATIOS < <(round_ratios d a)
mapfile -t FLOOR_RATIOS < <(round_ratios a f)
HIT_X="$(ratio "${M_CPU[a]}" "${M_CPU[c]}")"
MISS_X="$(ratio "${M_CPU[b]}" "${M_CPU[a]}")"
QUOTA_X="$(ratio "${M_CPU[d]}" "${M_CPU[e]}")"
HEADERS_X="$(ratio "${M_CPU[d]}" "${M_CPU[a]}")"
FLOOR_X="$(ratio "${M_CPU[a]}" "${M_CPU[f]}")"
OK_HIT="$(awk -v x="$HIT_X" 'BEGIN { print (x >= 5) ? 1 : 0 }')"
OK_MISS="$(awk -v x="$MISS_X" 'BEGIN { print (x <= 1.05 + 1e-9) ? 1 : 0 }')"
OK_QUOTA="$(awk -v x="$QUOTA_X" 'BEGIN { print (x <= 1.01 + 1e-9) ? 1 : 0 }')"
pct_of() { awk -v x="$1" 'BEGIN { printf "%+.1f %%", 100 * (x - 1) }'; }
# Whether every round's ratio is on the same side of the target as the median's.
settled() { # settled TARGET OP RATIO... -> "all N rounds agree" or "rounds disagree"
  local target="$1" op="$2" x agree=0 n=0
  shift 2
  for x in "$@"; do
    n=$((n + 1))
    agree=$((agree + $(awk -v x="$x" -v t="$target" -v op="$op" 'BEGIN { print (op == "ge" ? x >= t : x <= t + 1e-9) ? 1 : 0 }')))
  done
  if ((agree == n || agree == 0)); then echo "all $n rounds on the same side"; else echo "**rounds disagree: $agree of $n within**"; fi
}

ALL_MET=$((OK_HIT && OK_MISS && OK_QUOTA))
CONTENDED=0
((${#QUIET_ROUNDS[@]} >= ROUNDS)) || CONTENDED=1
{
  echo "## cutover response cache and quota benchmark: $STARTED"
  echo
  echo "Gateway \`$BIN\` (built $(date -u -r "$BIN" '+%Y-%m-%d %H:%M UTC'); this checkout: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)), \`workers: 1\`, access log $ACCESS_LOG, pinned to CPU $GATEWAY_CPU; wrk ($WRK_THREADS thread, $CONNECTIONS connections, closed loop) and nginx $(nginx -v 2>&1 | cut -d/ -f2) (1 worker, a fixed $ANSWER_BYTES-byte \`chat.completion\`) on CPU $LOAD_CPU."
  echo "Cache: ttl $CACHE_TTL, max_entries $CACHE_MAX_ENTRIES, max_bytes $CACHE_MAX_BYTES, per client key. Rounds of a, d, e, b, c, each ${WARMUP}s warm-up + ${DURATION}s measured, until $ROUNDS were quiet ($MAX_ROUNDS at most): $ROUNDS_RUN run, quiet: ${QUIET_ROUNDS[*]:-none} (a round is quiet when, in each of its runs, the gateway had ≥ $QUIET_GATEWAY % of CPU $GATEWAY_CPU, all other work ≤ $QUIET_OTHERS % of it and niced work ≤ $QUIET_OTHERS % of CPU $LOAD_CPU). Medians and spreads (min–max) over $USED_WHICH; the per-round column shows every round, * marking those that were not quiet."
  echo "Load average $LOAD_BEFORE before, $LOAD_AFTER after; a compiler or linker ran alongside in $BUSY_SECONDS of ${FINISHED_IN} s; warnings/errors logged: gateway $GATEWAY_PROBLEMS, nginx $NGINX_PROBLEMS."
  echo "CPU shares are medians over the measured runs, from /proc/stat: \"CPU $GATEWAY_CPU others\" is what anything but the gateway used of CPU $GATEWAY_CPU at normal priority (including interrupts and loopback softirq work), \"CPU $LOAD_CPU\" all normal-priority use of CPU $LOAD_CPU (wrk, nginx, anything else); \"niced\" is time taken by niced background processes. The gateway is the bottleneck only where its share of CPU $GATEWAY_CPU nears 100 %."
  echo
  echo "| run | req/s | CPU µs/req | user / system µs/req | spread of CPU/req | CPU µs/req per round (* not quiet) | p99 ms | requests nginx saw (median) | gateway % of CPU $GATEWAY_CPU | CPU $GATEWAY_CPU others % (niced) | CPU $LOAD_CPU % (niced) | non-2xx + errors |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  for id in "${RUN_IDS[@]}"; do
    printf '| %s | %s | %s | %s / %s | %s %% | %s | %s | %s | %s | %s | %s | %s |\n' "${R_LABEL[$id]}" "${M_RPS[$id]}" \
      "${M_CPU[$id]}" "${M_USER[$id]}" "${M_SYSTEM[$id]}" "${SPREAD_CPU[$id]}" "${ROUND_CPU[$id]}" "$(ms "${M_P99[$id]}")" "${M_NGINX[$id]}" \
      "${M_UTIL[$id]}" "${M_OTHER[$id]} (${M_NICE0[$id]})" "${M_LOADBUSY[$id]} (${M_NICE1[$id]})" "${M_BAD[$id]}"
  done
  echo
  echo "| target | measured (ratio of medians) | per round | verdict |"
  echo "|---|---|---|---|"
  echo "| a cache hit at least 5 × cheaper in CPU than a proxied request: a / c ≥ 5 | ${M_CPU[a]} / ${M_CPU[c]} µs = $HIT_X × | $(minmax "${HIT_RATIOS[@]}") ×; $(settled 5 ge "${HIT_RATIOS[@]}") | $(verdict "$OK_HIT" "$(settled 5 ge "${HIT_RATIOS[@]}")") |"
  echo "| a miss costs ≤ 5 % more CPU than no cache: b / a ≤ 1.05 | ${M_CPU[b]} / ${M_CPU[a]} µs = $MISS_X × ($(pct_of "$MISS_X")) | $(minmax "${MISS_RATIOS[@]}") ×; $(settled 1.05 le "${MISS_RATIOS[@]}") | $(verdict "$OK_MISS" "$(settled 1.05 le "${MISS_RATIOS[@]}")") |"
  echo "| quota bookkeeping ≤ 1 % CPU per request: d / e ≤ 1.01 | ${M_CPU[d]} / ${M_CPU[e]} µs = $QUOTA_X × ($(pct_of "$QUOTA_X")) | $(minmax "${QUOTA_RATIOS[@]}") ×; $(settled 1.01 le "${QUOTA_RATIOS[@]}") | $(verdict "$OK_QUOTA" "$(settled 1.01 le "${QUOTA_RATIOS[@]}")") |"
  echo "| (no target) the six headers' whole cost, receiving and parsing them included: d / a | ${M_CPU[d]} / ${M_CPU[a]} µs = $HEADERS_X × ($(pct_of "$HEADERS_X")) | $(minmax "${HEADERS_RATIOS[@]}") × | |"
  echo "| (no target) the most any hit could be cheaper than a proxied request here, were it as cheap as nginx answering a fixed body itself: a / f | ${M_CPU[a]} / ${M_CPU[f]} µs = $FLOOR_X × | $(minmax "${FLOOR_RATIOS[@]}") × | $(awk -v x="$FLOOR_X" 'BEGIN { print (x < 5) ? "below the hit target: no hit can reach it on this machine" : "leaves room for the hit target" }') |"
  echo
  echo "Noise: the d runs alone (the same requests on the same route) spread by ${SPREAD_CPU[d]} % of their median CPU/req over the ${#USED_ROUNDS[@]} rounds used, and the e runs by ${SPREAD_CPU[e]} %. A difference smaller than that, such as the 1 % the quota target allows, is not established by this run however the verdict reads (a verdict says \"not established\" where the rounds' own ratios fall on both sides of the target): d and e run back to back in every round so that slow drifts of the machine hit both alike, and the per-round ratios show how much a single pair can be trusted. Both runs' answers carry six extra fields of the same size (about 230 bytes); only d's are the rate-limit headers the gateway reads. \`BENCH_COUNT=1\` counts instructions instead, without this noise."
  if ((CONTENDED)); then
    echo
    echo "**Only ${#QUIET_ROUNDS[@]} of the $ROUNDS quiet rounds asked for came in $ROUNDS_RUN rounds: other work shared the machine, the gateway was not always the bottleneck and waited for requests between wake-ups. CPU per request under such contention is higher and noisier than on a quiet machine; compare runs of one report only.**"
  fi
  if ((ANY_BAD)); then
    echo
    echo "**Some measured requests were not 2xx or failed (last column); those rows are not valid.**"
  fi
} >"$REPORT"

echo
cat "$REPORT"
echo
echo "(written to ${REPORT#"$ROOT/"})"
((ANY_BAD == 0)) || { echo "bench: some measured requests were not 2xx or failed" >&2; exit 1; }
if [[ "$STRICT" == 1 ]] && ((!ALL_MET)); then
  exit 1
fi
