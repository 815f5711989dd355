#!/usr/bin/env bash
# Where a proxied request's CPU goes, user space or kernel, for cutover and nginx side by side
# (issue #14's lead: the two make the same system calls and TCP segments a request, yet their
# CPU differs). Per target and mode (plain, sse): the proxy on CPU 0 (cutover `workers: 1`
# with bench/pinned.sh's configuration; nginx as a keep-alive reverse proxy, one worker), the
# nginx upstream of bench/pinned.py and wrk (1 thread, BENCH_CONNECTIONS connections,
# bench/pinned.lua) on CPU 1. After BENCH_WARMUP s of load, over BENCH_DURATION s of it:
#   - the proxy's user and system time a request (utime and stime of /proc/PID/stat, in clock
#     ticks of 10 ms: a few percent of noise on a few seconds) and its minor page faults,
#   - TCP segments sent a request on the whole machine (`nstat` TcpOutSegs: loopback only, so
#     client, proxy and upstream together), and the upstream connections the proxy holds,
#   - with BENCH_STRACE=1, the proxy's system calls a request (`strace -c -f`, in a separate
#     window: strace slows the proxy, so its time is not taken then),
#   - with BENCH_PERF=1, counted by `perf stat` over the same window as the times (software
#     tracepoints, which a VM without hardware counters still has): the proxy's system calls,
#     `epoll_wait` calls and context switches a request, and its requests a wake-up (requests
#     ÷ context switches: a busy proxy handles several ready connections a wake-up, an idle
#     one is woken for each).
#
#   bash bench/kernel_split.sh [CUTOVER_BINARY]      (default: build/cutover)
#
# Knobs: BENCH_DURATION (s, 4), BENCH_WARMUP (s, 2), BENCH_CONNECTIONS (32), BENCH_MODES
# ("plain sse"), BENCH_TARGETS ("nginx cutover"), BENCH_STRACE (0), BENCH_PERF (0).
# Everything listens on 127.0.0.1, on free ports, and is stopped at the end.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BENCH="$ROOT/bench"
# shellcheck source=bench/common.sh
source "$BENCH/common.sh"
BINARY="${1:-$ROOT/build/cutover}"
DURATION="${BENCH_DURATION:-4}"
WARMUP="${BENCH_WARMUP:-2}"
CONNECTIONS="${BENCH_CONNECTIONS:-32}"
STRACE="${BENCH_STRACE:-0}"
PERF="${BENCH_PERF:-0}"
MODES="${BENCH_MODES:-plain sse}"
TARGETS="${BENCH_TARGETS:-nginx cutover}"

for tool in wrk nginx nstat ss python3 taskset; do
  command -v "$tool" >/dev/null || { echo "bench: '$tool' not found (run scripts/install-deps.sh)" >&2; exit 1; }
done
[[ "$PERF" == 1 ]] && { command -v perf >/dev/null || { echo "bench: BENCH_PERF=1 needs perf (apt-get install linux-perf)" >&2; exit 1; }; }
[[ "$STRACE" == 1 ]] && { command -v strace >/dev/null || { echo "bench: BENCH_STRACE=1 needs strace (apt-get install strace)" >&2; exit 1; }; }
[[ -x "$BINARY" ]] || { echo "bench: $BINARY is not an executable" >&2; exit 1; }

TMP="$(mktemp -d "${TMPDIR:-/tmp}/cutover-split.XXXXXX")"
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$TMP"
}
trap cleanup EXIT
fail() { echo "bench: $*" >&2; exit 1; }

UP_PORT="$(free_port)"
python3 "$BENCH/pinned.py" upstream --dir "$TMP/answers" --port "$UP_PORT" >/dev/null
nginx_conf "$TMP/upstream" "  include $TMP/answers/locations.conf;"
taskset -c 1 nginx -p "$TMP/upstream" -c "$TMP/upstream/nginx.conf" -e "$TMP/upstream/error.log" >/dev/null 2>&1 &
PIDS+=("$!")
wait_for_tcp "$UP_PORT" "$!" "$TMP/upstream/error.log"

NGINX_PORT="$(free_port)"
nginx_conf "$TMP/proxy" "$(nginx_proxy_block "$NGINX_PORT" "$UP_PORT")"
taskset -c 0 nginx -p "$TMP/proxy" -c "$TMP/proxy/nginx.conf" -e "$TMP/proxy/error.log" >/dev/null 2>&1 &
PIDS+=("$!")
wait_for_tcp "$NGINX_PORT" "$!" "$TMP/proxy/error.log"
NGINX_WORKER="$(pgrep -P "$(cat "$TMP/proxy/nginx.pid")" | head -1)"
[[ -n "$NGINX_WORKER" ]] || fail "no nginx worker process"

export CUTOVER_CLIENT_KEY="bench-$RANDOM$RANDOM"
chat_cutover_config "$TMP/cutover.yaml" "$UP_PORT" "$TMP/access.log"
taskset -c 0 "$BINARY" serve -c "$TMP/cutover.yaml" >"$TMP/cutover.out" 2>"$TMP/cutover.err" &
CUTOVER_PID=$!
PIDS+=("$CUTOVER_PID")
CUTOVER_PORT="$(wait_for_log "$TMP/cutover.err" "$CUTOVER_PID" 'listening on')"

cpu_ticks() { awk '{ print $14, $15, $10 }' "/proc/$1/stat"; }
requests_of() { grep -oE '(^| )requests=[0-9]+' "$1" | head -1 | cut -d= -f2; }

echo "| target | mode | requests | user µs/req | system µs/req | minor page faults/req | TCP segments sent/req | upstream connections | system calls/req (perf) | epoll_wait/req (perf) | context switches/req (perf) | requests a wake-up (perf) | system calls/req (strace) |"
echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
tick="$(getconf CLK_TCK)"
# perf_counts PID FILE: counts the events below for PID until it is sent SIGINT.
PERF_EVENTS="raw_syscalls:sys_enter,syscalls:sys_enter_epoll_wait,context-switches"
perf_count() { awk -F, -v event="$2" '$3 == event { print $1 }' "$1"; }
for target in $TARGETS; do
  if [[ "$target" == nginx ]]; then pid="$NGINX_WORKER" port="$NGINX_PORT"; else pid="$CUTOVER_PID" port="$CUTOVER_PORT"; fi
  for mode in $MODES; do
    stream=false accept=""
    [[ "$mode" == sse ]] && { stream=true; accept=text/event-stream; }
    export BENCH_BODY="{\"model\":\"gpt-4\",\"stream\":$stream,\"messages\":[{\"role\":\"user\",\"content\":\"hello\"}]}"
    export BENCH_KEY_HEADER="Authorization: Bearer $CUTOVER_CLIENT_KEY" BENCH_ACCEPT="$accept"
    url="http://127.0.0.1:$port/v1/chat/completions"
    taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"${WARMUP}s" -s "$BENCH/pinned.lua" "$url" >/dev/null
    nstat -n >/dev/null
    if [[ "$PERF" == 1 ]]; then
      # perf runs on the load core, so the proxy's core keeps only the proxy's work.
      taskset -c 1 perf stat -x, -e "$PERF_EVENTS" -p "$pid" -o "$TMP/perf" &
      perf_pid=$!
      sleep 0.2
    fi
    read -r user_before system_before faults_before < <(cpu_ticks "$pid")
    taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" -s "$BENCH/pinned.lua" "$url" >"$TMP/wrk"
    read -r user_after system_after faults_after < <(cpu_ticks "$pid")
    syscalls=- epoll_waits=- switches=-
    if [[ "$PERF" == 1 ]]; then
      kill -INT "$perf_pid" 2>/dev/null || true
      wait "$perf_pid" 2>/dev/null || true
      syscalls="$(perf_count "$TMP/perf" raw_syscalls:sys_enter)"
      epoll_waits="$(perf_count "$TMP/perf" syscalls:sys_enter_epoll_wait)"
      switches="$(perf_count "$TMP/perf" context-switches)"
    fi
    segments="$(nstat TcpOutSegs | awk '/^TcpOutSegs/ { print $2 }')"
    requests="$(requests_of "$TMP/wrk")"
    [[ -n "$requests" && "$requests" -gt 0 ]] || { cat "$TMP/wrk" >&2; fail "$target ($mode): wrk completed no request"; }
    grep -qE '(^| )non2xx=0( |$)' "$TMP/wrk" || { cat "$TMP/wrk" >&2; fail "$target ($mode): a request was not a 2xx"; }
    # Both proxies stay up, each with its idle upstream connections: count this one's.
    connections="$(ss -tnpH state established "( dport = :$UP_PORT )" | grep -c "pid=$pid," || true)"
    calls="-"
    if [[ "$STRACE" == 1 ]]; then
      strace -f -c -o "$TMP/strace" -p "$pid" 2>/dev/null &
      strace_pid=$!
      sleep 1
      taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" -s "$BENCH/pinned.lua" "$url" >"$TMP/wrk-strace"
      kill -INT "$strace_pid" 2>/dev/null || true
      wait "$strace_pid" 2>/dev/null || true
      calls="$(awk -v r="$(requests_of "$TMP/wrk-strace")" '$4 ~ /^[0-9]+$/ && $NF != "total" && $4 / r >= 0.05 { printf "%s %.2f, ", $NF, $4 / r }' "$TMP/strace")"
    fi
    awk -v r="$requests" -v u=$((user_after - user_before)) -v s=$((system_after - system_before)) -v f=$((faults_after - faults_before)) \
      -v t="$tick" -v seg="${segments:-0}" -v target="$target" -v mode="$mode" -v conn="$connections" -v calls="$calls" \
      -v sc="$syscalls" -v ew="$epoll_waits" -v cs="$switches" '
      function per_request(n) { return n == "-" ? "-" : sprintf("%.2f", n / r) }
      BEGIN {
        wake = (cs == "-" || cs == 0) ? "-" : sprintf("%.1f", r / cs)
        printf "| %s | %s | %d | %.2f | %.2f | %.3f | %.2f | %d | %s | %s | %s | %s | %s |\n", target, mode, r,
          u / t * 1e6 / r, s / t * 1e6 / r, f / r, seg / r, conn, per_request(sc), per_request(ew), per_request(cs), wake, calls
      }'
  done
done
