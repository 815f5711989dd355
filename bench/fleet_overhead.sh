#!/usr/bin/env bash
# Fleet mode's cost on the request path (issue #12: "the request path pays nothing"): the
# gateway's CPU per request and throughput with its state in Redis (fleet mode) against SQLite,
# in one run, with the same migration in both.
#
#   bash bench/fleet_overhead.sh          (or `make bench-fleet-overhead`, which builds first)
#
# In fleet mode the migration engine's thread talks to Redis (synchronous hiredis) every
# evaluation_interval: it reads the record, writes this replica's window and heartbeat, reads the
# fleet's windows, and renews the leader's lease about once a second. The workers never do: a
# request is routed by the weight the engine published, assigned by its sticky key and recorded
# in the in-process window, as with SQLite. This benchmark shows whether that holds in numbers.
#
# Layout (issue #14's, as bench/cache.sh): one gateway (`workers: 1`, access log off) runs alone
# on CPU 0 (taskset -c 0); wrk (1 thread, 32 connections, bench/fleet_overhead.lua), the upstream
# and redis-server share CPU 1 (taskset -c 1). Everything listens on 127.0.0.1, on free ports.
# The upstream is nginx (one worker) answering POST /v1/chat/completions with a fixed OpenAI
# `chat.completion` (about 580 bytes, with a usage object) on two ports, one per provider; a
# third port serves nginx's stub_status, whose request count tells how many requests reached it.
# The gateway's configuration is the same in both modes but for `state_store`: one route for
# gpt-4o to `primary`, and a migration of it to `candidate` (both nginx) with shadow off, one
# stage at BENCH_WEIGHT (50 %) that never ends on its own (min_duration 24h, a billion requests),
# lenient gates (so a latency blip cannot roll it back), evaluation_interval BENCH_INTERVAL
# (250ms, the default), sticky key X-User-Id (the default `header:x-user-id`), which wrk cycles
# through BENCH_USERS users: every request goes through the sticky assignment and is recorded in
# the migration's window, and about half of them go to the candidate.
#   A  `state_store: FILE.db` (SQLite), a fresh file per run
#   B  `state_store: {url: redis://127.0.0.1:PORT/0, key_prefix, replica, local_file}` on one
#      throwaway redis-server (no persistence, no password, loopback, CPU 1), a fresh key prefix
#      per run (so each gateway creates the record and takes the lease at once)
#
# A round is one A run then one B run; rounds go on until ROUNDS were quiet or MAX_ROUNDS ran
# (so with the defaults and a quiet machine: A,B,A,B,A,B). Each run starts its own gateway (only
# one is ever alive, so no idle gateway's engine thread shares CPU 0 with the measured one), waits
# until its migration is in the canary phase at the stage's weight (and in B until the store is
# up and this replica leads), sends one request with curl, then runs wrk for WARMUP seconds and
# DURATION seconds measured, and stops the gateway. Checks around each measured run, read from
# GET /admin/v1/migrations/NAME with the admin token (each a failure of the benchmark if it does
# not hold): `store.kind` is "sqlite" (A) or "redis" (B); in B `store.up` and `store.leading`, the
# window hash `{prefix}:migration:NAME:window:GEN` is found by `redis-cli --scan --pattern
# '*window*'` and this replica's entry in it counts at least as many more requests
# (`lifetime_requests`) after the run as wrk completed during it, and the replica's heartbeat is
# fresh; in both the phase, weight and routed weight did not move, and the window's request count
# (the evaluation's primary + candidate requests) grew by at least the requests wrk completed. The
# report gives the candidate's share of those and, for B, the Redis commands the gateway sent
# during the measured run (INFO commandstats, our own INFO excluded).
#
# Per run: req/s (wrk) and CPU per request: the gateway's utime+stime (/proc/PID/stat, all its
# threads: the workers and the engine's thread with its Redis calls) over the measured run divided
# by the requests wrk completed; also p99, the requests nginx saw and, from /proc/stat, the
# gateway's share of CPU 0, everything else's share of it and the niced (background) work on both
# CPUs. Each thread's time on a CPU (/proc/PID/task/TID/schedstat, in ns) splits that CPU: the
# busiest thread is the worker's event loop (with `workers: 1` it serves every request), all the
# others together are the engine's thread (its Redis calls in B), the usage writer, the admin
# API; the report gives both per request and the worker's ratio B/A beside the targets. A round
# is quiet when, in both its runs, the gateway had ≥ QUIET_GATEWAY % of CPU 0, all
# other work (normal and niced) ≤ QUIET_OTHERS % of CPU 0 and niced work ≤ QUIET_OTHERS % of
# CPU 1; on this shared machine other sessions' builds often are not. The medians come from the
# quiet rounds when there are at least two (one when ROUNDS is 1), from all rounds otherwise, and
# the report says which. It gives medians and spreads (min–max) per mode and the ratios B/A of
# the medians, of each round's own pair, and of each B run against the mean of the A runs before
# and after it (B always runs second in its round; this takes a steady drift of the load out).
#
# Target (issue #12): B within 2 % of A in both, i.e. |B/A − 1| ≤ BENCH_TARGET_PCT % for req/s and
# for CPU µs per request (ratio of the medians; BENCH_STRICT=1 exits 1 when either is missed).
# Each verdict also says whether it is established: whether the 95 % interval of the mean of the
# rounds' own ratios (Student's t over their logarithms) lies wholly inside ±2 % (met) or wholly
# outside (missed). On a shared 2-core machine it rarely is: the report gives how far the A runs
# alone spread, and a difference much smaller than that needs many rounds (BENCH_ROUNDS=20).
#
# Environment knobs: CUTOVER_BIN (default build/cutover), BENCH_DURATION (s, 10), BENCH_WARMUP
# (s, 2), BENCH_CONNECTIONS (32), BENCH_THREADS (wrk threads, 1), BENCH_ROUNDS (quiet rounds
# wanted, 3), BENCH_MAX_ROUNDS (2 × ROUNDS, at most 60), BENCH_QUIET_GATEWAY (%, 90),
# BENCH_QUIET_OTHERS (%, 5), BENCH_GATEWAY_CPU (0), BENCH_LOAD_CPU (1), BENCH_WEIGHT (the stage's
# weight in %, 50), BENCH_INTERVAL (evaluation_interval, 250ms), BENCH_USERS (distinct
# X-User-Id values, 1000), BENCH_TARGET_PCT (2), BENCH_LIMIT (s; the whole run stops itself after
# this; default MAX_ROUNDS × 2 × (WARMUP + DURATION + 20) + 60), BENCH_STRICT (1: exit 1 if the
# target is missed), BENCH_COUNT (1: the counted mode of bench/fleet_overhead_counted.bash, which
# counts instructions and system calls per request instead of timing them). A run takes about WARMUP + DURATION + 3 s: about 1.5 min with the defaults
# on a quiet machine, 3 min at most. It exits 1 if a check fails or any measured request was not
# a 2xx. The summary is printed and written to bench/out/fleet_overhead.md.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BENCH="$ROOT/bench"
# shellcheck source=bench/common.sh
source "$BENCH/common.sh"
BIN="${CUTOVER_BIN:-$ROOT/build/cutover}"
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
WEIGHT_PCT="${BENCH_WEIGHT:-50}"
INTERVAL="${BENCH_INTERVAL:-250ms}"
USERS="${BENCH_USERS:-1000}"
TARGET_PCT="${BENCH_TARGET_PCT:-2}"
LIMIT="${BENCH_LIMIT:-$((MAX_ROUNDS * 2 * (WARMUP + DURATION + 20) + 60))}"
STRICT="${BENCH_STRICT:-0}"
COUNT="${BENCH_COUNT:-0}"
# What the gateway is started under (valgrind in the counted mode), and how many 0.1 s waits its
# start may take (valgrind's start is slow).
LAUNCH_PREFIX=()
STARTUP_TRIES=100
OUT_DIR="$BENCH/out"
REPORT="$OUT_DIR/fleet_overhead.md"
MIGRATION=fleet-overhead
MODEL=gpt-4o

for tool in wrk nginx curl python3 taskset redis-server redis-cli; do
  command -v "$tool" >/dev/null || { echo "bench: '$tool' not found (run scripts/install-deps.sh)" >&2; exit 1; }
done
[[ -x "$BIN" ]] || { echo "bench: $BIN not found; build first (make build)" >&2; exit 1; }
for cpu in "$GATEWAY_CPU" "$LOAD_CPU"; do
  taskset -c "$cpu" true 2>/dev/null || { echo "bench: cannot pin to CPU $cpu (nproc: $(nproc))" >&2; exit 1; }
done
[[ "$GATEWAY_CPU" != "$LOAD_CPU" ]] || { echo "bench: the gateway and the load need different CPUs" >&2; exit 1; }
((ROUNDS >= 1 && MAX_ROUNDS >= ROUNDS && MAX_ROUNDS <= 60)) ||
  { echo "bench: need 1 ≤ BENCH_ROUNDS ≤ BENCH_MAX_ROUNDS ≤ 60" >&2; exit 1; }
[[ "$WEIGHT_PCT" =~ ^[0-9]+$ ]] && ((WEIGHT_PCT >= 1 && WEIGHT_PCT <= 99)) ||
  { echo "bench: BENCH_WEIGHT must be a whole percentage from 1 to 99" >&2; exit 1; }
[[ "$INTERVAL" =~ ^[0-9]+(ms|s)$ ]] || { echo "bench: BENCH_INTERVAL must look like 250ms or 1s" >&2; exit 1; }
INTERVAL_MS="$(awk -v l="$INTERVAL" 'BEGIN { if (l ~ /ms$/) print l + 0; else print (l + 0) * 1000 }')"

TMP="$(mktemp -d "${TMPDIR:-/tmp}/cutover-fleet-overhead.XXXXXX")"
PIDS=()

cleanup() {
  local pid i
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do kill -TERM "${PIDS[i]}" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    # Anything that ignores TERM for 10 s gets KILL.
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log() { printf '[fleet-overhead %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
fail() { echo "bench: $*" >&2; exit 1; }

# Drops a pid from the list that cleanup() ends.
forget() {
  local keep=() p
  for p in "${PIDS[@]}"; do [[ "$p" == "$1" ]] || keep+=("$p"); done
  PIDS=("${keep[@]+"${keep[@]}"}")
}

# The whole run is bounded: past BENCH_LIMIT seconds the script ends itself (and cleanup runs).
(
  trap 'kill "$sleeper" 2>/dev/null; exit 0' TERM
  sleep "$LIMIT" &
  sleeper=$!
  wait "$sleeper"
  echo "bench: BENCH_LIMIT (${LIMIT}s) reached; stopping" >&2
  kill -TERM $$
) &
PIDS+=("$!")

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

# thread_ns PID: "TID NANOSECONDS" per thread: the time each has run on a CPU
# (/proc/PID/task/TID/schedstat, the scheduler's own count, not sampled at the tick).
thread_ns() {
  local t
  for t in /proc/"$1"/task/*; do
    printf '%s %s\n' "${t##*/}" "$(cut -d' ' -f1 "$t/schedstat" 2>/dev/null || echo 0)"
  done
}

# thread_split BEFORE AFTER REQUESTS SECONDS: "WORKER_US OTHERS_US OTHERS_MS": per request, the
# busiest thread's time (with `workers: 1`, the worker's event loop: it serves every request) and
# all others' together (the migration engine's thread with its Redis calls, the usage writer, the
# admin API, ...); and the others' in ms per second of the run (what does not scale with requests).
thread_split() {
  awk -v n="$3" -v sec="$4" 'FNR == NR { before[$1] = $2; next }
    { d = $2 - before[$1]; total += d; if (d > top) top = d }
    END { printf "%.1f %.2f %.2f", n ? top / 1000 / n : 0, n ? (total - top) / 1000 / n : 0, sec ? (total - top) / 1e6 / sec : 0 }' "$1" "$2"
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

rcli() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" "$@"; }

# migration_status: "kind up leading phase weight routed_weight generation primary candidate"
# from GET /admin/v1/migrations/NAME (primary and candidate: the evaluation window's requests).
migration_status() {
  curl -sS --max-time 5 -H "Authorization: Bearer $CUTOVER_BENCH_ADMIN_TOKEN" \
    "http://127.0.0.1:$ADMIN_PORT/admin/v1/migrations/$MIGRATION" | python3 -c '
import json, sys
m = json.load(sys.stdin)
s, e = m["store"], m.get("evaluation") or {}
print(s["kind"], str(s["up"]).lower(), str(s["leading"]).lower(), m["phase"], m["weight"],
      m["routed_weight"], m["generation"], e.get("primary_requests", 0), e.get("candidate_requests", 0))'
}

# window_requests GEN: "KEY lifetime_requests" of this replica's entry in the fleet's window hash,
# the key found by SCAN (the throwaway Redis holds only this benchmark's keys); "- 0" when none.
window_requests() {
  local keys key
  keys="$(rcli --scan --pattern "{$KEY_PREFIX}:*window*")"
  key="$(grep -xF "{$KEY_PREFIX}:migration:$MIGRATION:window:$1" <<<"$keys" || true)"
  [[ -n "$key" ]] || { echo "- 0"; return 0; }
  printf '%s ' "$key"
  rcli HGET "$key" "$REPLICA" | python3 -c '
import json, sys
text = sys.stdin.read().strip()
print(json.loads(text)["lifetime_requests"] if text else 0)'
}

# redis_commands: the commands Redis has run so far, INFO's own left out.
redis_commands() {
  rcli INFO commandstats | tr -d '\r' | awk -F'[:=,]' '/^cmdstat_/ && $1 != "cmdstat_info" { n += $3 } END { print n + 0 }'
}

# heartbeat_age_ms: how long ago (Redis's clock) this replica last wrote its window and heartbeat.
heartbeat_age_ms() {
  local beat now
  beat="$(rcli HGET "{$KEY_PREFIX}:replicas" "$REPLICA")"
  now="$(rcli TIME | tr -d '\r' | awk 'NR == 1 { s = $1 } NR == 2 { printf "%.0f", s * 1000 + int($1 / 1000) }')"
  echo $((now - ${beat:-0}))
}

# --- the fixed answer ------------------------------------------------------------------------------
# Goes into nginx.conf between single quotes: no ' and no $ in it.
ANSWER='{"id":"chatcmpl-bench00000000000000000000000000","object":"chat.completion","created":1764460800,"model":"bench-gpt-4.1","choices":[{"index":0,"message":{"role":"assistant","content":"Hello! This is a fixed answer from the benchmark upstream: the same bytes every time. How can I help?","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":11,"completion_tokens":24,"total_tokens":35,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0}},"system_fingerprint":"fp_bench"}'

CLK_TCK="$(getconf CLK_TCK)"
export CUTOVER_CLIENT_KEY="bench-$RANDOM$RANDOM"
export CUTOVER_BENCH_ADMIN_TOKEN="admin-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
export BENCH_MODEL="$MODEL" BENCH_USERS="$USERS"
mkdir -p "$OUT_DIR"
LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
STARTED="$(date -u '+%Y-%m-%d %H:%M UTC')"
busy_monitor &
PIDS+=("$!")
log "gateway on CPU $GATEWAY_CPU; wrk, nginx and redis-server on CPU $LOAD_CPU; $(nproc) cores; load average $LOAD_BEFORE"

# --- the upstream: nginx, one worker, on CPU LOAD_CPU ---------------------------------------------
PRIMARY_PORT="$(free_port)"
CANDIDATE_PORT="$(free_port)"
STATUS_PORT="$(free_port)"
mkdir -p "$TMP/nginx"
NGINX_USER=""
[[ "$(id -u)" == 0 ]] && NGINX_USER="user root root;"  # workers would otherwise drop to nobody
cat >"$TMP/nginx/nginx.conf" <<EOF
daemon off;
worker_processes 1;
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
  keepalive_requests 100000000;
  keepalive_timeout 300s;
  default_type application/json;
  server {
    listen 127.0.0.1:$PRIMARY_PORT;
    location = /v1/chat/completions { return 200 '$ANSWER'; }
  }
  server {
    listen 127.0.0.1:$CANDIDATE_PORT;
    location = /v1/chat/completions { return 200 '$ANSWER'; }
  }
  server {
    listen 127.0.0.1:$STATUS_PORT;
    location = /status { stub_status; }
  }
}
EOF
taskset -c "$LOAD_CPU" nginx -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" -e "$TMP/nginx/error.log" \
  >"$TMP/nginx/stdout" 2>&1 &
NGINX_PID=$!
PIDS+=("$NGINX_PID")
for port in "$PRIMARY_PORT" "$CANDIDATE_PORT" "$STATUS_PORT"; do wait_for_tcp "$port" "$NGINX_PID" "$TMP/nginx/error.log"; done
ANSWER_BYTES="$(curl -sS --max-time 5 -o "$TMP/direct.json" -w '%{size_download}' -d '{}' \
  "http://127.0.0.1:$CANDIDATE_PORT/v1/chat/completions")"
python3 -c 'import json, sys; a = json.load(open(sys.argv[1])); assert a["usage"]["total_tokens"] > 0' \
  "$TMP/direct.json" || fail "nginx's fixed answer is not the expected JSON"
log "nginx $(nginx -v 2>&1 | cut -d/ -f2): pid $NGINX_PID, 1 worker, affinity $(taskset -cp "$NGINX_PID" | awk '{print $NF}'); a $ANSWER_BYTES-byte answer on 127.0.0.1:$PRIMARY_PORT (primary) and :$CANDIDATE_PORT (candidate), stub_status on :$STATUS_PORT"

# --- a throwaway Redis: no persistence, loopback, on CPU LOAD_CPU --------------------------------
REDIS_PORT="$(free_port)"
mkdir -p "$TMP/redis"
cat >"$TMP/redis/redis.conf" <<EOF
port $REDIS_PORT
bind 127.0.0.1
dir $TMP/redis
save ""
appendonly no
loglevel warning
EOF
taskset -c "$LOAD_CPU" redis-server "$TMP/redis/redis.conf" >"$TMP/redis/redis.log" 2>&1 &
REDIS_PID=$!
PIDS+=("$REDIS_PID")
for _ in $(seq 200); do
  [[ "$(rcli ping 2>/dev/null)" == PONG ]] && break
  kill -0 "$REDIS_PID" 2>/dev/null || { cat "$TMP/redis/redis.log" >&2; fail "redis-server exited"; }
  sleep 0.05
done
[[ "$(rcli ping 2>/dev/null)" == PONG ]] || fail "redis-server does not answer on 127.0.0.1:$REDIS_PORT"
REDIS_VERSION="$(redis-server --version | grep -oE 'v=[0-9.]+' | cut -d= -f2)"
log "redis-server $REDIS_VERSION: pid $REDIS_PID on 127.0.0.1:$REDIS_PORT, no persistence, affinity $(taskset -cp "$REDIS_PID" | awk '{print $NF}')"

# --- the gateway: one worker, on CPU GATEWAY_CPU, one per run --------------------------------------
# write_config MODE RUN_NAME: the configuration; only state_store differs between the modes.
write_config() {
  local mode="$1" name="$2" store
  if [[ "$mode" == A ]]; then
    store="state_store: $TMP/$name.db"
  else
    store="state_store:
  url: redis://127.0.0.1:$REDIS_PORT/0
  key_prefix: $KEY_PREFIX
  replica: $REPLICA
  local_file: $TMP/$name-local.db"
  fi
  cat >"$TMP/$name.yaml" <<EOF
listen: 127.0.0.1:0
workers: 1
access_log: "off"
$store
auth:
  client_keys:
    - name: bench
      key_env: CUTOVER_CLIENT_KEY
admin:
  listen: 127.0.0.1:0
  token_env: CUTOVER_BENCH_ADMIN_TOKEN
providers:
  primary:
    base_url: http://127.0.0.1:$PRIMARY_PORT/v1
    no_api_key: true
    models: {$MODEL: bench-primary-4o}
    max_connections: 256
  candidate:
    base_url: http://127.0.0.1:$CANDIDATE_PORT/v1
    no_api_key: true
    models: {$MODEL: bench-candidate-4o}
    max_connections: 256
routes:
  - models: [$MODEL]
    provider: primary
migrations:
  - name: $MIGRATION
    models: [$MODEL]
    primary: primary
    candidate: candidate
    sticky_key: header:x-user-id
    evaluation_interval: $INTERVAL
    # One stage that never ends on its own, and gates that a latency blip cannot breach: the
    # weight stays at the stage's for the whole run (checked around every measured run).
    stages:
      - {weight: $WEIGHT_PCT%, min_duration: 24h, min_requests: 1000000000}
      - {weight: 100%, min_duration: 24h, min_requests: 1000000000}
    gates:
      max_error_rate: 50%
      max_attempt_error_rate: 50%
      latency: [{measure: total, quantile: p95, max_ratio: 10}]
EOF
}

WEIGHT="$(awk -v w="$WEIGHT_PCT" 'BEGIN { print w / 100 }')"
same_weight() { awk -v a="$1" -v b="$WEIGHT" 'BEGIN { exit !(a - b < 1e-9 && b - a < 1e-9) }'; }

# start_gateway MODE RUN_NAME: sets GATEWAY_PID, GATEWAY_PORT, ADMIN_PORT; waits until the
# migration is in canary at the stage's weight (in B: the store up, this replica leading).
start_gateway() {
  local mode="$1" name="$2" st kind up leading phase weight routed rest want=sqlite
  write_config "$mode" "$name"
  taskset -c "$GATEWAY_CPU" "${LAUNCH_PREFIX[@]}" "$BIN" serve -c "$TMP/$name.yaml" >"$TMP/$name.stdout" 2>"$TMP/$name.stderr" &
  GATEWAY_PID=$!
  PIDS+=("$GATEWAY_PID")
  GATEWAY_PORT="$(wait_for_log "$TMP/$name.stderr" "$GATEWAY_PID" 'listening on' "$STARTUP_TRIES")"
  ADMIN_PORT="$(wait_for_log "$TMP/$name.stderr" "$GATEWAY_PID" 'admin API on' "$STARTUP_TRIES")"
  [[ "$mode" == B ]] && want=redis
  for _ in $(seq "$STARTUP_TRIES"); do
    st="$(migration_status 2>/dev/null || true)"
    read -r kind up leading phase weight routed rest <<<"$st"
    if [[ "$kind" == "$want" && "$phase" == canary ]] && same_weight "${weight:-0}" && same_weight "${routed:-0}" &&
      { [[ "$mode" == A ]] || [[ "$up" == true && "$leading" == true ]]; }; then
      break
    fi
    st=""
    sleep 0.1
  done
  [[ -n "$st" ]] || { cat "$TMP/$name.stderr" >&2; fail "$name: the migration is not ready (want store $want, canary at $WEIGHT; last status: $(migration_status 2>&1 || true))"; }
  local status
  status="$(curl -sS -o "$TMP/$name-check.json" -w '%{http_code}' --max-time 5 \
    -H "Authorization: Bearer $CUTOVER_CLIENT_KEY" -H 'Content-Type: application/json' -H 'X-User-Id: check' \
    -d "{\"model\":\"$MODEL\",\"messages\":[{\"role\":\"user\",\"content\":\"Say hello.\"}]}" \
    "http://127.0.0.1:$GATEWAY_PORT/v1/chat/completions")" || status=curl-failed
  if [[ "$status" != 200 ]] || ! grep -q '"chat.completion"' "$TMP/$name-check.json"; then
    cat "$TMP/$name-check.json" >&2 2>/dev/null || true
    fail "$name: the check request answered $status"
  fi
  log "$name: gateway pid $GATEWAY_PID on 127.0.0.1:$GATEWAY_PORT ($(grep -oE 'with [0-9]+ workers?' "$TMP/$name.stderr" | head -1)), admin :$ADMIN_PORT, affinity $(taskset -cp "$GATEWAY_PID" | awk '{print $NF}'); store $kind$([[ "$mode" == B ]] && echo " (up $up, leading $leading, keys {$KEY_PREFIX}:*, replica $REPLICA)"), $phase at $weight"
}

# stop_gateway: TERM (a fleet replica hands its lease back), KILL after 10 s.
stop_gateway() {
  kill -TERM "$GATEWAY_PID" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$GATEWAY_PID" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$GATEWAY_PID" 2>/dev/null || true
  wait "$GATEWAY_PID" 2>/dev/null || true
  forget "$GATEWAY_PID"
}

declare -A RPS CPU_US P99 NGINX_N UTIL OTHER NICE0 LOADBUSY NICE1 BAD CAND_SHARE WIN_DELTA REQS
declare -A REDIS_CMDS REDIS_WIN HEARTBEAT PROBLEMS WORKER_US OTHERS_US OTHERS_MS
pct() { awk -v x="$1" -v t="$2" 'BEGIN { x = t ? 100 * x / t : 0; printf "%.0f", x < 0 ? 0 : x }'; }

# run_case MODE ROUND: one gateway, warm-up, the measured run, the checks around it.
run_case() {
  local mode="$1" r="$2" name="$1$2" out="$TMP/wrk-$1$2.txt"
  local url st0 st1 n0 n1 g0 g1 c0 c1 l0 l1 requests b0 nc0 t0 b1 nc1 t1
  local kind0 up0 lead0 phase0 w0 rw0 gen0 p0 k0 kind1 up1 lead1 phase1 w1 rw1 gen1 p1 k1
  local win0 win1 wkey0 wkey1 cmds0=0 cmds1=0
  KEY_PREFIX="fo-b$r"
  REPLICA="bench-b$r"
  start_gateway "$mode" "$name"
  url="http://127.0.0.1:$GATEWAY_PORT/v1/chat/completions"
  taskset -c "$LOAD_CPU" wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"${WARMUP}s" --timeout 5s \
    -s "$BENCH/fleet_overhead.lua" "$url" >"$TMP/warmup-$name.txt"
  st0="$(migration_status)"
  read -r kind0 up0 lead0 phase0 w0 rw0 gen0 p0 k0 <<<"$st0"
  if [[ "$mode" == B ]]; then
    read -r wkey0 win0 <<<"$(window_requests "$gen0")"
    cmds0="$(redis_commands)"
  fi
  n0="$(nginx_requests)"
  thread_ns "$GATEWAY_PID" >"$TMP/threads0-$name"
  g0="$(proc_ticks "$GATEWAY_PID")"
  c0="$(cpu_line "$GATEWAY_CPU")"
  l0="$(cpu_line "$LOAD_CPU")"
  taskset -c "$LOAD_CPU" wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --timeout 5s --latency \
    -s "$BENCH/fleet_overhead.lua" "$url" >"$out"
  g1="$(proc_ticks "$GATEWAY_PID")"
  thread_ns "$GATEWAY_PID" >"$TMP/threads1-$name"
  c1="$(cpu_line "$GATEWAY_CPU")"
  l1="$(cpu_line "$LOAD_CPU")"
  [[ "$mode" == B ]] && cmds1="$(redis_commands)"
  n1="$(nginx_requests)"
  # The window is written (and evaluated) every interval: wait for two so the last requests are in.
  sleep "$(awk -v ms="$INTERVAL_MS" 'BEGIN { printf "%.3f", 2 * ms / 1000 + 0.1 }')"
  st1="$(migration_status)"
  read -r kind1 up1 lead1 phase1 w1 rw1 gen1 p1 k1 <<<"$st1"
  grep -q '^BENCH ' "$out" || { echo "bench: wrk printed no summary for run $name:" >&2; cat "$out" >&2; exit 1; }
  requests="$(kv requests "$out")"
  REQS[$mode,$r]="$requests"
  RPS[$mode,$r]="$(kv rps "$out")"
  P99[$mode,$r]="$(kv p99_us "$out")"
  CPU_US[$mode,$r]="$(awk -v t="$((g1 - g0))" -v hz="$CLK_TCK" -v n="$requests" \
    'BEGIN { printf "%.1f", n ? t / hz * 1e6 / n : 0 }')"
  NGINX_N[$mode,$r]=$((n1 - n0 - 1))  # less the stub_status query itself
  read -r WORKER_US[$mode,$r] OTHERS_US[$mode,$r] OTHERS_MS[$mode,$r] <<<"$(thread_split "$TMP/threads0-$name" \
    "$TMP/threads1-$name" "$requests" "$(awk -v us="$(kv duration_us "$out")" 'BEGIN { print us / 1e6 }')")"
  read -r b0 nc0 t0 <<<"$c0"
  read -r b1 nc1 t1 <<<"$c1"
  UTIL[$mode,$r]="$(pct "$((g1 - g0))" "$((t1 - t0))")"
  OTHER[$mode,$r]="$(pct "$((b1 - b0 - (g1 - g0)))" "$((t1 - t0))")"
  NICE0[$mode,$r]="$(pct "$((nc1 - nc0))" "$((t1 - t0))")"
  read -r b0 nc0 t0 <<<"$l0"
  read -r b1 nc1 t1 <<<"$l1"
  LOADBUSY[$mode,$r]="$(pct "$((b1 - b0))" "$((t1 - t0))")"
  NICE1[$mode,$r]="$(pct "$((nc1 - nc0))" "$((t1 - t0))")"
  BAD[$mode,$r]="$(($(kv non2xx "$out") + $(kv connect_errors "$out") + $(kv read_errors "$out") + \
    $(kv write_errors "$out") + $(kv timeouts "$out")))"
  WIN_DELTA[$mode,$r]=$(((p1 + k1) - (p0 + k0)))
  CAND_SHARE[$mode,$r]="$(awk -v k="$((k1 - k0))" -v n="${WIN_DELTA[$mode,$r]}" 'BEGIN { printf "%.1f", n ? 100 * k / n : 0 }')"

  # The checks: the store is the mode's, nothing moved, and the migration saw every request.
  local want=sqlite
  [[ "$mode" == B ]] && want=redis
  [[ "$kind0" == "$want" && "$kind1" == "$want" ]] || fail "$name: store.kind is $kind0 then $kind1, not $want"
  [[ "$phase0" == canary && "$phase1" == canary && "$gen0" == "$gen1" ]] && same_weight "$w0" && same_weight "$w1" &&
    same_weight "$rw0" && same_weight "$rw1" ||
    fail "$name: the migration moved during the run: $st0 -> $st1 (kind up leading phase weight routed generation primary candidate)"
  ((WIN_DELTA[$mode,$r] >= requests)) ||
    fail "$name: the migration's window counted ${WIN_DELTA[$mode,$r]} requests during a run that completed $requests"
  REDIS_CMDS[$mode,$r]="-"
  REDIS_WIN[$mode,$r]="-"
  HEARTBEAT[$mode,$r]="-"
  if [[ "$mode" == B ]]; then
    [[ "$up0" == true && "$up1" == true && "$lead0" == true && "$lead1" == true ]] ||
      fail "$name: the fleet store was not up and leading throughout: up $up0 -> $up1, leading $lead0 -> $lead1"
    read -r wkey1 win1 <<<"$(window_requests "$gen1")"
    [[ "$wkey0" != - && "$wkey1" == "$wkey0" ]] ||
      fail "$name: redis-cli --scan --pattern '*window*' found no window key {$KEY_PREFIX}:migration:$MIGRATION:window:$gen1 (before: $wkey0, after: $wkey1)"
    REDIS_WIN[$mode,$r]=$((win1 - win0))
    ((REDIS_WIN[$mode,$r] >= requests)) ||
      fail "$name: this replica's entry in $wkey1 counted ${REDIS_WIN[$mode,$r]} more requests during a run that completed $requests"
    HEARTBEAT[$mode,$r]="$(heartbeat_age_ms)"
    ((HEARTBEAT[$mode,$r] <= 4 * INTERVAL_MS + 1000)) ||
      fail "$name: the replica's heartbeat in {$KEY_PREFIX}:replicas is ${HEARTBEAT[$mode,$r]} ms old"
    REDIS_CMDS[$mode,$r]=$((cmds1 - cmds0))
  fi
  PROBLEMS[$mode,$r]="$({ grep -ciE '\b(warn|warning|error|critical)\b' "$TMP/$name.stderr" || true; })"
  stop_gateway
  log "round $r, $mode: ${RPS[$mode,$r]} req/s, ${CPU_US[$mode,$r]} µs CPU/req (worker thread ${WORKER_US[$mode,$r]}, other threads ${OTHERS_US[$mode,$r]}: ${OTHERS_MS[$mode,$r]} ms/s), p99 ${P99[$mode,$r]} µs; nginx saw ${NGINX_N[$mode,$r]} of $requests; window +${WIN_DELTA[$mode,$r]} (candidate ${CAND_SHARE[$mode,$r]} %)$([[ "$mode" == B ]] && echo "; Redis: store up, leading, window key $wkey1 entry +${REDIS_WIN[$mode,$r]} requests, heartbeat ${HEARTBEAT[$mode,$r]} ms old, ${REDIS_CMDS[$mode,$r]} commands during the run"); gateway ${UTIL[$mode,$r]} % of CPU $GATEWAY_CPU (others ${OTHER[$mode,$r]} %, niced ${NICE0[$mode,$r]} %), CPU $LOAD_CPU ${LOADBUSY[$mode,$r]} % (niced ${NICE1[$mode,$r]} %), non-2xx+errors ${BAD[$mode,$r]}, warning lines ${PROBLEMS[$mode,$r]}"
}

MODES=(A B)
declare -A M_LABEL=([A]="A: SQLite (\`state_store: FILE.db\`)" [B]="B: fleet (\`state_store: {url: redis://…}\`)")

if [[ "$COUNT" == 1 ]]; then
  # shellcheck source=bench/fleet_overhead_counted.bash
  source "$BENCH/fleet_overhead_counted.bash"
  exit 0
fi

# quiet_round R: whether nothing else got in the way in round R (see the header).
quiet_round() {
  local m
  for m in "${MODES[@]}"; do
    ((UTIL[$m,$1] >= QUIET_GATEWAY && OTHER[$m,$1] + NICE0[$m,$1] <= QUIET_OTHERS && \
      NICE1[$m,$1] <= QUIET_OTHERS)) || return 1
  done
}

QUIET_ROUNDS=()
NOISY_ROUNDS=()
ROUNDS_RUN=0
for r in $(seq "$MAX_ROUNDS"); do
  log "round $r (${#QUIET_ROUNDS[@]} of $ROUNDS quiet rounds so far, $MAX_ROUNDS rounds at most): ${WARMUP}s warm-up + ${DURATION}s measured per run, $CONNECTIONS connections, $WRK_THREADS wrk thread(s); load average $(cut -d' ' -f1-3 /proc/loadavg)"
  for m in "${MODES[@]}"; do
    run_case "$m" "$r"
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
if ((${#QUIET_ROUNDS[@]} >= (ROUNDS < 2 ? ROUNDS : 2))); then
  USED_ROUNDS=("${QUIET_ROUNDS[@]}")
  USED_WHICH="the ${#QUIET_ROUNDS[@]} quiet round(s) ($(IFS=,; echo "${QUIET_ROUNDS[*]}"))"
else
  mapfile -t USED_ROUNDS < <(seq "$ROUNDS_RUN")
  USED_WHICH="all $ROUNDS_RUN rounds (only ${#QUIET_ROUNDS[@]} quiet)"
fi

NGINX_PROBLEMS="$({ grep -ciE '\b(warn|error|crit|alert|emerg)\b' "$TMP/nginx/error.log" || true; })"
LOAD_AFTER="$(cut -d' ' -f1-3 /proc/loadavg)"
BUSY_SECONDS="$(cat "$TMP/busy-seconds" 2>/dev/null || echo 0)"
FINISHED_IN=$SECONDS

# --- summary -----------------------------------------------------------------------------------------
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
minmax() { printf '%s\n' "$@" | sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%s–%s", lo, hi }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b ? a / b : 0 }'; }
spread_pct() { # spread_pct MEDIAN VALUE... -> (max - min) / median in %
  local m="$1"
  shift
  printf '%s\n' "$@" | sort -g | awk -v m="$m" 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%.1f", m ? 100 * (hi - lo) / m : 0 }'
}
pct_of() { awk -v x="$1" 'BEGIN { printf "%+.1f %%", 100 * (x - 1) }'; }
within() { awk -v x="$1" -v t="$TARGET_PCT" 'BEGIN { d = 100 * (x - 1); if (d < 0) d = -d; print (d <= t + 1e-9) ? 1 : 0 }'; }

declare -A M_WORKER M_OTHERS M_OTHERS_MS SPREAD_WORKER ROUND_WORKER M_RPS M_CPU M_P99 M_UTIL M_OTHER M_NICE0 M_LOADBUSY M_NICE1 M_BAD M_SHARE M_CMDS SPREAD_RPS SPREAD_CPU ROUND_RPS ROUND_CPU
ANY_BAD=0
for m in "${MODES[@]}"; do
  worker=() others=() others_ms=() rps=() cpu=() p99=() util=() other=() nice0=() loadbusy=() nice1=() share=() cmds=()
  for r in "${USED_ROUNDS[@]}"; do
    rps+=("${RPS[$m,$r]}")
    cpu+=("${CPU_US[$m,$r]}")
    worker+=("${WORKER_US[$m,$r]}")
    others+=("${OTHERS_US[$m,$r]}")
    others_ms+=("${OTHERS_MS[$m,$r]}")
    p99+=("${P99[$m,$r]}")
    util+=("${UTIL[$m,$r]}")
    other+=("${OTHER[$m,$r]}")
    nice0+=("${NICE0[$m,$r]}")
    loadbusy+=("${LOADBUSY[$m,$r]}")
    nice1+=("${NICE1[$m,$r]}")
    share+=("${CAND_SHARE[$m,$r]}")
    [[ "$m" == B ]] && cmds+=("$(awk -v c="${REDIS_CMDS[$m,$r]}" -v d="$DURATION" 'BEGIN { printf "%.1f", c / d }')")
  done
  all_rps=() all_cpu=() all_worker=()
  bad=0
  for r in $(seq "$ROUNDS_RUN"); do
    bad=$((bad + ${BAD[$m,$r]}))
    mark=""
    [[ " ${NOISY_ROUNDS[*]} " == *" $r "* ]] && mark="*"
    all_rps+=("$(awk -v x="${RPS[$m,$r]}" 'BEGIN { printf "%.0f", x }')$mark")
    all_cpu+=("${CPU_US[$m,$r]}$mark")
    all_worker+=("${WORKER_US[$m,$r]}$mark")
  done
  M_RPS[$m]="$(awk -v x="$(median "${rps[@]}")" 'BEGIN { printf "%.0f", x }')"
  M_CPU[$m]="$(awk -v x="$(median "${cpu[@]}")" 'BEGIN { printf "%.1f", x }')"
  M_WORKER[$m]="$(awk -v x="$(median "${worker[@]}")" 'BEGIN { printf "%.1f", x }')"
  M_OTHERS[$m]="$(awk -v x="$(median "${others[@]}")" 'BEGIN { printf "%.2f", x }')"
  M_OTHERS_MS[$m]="$(awk -v x="$(median "${others_ms[@]}")" 'BEGIN { printf "%.2f", x }')"
  SPREAD_WORKER[$m]="$(spread_pct "${M_WORKER[$m]}" "${worker[@]}")"
  ROUND_WORKER[$m]="$(IFS=/; echo "${all_worker[*]}")"
  M_P99[$m]="$(awk -v x="$(median "${p99[@]}")" 'BEGIN { printf "%.2f", x / 1000 }')"
  M_UTIL[$m]="$(median "${util[@]}")"
  M_OTHER[$m]="$(median "${other[@]}")"
  M_NICE0[$m]="$(median "${nice0[@]}")"
  M_LOADBUSY[$m]="$(median "${loadbusy[@]}")"
  M_NICE1[$m]="$(median "${nice1[@]}")"
  M_SHARE[$m]="$(median "${share[@]}")"
  M_CMDS[$m]="-"
  [[ "$m" == B ]] && M_CMDS[$m]="$(median "${cmds[@]}")"
  M_BAD[$m]="$bad"
  SPREAD_RPS[$m]="$(spread_pct "${M_RPS[$m]}" "${rps[@]}")"
  SPREAD_CPU[$m]="$(spread_pct "${M_CPU[$m]}" "${cpu[@]}")"
  ROUND_RPS[$m]="$(IFS=/; echo "${all_rps[*]}")"
  ROUND_CPU[$m]="$(IFS=/; echo "${all_cpu[*]}")"
  ((bad == 0)) || ANY_BAD=1
done

# Each round's own ratio B/A (the two runs back to back).
round_ratios() { # round_ratios TABLE -> B/A per used round
  local -n table="$1"
  local r
  for r in "${USED_ROUNDS[@]}"; do ratio "${table[B,$r]}" "${table[A,$r]}"; echo; done
}
mapfile -t RPS_RATIOS < <(round_ratios RPS)
mapfile -t CPU_RATIOS < <(round_ratios CPU_US)
mapfile -t WORKER_RATIOS < <(round_ratios WORKER_US)
WORKER_X="$(ratio "${M_WORKER[B]}" "${M_WORKER[A]}")"
# Each B run against the mean of the A runs before and after it (A of its round and of the next):
# a load that drifts steadily during the run then weighs on both sides alike, where B, always
# second in its round, would otherwise meet more or less of it than its A. Rounds used that are
# not the last one run.
bracketed_ratios() { # bracketed_ratios TABLE -> B_r / mean(A_r, A_r+1)
  local -n table="$1"
  local r
  for r in "${USED_ROUNDS[@]}"; do
    ((r < ROUNDS_RUN)) || continue
    awk -v b="${table[B,$r]}" -v a0="${table[A,$r]}" -v a1="${table[A,$((r + 1))]}" \
      'BEGIN { printf "%.3f\n", a0 + a1 ? 2 * b / (a0 + a1) : 0 }'
  done
}
bracketed_row() { # bracketed_row LABEL TABLE
  local values=()
  mapfile -t values < <(bracketed_ratios "$2")
  if ((${#values[@]} == 0)); then echo "| $1, B against the mean of the A runs around it | - (needs two rounds) | - | - | - |"; return; fi
  local m
  m="$(awk -v x="$(median "${values[@]}")" 'BEGIN { printf "%.3f", x }')"
  echo "| $1, B against the mean of the A runs around it | median $m ($(pct_of "$m")) | $(minmax "${values[@]}"); $(agree "${values[@]}") | $(interval_text "${values[@]}") | - |"
}
RPS_X="$(ratio "${M_RPS[B]}" "${M_RPS[A]}")"
CPU_X="$(ratio "${M_CPU[B]}" "${M_CPU[A]}")"
OK_RPS="$(within "$RPS_X")"
OK_CPU="$(within "$CPU_X")"
# How many rounds' own ratios are within the target too.
agree() {
  local x n=0 ok=0
  for x in "$@"; do n=$((n + 1)); ok=$((ok + $(within "$x"))); done
  echo "$ok of $n rounds within"
}
# interval RATIO...: the mean of the ratios' logarithms with a 95 % interval (Student's t over the
# rounds), as "MEAN LOW HIGH" in % (e^x − 1); "- - -" with fewer than two ratios.
interval() {
  printf '%s\n' "$@" | awk '
    $1 > 0 { x[++n] = log($1); s += x[n] }
    END {
      if (n < 2) { print "- - -"; exit }
      split("12.71 4.30 3.18 2.78 2.57 2.45 2.36 2.31 2.26 2.23 2.20 2.18 2.16 2.14 2.13 2.12 2.11 2.10 2.09 2.09", t, " ")
      df = n - 1; q = df <= 20 ? t[df] : (df < 30 ? 2.06 : (df < 60 ? 2.02 : 1.98))
      m = s / n; for (i = 1; i <= n; i++) v += (x[i] - m) ^ 2
      h = q * sqrt(v / (n - 1) / n)
      printf "%.1f %.1f %.1f", 100 * (exp(m) - 1), 100 * (exp(m - h) - 1), 100 * (exp(m + h) - 1)
    }'
}
# verdict OK RATIO...: met or missed by the ratio of the medians; established when the 95 %
# interval of the rounds' mean ratio lies wholly on one side of the target (inside ±TARGET_PCT %
# for met, outside it for missed), not established otherwise.
verdict() {
  local ok="$1" v mean lo hi
  shift
  v="**missed**"
  [[ "$ok" == 1 ]] && v=met
  read -r mean lo hi <<<"$(interval "$@")"
  if [[ "$mean" == - ]]; then echo "$v (one round: not established)"; return; fi
  if awk -v lo="$lo" -v hi="$hi" -v t="$TARGET_PCT" 'BEGIN { exit !(lo >= -t && hi <= t) }'; then
    [[ "$ok" == 1 ]] && echo "$v, established" || echo "$v, **not established**"
  elif awk -v lo="$lo" -v hi="$hi" -v t="$TARGET_PCT" 'BEGIN { exit !(lo > t || hi < -t) }'; then
    [[ "$ok" == 1 ]] && echo "$v, **not established**" || echo "$v, established"
  else
    echo "$v, **not established**"
  fi
}
interval_text() { # interval_text RATIO... -> "mean +x.x % (95 %: lo … hi %)"
  local mean lo hi
  read -r mean lo hi <<<"$(interval "$@")"
  if [[ "$mean" == - ]]; then echo "-"; else printf '%+.1f %% (%+.1f … %+.1f %%)' "$mean" "$lo" "$hi"; fi
}
ALL_MET=$((OK_RPS && OK_CPU))
CONTENDED=0
((${#QUIET_ROUNDS[@]} >= ROUNDS)) || CONTENDED=1
B_WINDOWS=() B_HEARTBEATS=() A_PROBLEMS=0 B_PROBLEMS=0
for r in $(seq "$ROUNDS_RUN"); do
  B_WINDOWS+=("${REDIS_WIN[B,$r]}/${REQS[B,$r]}")
  B_HEARTBEATS+=("${HEARTBEAT[B,$r]}")
  A_PROBLEMS=$((A_PROBLEMS + ${PROBLEMS[A,$r]}))
  B_PROBLEMS=$((B_PROBLEMS + ${PROBLEMS[B,$r]}))
done

{
  echo "## cutover fleet overhead benchmark (issue #12, \"the request path pays nothing\"): $STARTED"
  echo
  echo "Gateway \`$BIN\` (built $(date -u -r "$BIN" '+%Y-%m-%d %H:%M UTC'); this checkout: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)), \`workers: 1\`, access log off, pinned to CPU $GATEWAY_CPU, one gateway per run; wrk ($WRK_THREADS thread, $CONNECTIONS connections, closed loop, $USERS users by X-User-Id), nginx $(nginx -v 2>&1 | cut -d/ -f2) (1 worker, a fixed $ANSWER_BYTES-byte \`chat.completion\` on two ports, primary and candidate) and redis-server $REDIS_VERSION (no persistence) on CPU $LOAD_CPU."
  echo "Migration \`$MIGRATION\` of $MODEL, primary → candidate, canary at $WEIGHT_PCT % (never moves), shadow off, sticky key x-user-id, evaluation_interval $INTERVAL. A: \`state_store\` a fresh SQLite file per run; B: fleet mode on the throwaway Redis, a fresh key prefix per run, this replica the leader (checked). Rounds of A then B, each run ${WARMUP}s warm-up + ${DURATION}s measured, until $ROUNDS were quiet ($MAX_ROUNDS at most): $ROUNDS_RUN run, quiet: ${QUIET_ROUNDS[*]:-none} (a round is quiet when, in both its runs, the gateway had ≥ $QUIET_GATEWAY % of CPU $GATEWAY_CPU, all other work ≤ $QUIET_OTHERS % of it and niced work ≤ $QUIET_OTHERS % of CPU $LOAD_CPU). Medians and spreads over $USED_WHICH; the per-round columns show every round, * marking those that were not quiet."
  echo "Load average $LOAD_BEFORE before, $LOAD_AFTER after; a compiler or linker ran alongside in $BUSY_SECONDS of ${FINISHED_IN} s; warning/error lines logged: gateways A $A_PROBLEMS, B $B_PROBLEMS, nginx $NGINX_PROBLEMS."
  echo
  echo "| mode | req/s | spread | req/s per round | CPU µs/req | spread | CPU µs/req per round | p99 ms | candidate share % | Redis commands/s | gateway % of CPU $GATEWAY_CPU | CPU $GATEWAY_CPU others % (niced) | CPU $LOAD_CPU % (niced) | non-2xx + errors |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  for m in "${MODES[@]}"; do
    printf '| %s | %s | %s %% | %s | %s | %s %% | %s | %s | %s | %s | %s | %s | %s | %s |\n' "${M_LABEL[$m]}" \
      "${M_RPS[$m]}" "${SPREAD_RPS[$m]}" "${ROUND_RPS[$m]}" "${M_CPU[$m]}" "${SPREAD_CPU[$m]}" "${ROUND_CPU[$m]}" \
      "${M_P99[$m]}" "${M_SHARE[$m]}" "${M_CMDS[$m]}" "${M_UTIL[$m]}" "${M_OTHER[$m]} (${M_NICE0[$m]})" \
      "${M_LOADBUSY[$m]} (${M_NICE1[$m]})" "${M_BAD[$m]}"
  done
  echo
  echo "The worker thread's and the other threads' time on CPU, per request, from each thread's \`schedstat\` (the busiest thread is the worker's event loop, which serves every request with \`workers: 1\`; the others are the migration engine's thread, with its Redis calls in B, the usage writer, the admin API and the rest):"
  echo
  echo "| mode | worker thread µs/req | spread | per round | other threads µs/req | other threads ms of CPU per second |"
  echo "|---|---:|---:|---:|---:|---:|"
  for m in "${MODES[@]}"; do
    printf '| %s | %s | %s %% | %s | %s | %s |\n' "${M_LABEL[$m]}" "${M_WORKER[$m]}" "${SPREAD_WORKER[$m]}" "${ROUND_WORKER[$m]}" "${M_OTHERS[$m]}" "${M_OTHERS_MS[$m]}"
  done
  echo
  echo "| target (issue #12) | B / A (ratio of medians) | per round | mean of the rounds' ratios (95 % interval) | verdict |"
  echo "|---|---|---|---|---|"
  echo "| throughput within $TARGET_PCT % | ${M_RPS[B]} / ${M_RPS[A]} req/s = $RPS_X ($(pct_of "$RPS_X")) | $(minmax "${RPS_RATIOS[@]}"); $(agree "${RPS_RATIOS[@]}") | $(interval_text "${RPS_RATIOS[@]}") | $(verdict "$OK_RPS" "${RPS_RATIOS[@]}") |"
  echo "| CPU per request within $TARGET_PCT % | ${M_CPU[B]} / ${M_CPU[A]} µs = $CPU_X ($(pct_of "$CPU_X")) | $(minmax "${CPU_RATIOS[@]}"); $(agree "${CPU_RATIOS[@]}") | $(interval_text "${CPU_RATIOS[@]}") | $(verdict "$OK_CPU" "${CPU_RATIOS[@]}") |"
  echo "| (not a target: the worker thread alone) | ${M_WORKER[B]} / ${M_WORKER[A]} µs = $WORKER_X ($(pct_of "$WORKER_X")) | $(minmax "${WORKER_RATIOS[@]}"); $(agree "${WORKER_RATIOS[@]}") | $(interval_text "${WORKER_RATIOS[@]}") | - |"
  bracketed_row "(not a target) req/s" RPS
  bracketed_row "(not a target) CPU per request" CPU_US
  bracketed_row "(not a target) the worker thread" WORKER_US
  echo
  echo "Fleet mode was checked in every B run: \`store.kind\` \"redis\", \`store.up\` and \`store.leading\` true before and after the measured run; \`redis-cli --scan --pattern '*window*'\` found the window key, and this replica's entry in it counted at least the requests wrk completed (per round, entry's growth / wrk's requests: $(IFS=' '; echo "${B_WINDOWS[*]}")); the heartbeat was $(IFS=/; echo "${B_HEARTBEATS[*]}") ms old after the run. In every run of both modes the migration stayed in canary at $WEIGHT_PCT %, and its window counted every measured request. The Redis commands (those inside the scripts counted too) are the gateway engine thread's: reading the record, writing the window and heartbeat, reading the windows, renewing the lease; the workers send none."
  echo
  echo "Noise: the A runs alone spread by ${SPREAD_RPS[A]} % in req/s and ${SPREAD_CPU[A]} % in CPU/req over the ${#USED_ROUNDS[@]} rounds used (B: ${SPREAD_RPS[B]} %, ${SPREAD_CPU[B]} %). A verdict is \"established\" only where the 95 % interval of the rounds' mean ratio (Student's t over the rounds' log ratios) lies wholly inside ±$TARGET_PCT % (met) or wholly outside it (missed); otherwise this run cannot tell a difference of $TARGET_PCT % from the machine's noise, whichever way the ratio of the medians reads; the per-round ratios (each B run against the A run just before it) show how far a single pair can be trusted, and the bracketed ones (each B run against the mean of the A runs before and after it) whether a steady drift of the machine's load favoured one side."
  if ((CONTENDED)); then
    echo
    echo "**Only ${#QUIET_ROUNDS[@]} of the $ROUNDS quiet rounds asked for came in $ROUNDS_RUN rounds: other work shared the machine, the gateway did not always have its CPU. CPU per request under such contention is higher and noisier than on a quiet machine; compare runs of one report only.**"
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
