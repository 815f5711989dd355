#!/usr/bin/env bash
# Instructions per request on cutover's chat path, counted (issue #14's yardstick on a noisy
# machine): the worker thread's user-space instructions under valgrind's callgrind, divided by
# the requests wrk completed. A count does not move with the machine's load the way CPU time
# does, so two binaries can be compared a few percent apart on a shared VM.
#
#   bash bench/count_instructions.sh [BINARY...]      (default: build/cutover)
#
# Per binary and mode (plain, sse): the upstream is nginx serving bench/pinned.py's fixed answers
# (the 577-byte chat completion, the 13-event stream) on CPU 1; cutover runs under callgrind on
# CPU 0 with bench/pinned.sh's configuration (client-key auth, model mapping, usage and cost,
# metrics, the access log buffered to a file; `workers: 1`); wrk (1 thread, BENCH_CONNECTIONS
# connections, bench/pinned.lua) warms it for BENCH_WARMUP s, `callgrind_control -z` zeroes the
# counts, wrk runs BENCH_DURATION s, `callgrind_control -d` dumps them per thread
# (--separate-threads=yes), and the busiest thread (the worker's event loop) is divided by wrk's
# requests. Instructions are not time: cache misses and the kernel's work are not in them.
#
# Knobs: BENCH_DURATION (s, 5), BENCH_WARMUP (s, 2), BENCH_CONNECTIONS (32), BENCH_MODES
# ("plain sse"), BENCH_KEEP (a folder: the worker thread's callgrind file is copied there as
# MODE-N.callgrind, N the binary's place in the list, for `callgrind_annotate --inclusive=yes`).
# Everything listens on 127.0.0.1, on free ports, and is stopped at the end.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BENCH="$ROOT/bench"
# shellcheck source=bench/common.sh
source "$BENCH/common.sh"
DURATION="${BENCH_DURATION:-5}"
WARMUP="${BENCH_WARMUP:-2}"
CONNECTIONS="${BENCH_CONNECTIONS:-32}"
MODES="${BENCH_MODES:-plain sse}"
BINARIES=("$@")
((${#BINARIES[@]})) || BINARIES=("$ROOT/build/cutover")

for tool in valgrind callgrind_control wrk nginx python3 curl taskset; do
  command -v "$tool" >/dev/null || { echo "bench: '$tool' not found (run scripts/install-deps.sh)" >&2; exit 1; }
done
for binary in "${BINARIES[@]}"; do
  [[ -x "$binary" ]] || { echo "bench: $binary is not an executable" >&2; exit 1; }
done

TMP="$(mktemp -d "${TMPDIR:-/tmp}/cutover-count.XXXXXX")"
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$TMP"
}
trap cleanup EXIT
log() { printf '[count %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
fail() { echo "bench: $*" >&2; exit 1; }

# --- the upstream ---------------------------------------------------------------------------------
UP_PORT="$(free_port)"
python3 "$BENCH/pinned.py" upstream --dir "$TMP/answers" --port "$UP_PORT" >/dev/null
nginx_conf "$TMP/upstream" "  include $TMP/answers/locations.conf;"
taskset -c 1 nginx -p "$TMP/upstream" -c "$TMP/upstream/nginx.conf" -e "$TMP/upstream/error.log" \
  >"$TMP/upstream/stdout" 2>&1 &
PIDS+=("$!")
wait_for_tcp "$UP_PORT" "$!" "$TMP/upstream/error.log"

export CUTOVER_CLIENT_KEY="bench-$RANDOM$RANDOM"
chat_cutover_config "$TMP/cutover.yaml" "$UP_PORT" "$TMP/access.log"

# count BINARY MODE -> "REQUESTS INSTRUCTIONS_PER_REQUEST"
count() {
  local binary="$1" mode="$2" dir="$TMP/callgrind-$RANDOM" pid port stream=false accept="" requests top
  mkdir -p "$dir"
  [[ "$mode" == sse ]] && { stream=true; accept=text/event-stream; }
  taskset -c 0 valgrind --tool=callgrind --separate-threads=yes --dump-instr=no \
    --compress-strings=no --compress-pos=no "--callgrind-out-file=$dir/out" \
    "$binary" serve -c "$TMP/cutover.yaml" >"$dir/stdout" 2>"$dir/stderr" &
  pid=$!
  PIDS+=("$pid")
  # Under valgrind cutover takes a while to start.
  port="$(wait_for_log "$dir/stderr" "$pid" 'listening on' 1200)"
  local -x BENCH_BODY="{\"model\":\"gpt-4\",\"stream\":$stream,\"messages\":[{\"role\":\"user\",\"content\":\"hello\"}]}"
  local -x BENCH_KEY_HEADER="Authorization: Bearer $CUTOVER_CLIENT_KEY" BENCH_ACCEPT="$accept"
  local url="http://127.0.0.1:$port/v1/chat/completions"
  [[ "$(curl -s -o "$dir/check" -w '%{http_code}' -H "$BENCH_KEY_HEADER" -H "Accept: $accept" \
    -H 'Content-Type: application/json' -d "$BENCH_BODY" "$url")" == 200 ]] ||
    { cat "$dir/check" >&2; fail "$binary ($mode): the check request did not answer 200"; }
  taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"${WARMUP}s" --timeout 30s -s "$BENCH/pinned.lua" "$url" >/dev/null
  callgrind_control -z "$pid" >/dev/null
  taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --timeout 30s -s "$BENCH/pinned.lua" "$url" >"$dir/wrk"
  callgrind_control -d "$pid" >/dev/null
  requests="$(grep -oE '(^| )requests=[0-9]+' "$dir/wrk" | head -1 | cut -d= -f2)"
  [[ -n "$requests" && "$requests" -gt 0 ]] || { cat "$dir/wrk" >&2; fail "$binary ($mode): wrk completed no request"; }
  grep -qE '(^| )non2xx=0( |$)' "$dir/wrk" || { cat "$dir/wrk" >&2; fail "$binary ($mode): a measured request was not a 2xx"; }
  top="$(for f in "$dir"/out.*; do awk '/^(summary|totals):/ { print $2; exit }' "$f"; done | sort -g | tail -1)"
  [[ -n "$top" ]] || fail "$binary ($mode): no callgrind dump in $dir"
  if [[ -n "${BENCH_KEEP:-}" ]]; then
    mkdir -p "$BENCH_KEEP"
    for f in "$dir"/out.*; do
      if awk '/^(summary|totals):/ { print $2; exit }' "$f" | grep -qx "$top"; then
        cp "$f" "$BENCH_KEEP/$mode-$index.callgrind"
        break
      fi
    done
  fi
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  echo "$requests $((top / requests))"
}

echo "| binary | mode | requests counted | worker instructions per request |"
echo "|---|---|---:|---:|"
index=0
for binary in "${BINARIES[@]}"; do
  index=$((index + 1))
  for mode in $MODES; do
    log "$binary, $mode: ${WARMUP}s warm-up, ${DURATION}s counted, $CONNECTIONS connections"
    read -r requests per_request <<<"$(count "$binary" "$mode")"
    echo "| \`$binary\` | $mode | $requests | $per_request |"
  done
done
