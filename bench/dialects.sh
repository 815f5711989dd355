#!/usr/bin/env bash
# Dialect benchmark (issue #13): the gateway's CPU cost per request, throughput and streaming time
# to first byte for each client/provider path, in one run.
#
#   bash bench/dialects.sh       (or `make bench-dialects`, which builds first)
#
#   path 1  chat client (/v1/chat/completions) → OpenAI provider        today's path, the reference
#   path 2  Anthropic Messages client (/v1/messages) → Anthropic provider  pass-through
#   path 3  Anthropic Messages client → OpenAI provider                 translated
#   path 4  chat client → Anthropic provider                            translated
#   path 5  Responses client (/v1/responses) → OpenAI provider          translated
#
# each plain and streamed. One gateway (`workers: 1`, `access_log: "off"`) with one provider per
# dialect and one client model per path; the providers are `cutover simulate provider --profile
# fast --latency-ms 0 --jitter-ms 0`, one per dialect. The gateway runs alone on CPU 0
# (taskset -c 0); wrk, the two simulators and the TTFB client share CPU 1 (taskset -c 1), so the
# gateway's core does nothing but the gateway (and whatever else runs on this machine).
#
# Before any load, every path and mode is sent one request that must come back 200 in the client
# protocol's format, from the expected provider, under the client's model name (bench/dialects.py
# check); the script stops at the first that does not. Then ROUNDS rounds, each running every
# path and mode in turn: wrk (1 thread, 32 connections, bench/dialects.lua) for a warm-up, then
# for DURATION seconds measured. CPU per request is the gateway process's utime+stime
# (/proc/PID/stat, all its threads) over the measured run divided by the requests wrk completed.
# Reported: the median over the rounds of req/s and of CPU µs/req. Then streaming time to first
# body byte, the median of TTFB_COUNT sequential requests per target (bench/dialects.py ttfb, the
# method of bench/ttfb.py), alternating between the two simulators directly and paths 1-5.
#
# Targets (issue #13):
#   pass-through costs no more CPU per request than today's chat path: path 2 ≤ 1.00 × path 1
#   translated paths cost at most 30 % more than pass-through: path 3 ≤ 1.30 × path 1 and
#     path 5 ≤ 1.30 × path 1 (the same OpenAI provider), path 4 ≤ 1.30 × path 2 (the same
#     Anthropic provider); the same-client ratios (3 vs 2, 4 vs 1) are shown beside them
#   streaming translation adds ≤ 0.2 ms to time to first byte (median first body byte; the same
#     pairs: 3 − 1, 4 − 2, 5 − 1)
#
# Environment knobs: CUTOVER_BIN (default build/cutover), BENCH_DURATION (s, default 8),
# BENCH_WARMUP (s, 2), BENCH_CONNECTIONS (32), BENCH_THREADS (wrk threads, 1), BENCH_ROUNDS (3),
# BENCH_TTFB_COUNT (200), BENCH_GATEWAY_CPU (0), BENCH_LOAD_CPU (1), BENCH_STRICT (1: exit 1 if a
# target is missed). A run takes about ROUNDS × 10 × (WARMUP + DURATION) s plus ~20 s (5.5 min with
# the defaults). It exits 1 if a path fails its check or any measured request was not a 2xx.
# The summary is printed and written to bench/out/dialects.md.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BENCH="$ROOT/bench"
# shellcheck source=bench/common.sh
source "$BENCH/common.sh"
BIN="${CUTOVER_BIN:-$ROOT/build/cutover}"
DURATION="${BENCH_DURATION:-8}"
WARMUP="${BENCH_WARMUP:-2}"
CONNECTIONS="${BENCH_CONNECTIONS:-32}"
WRK_THREADS="${BENCH_THREADS:-1}"
ROUNDS="${BENCH_ROUNDS:-3}"
TTFB_COUNT="${BENCH_TTFB_COUNT:-200}"
GATEWAY_CPU="${BENCH_GATEWAY_CPU:-0}"
LOAD_CPU="${BENCH_LOAD_CPU:-1}"
STRICT="${BENCH_STRICT:-0}"
OUT_DIR="$BENCH/out"
REPORT="$OUT_DIR/dialects.md"

for tool in wrk python3 taskset; do
  command -v "$tool" >/dev/null || { echo "bench: '$tool' not found (run scripts/install-deps.sh)" >&2; exit 1; }
done
[[ -x "$BIN" ]] || { echo "bench: $BIN not found; build first (make build)" >&2; exit 1; }
for cpu in "$GATEWAY_CPU" "$LOAD_CPU"; do
  taskset -c "$cpu" true 2>/dev/null || { echo "bench: cannot pin to CPU $cpu (nproc: $(nproc))" >&2; exit 1; }
done
[[ "$GATEWAY_CPU" != "$LOAD_CPU" ]] || { echo "bench: the gateway and the load need different CPUs" >&2; exit 1; }

TMP="$(mktemp -d "${TMPDIR:-/tmp}/cutover-dialects.XXXXXX")"
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

log() { printf '[dialects %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

kv() { # kv KEY FILE -> value of KEY=value on the first matching BENCH/TTFB line
  grep -oE "(^| )$1=[^ ]+" "$2" | head -1 | cut -d= -f2
}

# proc_ticks PID: utime+stime (clock ticks) of the process, all its threads together.
proc_ticks() {
  local stat fields
  stat="$(cat "/proc/$1/stat")"
  read -ra fields <<<"${stat##*) }"  # fields[0] is field 3 (state); utime, stime are 14, 15
  echo $((fields[11] + fields[12]))
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

# --- the paths ---------------------------------------------------------------------------------
PATH_IDS=(1 2 3 4 5)
MODES=(plain stream)
declare -A P_LABEL=(
  [1]="1 chat → OpenAI (reference)"
  [2]="2 Messages → Anthropic (pass-through)"
  [3]="3 Messages → OpenAI (translated)"
  [4]="4 chat → Anthropic (translated)"
  [5]="5 Responses → OpenAI (translated)")
declare -A P_URL=([1]=/v1/chat/completions [2]=/v1/messages [3]=/v1/messages
  [4]=/v1/chat/completions [5]=/v1/responses)
declare -A P_KIND=([1]=chat [2]=messages [3]=messages [4]=chat [5]=responses)
declare -A P_MODEL=([1]=chat-openai [2]=messages-anthropic [3]=messages-openai
  [4]=chat-anthropic [5]=responses-openai)
declare -A P_PROVIDER=([1]=openai [2]=anthropic [3]=openai [4]=anthropic [5]=openai)
# The pass-through path to the same provider, which a translated path is judged against.
declare -A P_BASE=([3]=1 [4]=2 [5]=1)
# The pass-through path of the same client protocol, shown beside it.
declare -A P_SAME_CLIENT=([3]=2 [4]=1)

# body KIND MODEL STREAM(true|false): the small request body of a client protocol.
body() {
  case "$1" in
    chat) printf '{"model":"%s","stream":%s,"messages":[{"role":"user","content":"hello"}]}' "$2" "$3" ;;
    messages) printf '{"model":"%s","max_tokens":64,"stream":%s,"messages":[{"role":"user","content":"hello"}]}' "$2" "$3" ;;
    responses) printf '{"model":"%s","stream":%s,"input":"hello"}' "$2" "$3" ;;
  esac
}
auth_of() { [[ "$1" == messages ]] && echo x-api-key || echo bearer; }
stream_of() { [[ "$1" == stream ]] && echo true || echo false; }

CLK_TCK="$(getconf CLK_TCK)"
export CUTOVER_CLIENT_KEY="bench-$RANDOM$RANDOM"
mkdir -p "$OUT_DIR"
LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
STARTED="$(date)"
busy_monitor &
PIDS+=("$!")
log "gateway on CPU $GATEWAY_CPU; wrk, simulators, TTFB client on CPU $LOAD_CPU; $(nproc) cores; load average $LOAD_BEFORE"

# --- the simulated providers (CPU LOAD_CPU) -----------------------------------------------------
declare -A SIM_PORT SIM_PID
for dialect in openai anthropic; do
  taskset -c "$LOAD_CPU" "$BIN" simulate provider --port 0 --profile fast --dialect "$dialect" \
    --latency-ms 0 --jitter-ms 0 >"$TMP/sim-$dialect.stdout" 2>"$TMP/sim-$dialect.stderr" &
  SIM_PID[$dialect]=$!
  PIDS+=("${SIM_PID[$dialect]}")
  SIM_PORT[$dialect]="$(wait_for_log "$TMP/sim-$dialect.stderr" "${SIM_PID[$dialect]}" 'listening on')"
  log "simulator ($dialect): pid ${SIM_PID[$dialect]} on 127.0.0.1:${SIM_PORT[$dialect]}"
done
DIRECT_OPENAI_BODY="$(body chat sim-gpt-4.1 true)"
DIRECT_ANTHROPIC_BODY="$(body messages sim-claude true)"
python3 "$BENCH/dialects.py" check --port "${SIM_PORT[openai]}" --url /v1/chat/completions \
  --kind chat --auth bearer --model sim-gpt-4.1 --stream --body "$DIRECT_OPENAI_BODY"
python3 "$BENCH/dialects.py" check --port "${SIM_PORT[anthropic]}" --url /v1/messages \
  --kind messages --auth x-api-key --model sim-claude --stream --body "$DIRECT_ANTHROPIC_BODY"

# --- the gateway (CPU GATEWAY_CPU) --------------------------------------------------------------
cat >"$TMP/gateway.yaml" <<EOF
listen: 127.0.0.1:0
workers: 1
access_log: "off"
auth:
  client_keys:
    - name: bench
      key_env: CUTOVER_CLIENT_KEY
providers:
  openai:
    base_url: http://127.0.0.1:${SIM_PORT[openai]}/v1
    no_api_key: true
    models: {chat-openai: sim-gpt-4.1, messages-openai: sim-gpt-4.1, responses-openai: sim-gpt-4.1}
    max_connections: 256
  anthropic:
    dialect: anthropic
    base_url: http://127.0.0.1:${SIM_PORT[anthropic]}/v1
    no_api_key: true
    models: {messages-anthropic: sim-claude, chat-anthropic: sim-claude}
    max_connections: 256
routes:
  - models: [chat-openai, messages-openai, responses-openai]
    provider: openai
  - models: [messages-anthropic, chat-anthropic]
    provider: anthropic
EOF
taskset -c "$GATEWAY_CPU" "$BIN" serve -c "$TMP/gateway.yaml" >"$TMP/gateway.stdout" 2>"$TMP/gateway.stderr" &
GATEWAY_PID=$!
PIDS+=("$GATEWAY_PID")
GATEWAY_PORT="$(wait_for_log "$TMP/gateway.stderr" "$GATEWAY_PID" 'listening on')"
log "gateway: pid $GATEWAY_PID on 127.0.0.1:$GATEWAY_PORT ($(grep -oE 'with [0-9]+ workers' "$TMP/gateway.stderr" | head -1)), affinity $(taskset -cp "$GATEWAY_PID" | awk '{print $NF}')"

# Every path, plain and streamed, must answer 200 in its client's format before any load.
for p in "${PATH_IDS[@]}"; do
  for mode in "${MODES[@]}"; do
    stream_flag=()
    [[ "$mode" == stream ]] && stream_flag=(--stream)
    if ! python3 "$BENCH/dialects.py" check --port "$GATEWAY_PORT" --url "${P_URL[$p]}" \
      --kind "${P_KIND[$p]}" --auth "$(auth_of "${P_KIND[$p]}")" --provider "${P_PROVIDER[$p]}" \
      --model "${P_MODEL[$p]}" "${stream_flag[@]}" \
      --body "$(body "${P_KIND[$p]}" "${P_MODEL[$p]}" "$(stream_of "$mode")")"; then
      echo "bench: path ${P_LABEL[$p]}, $mode: FAILED its check (above); nothing was measured" >&2
      exit 1
    fi
  done
  log "path ${P_LABEL[$p]}: plain and streamed answer 200 in the client's format"
done

# --- load: ROUNDS rounds, every path and mode in each -------------------------------------------
declare -A RPS CPU_US UTIL OTHER NICE0 LOADBUSY NICE1 BAD
# run_case P MODE ROUND
run_case() {
  local p="$1" mode="$2" r="$3" key="$1-$2"
  local url="http://127.0.0.1:$GATEWAY_PORT${P_URL[$p]}" out="$TMP/wrk-$1-$2-$3.txt"
  local -x BENCH_BODY BENCH_KEY_HEADER
  BENCH_BODY="$(body "${P_KIND[$p]}" "${P_MODEL[$p]}" "$(stream_of "$mode")")"
  BENCH_KEY_HEADER="$(auth_of "${P_KIND[$p]}")"
  taskset -c "$LOAD_CPU" wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"${WARMUP}s" --timeout 5s \
    -s "$BENCH/dialects.lua" "$url" >"$TMP/warmup-$1-$2-$3.txt"
  local g0 c0 l0 g1 c1 l1 requests b0 n0 t0 b1 n1 t1
  g0="$(proc_ticks "$GATEWAY_PID")"
  c0="$(cpu_line "$GATEWAY_CPU")"
  l0="$(cpu_line "$LOAD_CPU")"
  taskset -c "$LOAD_CPU" wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --timeout 5s \
    -s "$BENCH/dialects.lua" "$url" >"$out"
  g1="$(proc_ticks "$GATEWAY_PID")"
  c1="$(cpu_line "$GATEWAY_CPU")"
  l1="$(cpu_line "$LOAD_CPU")"
  grep -q '^BENCH ' "$out" || { echo "bench: wrk printed no summary for path $p $mode:" >&2; cat "$out" >&2; exit 1; }
  requests="$(kv requests "$out")"
  RPS[$key,$r]="$(kv rps "$out")"
  CPU_US[$key,$r]="$(awk -v t="$((g1 - g0))" -v hz="$CLK_TCK" -v n="$requests" \
    'BEGIN { printf "%.1f", n ? t / hz * 1e6 / n : 0 }')"
  # Gateway CPU use and everything else CPU GATEWAY_CPU did, in % of that CPU's time.
  pct() { awk -v x="$1" -v t="$2" 'BEGIN { x = t ? 100 * x / t : 0; printf "%.0f", x < 0 ? 0 : x }'; }
  read -r b0 n0 t0 <<<"$c0"
  read -r b1 n1 t1 <<<"$c1"
  UTIL[$key,$r]="$(pct "$((g1 - g0))" "$((t1 - t0))")"
  OTHER[$key,$r]="$(pct "$((b1 - b0 - (g1 - g0)))" "$((t1 - t0))")"
  NICE0[$key,$r]="$(pct "$((n1 - n0))" "$((t1 - t0))")"
  read -r b0 n0 t0 <<<"$l0"
  read -r b1 n1 t1 <<<"$l1"
  LOADBUSY[$key,$r]="$(pct "$((b1 - b0))" "$((t1 - t0))")"
  NICE1[$key,$r]="$(pct "$((n1 - n0))" "$((t1 - t0))")"
  BAD[$key,$r]="$(($(kv non2xx "$out") + $(kv connect_errors "$out") + $(kv read_errors "$out") + \
    $(kv write_errors "$out") + $(kv timeouts "$out")))"
  log "round $r, path $p $mode: ${RPS[$key,$r]} req/s, ${CPU_US[$key,$r]} µs CPU/req, gateway ${UTIL[$key,$r]} % of CPU $GATEWAY_CPU (others ${OTHER[$key,$r]} %, niced ${NICE0[$key,$r]} %), CPU $LOAD_CPU ${LOADBUSY[$key,$r]} % (niced ${NICE1[$key,$r]} %), non-2xx+errors ${BAD[$key,$r]}"
}

for r in $(seq "$ROUNDS"); do
  log "round $r of $ROUNDS: ${WARMUP}s warm-up + ${DURATION}s measured per path and mode, $CONNECTIONS connections, $WRK_THREADS wrk thread(s)"
  for p in "${PATH_IDS[@]}"; do
    for mode in "${MODES[@]}"; do
      run_case "$p" "$mode" "$r"
    done
  done
done

# --- streaming time to first byte ---------------------------------------------------------------
log "TTFB: $TTFB_COUNT sequential streamed requests per target, alternating"
TTFB_ARGS=(--target direct-openai "${SIM_PORT[openai]}" /v1/chat/completions bearer "$DIRECT_OPENAI_BODY"
  --target direct-anthropic "${SIM_PORT[anthropic]}" /v1/messages x-api-key "$DIRECT_ANTHROPIC_BODY")
for p in "${PATH_IDS[@]}"; do
  TTFB_ARGS+=(--target "path$p" "$GATEWAY_PORT" "${P_URL[$p]}" "$(auth_of "${P_KIND[$p]}")"
    "$(body "${P_KIND[$p]}" "${P_MODEL[$p]}" true)")
done
taskset -c "$LOAD_CPU" python3 "$BENCH/dialects.py" ttfb --count "$TTFB_COUNT" "${TTFB_ARGS[@]}" >"$TMP/ttfb.txt"
sed -e 's/^/    /' "$TMP/ttfb.txt" >&2
for name in direct-openai direct-anthropic path1 path2 path3 path4 path5; do
  grep "^TTFB name=$name " "$TMP/ttfb.txt" >"$TMP/ttfb-$name.txt"
done

GATEWAY_PROBLEMS="$({ grep -ciE '\b(warn|warning|error|critical)\b' "$TMP/gateway.stderr" || true; })"
LOAD_AFTER="$(cut -d' ' -f1-3 /proc/loadavg)"
BUSY_SECONDS="$(cat "$TMP/busy-seconds" 2>/dev/null || echo 0)"
FINISHED_IN=$SECONDS

# --- summary -----------------------------------------------------------------------------------
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b ? a / b : 0 }'; }
ms() { awk -v x="$1" 'BEGIN { printf "%.3f", x / 1000 }'; }
verdict() { [[ "$1" == 1 ]] && echo met || echo "**missed**"; }
le() { awk -v a="$1" -v b="$2" 'BEGIN { print (a <= b + 1e-9) ? 1 : 0 }'; }

declare -A M_RPS M_CPU M_UTIL M_OTHER M_NICE0 M_LOADBUSY M_NICE1 M_BAD ROUND_CPU
ANY_BAD=0
for p in "${PATH_IDS[@]}"; do
  for mode in "${MODES[@]}"; do
    key="$p-$mode"
    rps=()
    cpu=()
    util=()
    other=()
    loadbusy=()
    nice0=()
    nice1=()
    bad=0
    for r in $(seq "$ROUNDS"); do
      rps+=("${RPS[$key,$r]}")
      cpu+=("${CPU_US[$key,$r]}")
      util+=("${UTIL[$key,$r]}")
      other+=("${OTHER[$key,$r]}")
      loadbusy+=("${LOADBUSY[$key,$r]}")
      nice0+=("${NICE0[$key,$r]}")
      nice1+=("${NICE1[$key,$r]}")
      bad=$((bad + ${BAD[$key,$r]}))
    done
    M_RPS[$key]="$(awk -v x="$(median "${rps[@]}")" 'BEGIN { printf "%.0f", x }')"
    M_CPU[$key]="$(awk -v x="$(median "${cpu[@]}")" 'BEGIN { printf "%.1f", x }')"
    M_UTIL[$key]="$(median "${util[@]}")"
    M_OTHER[$key]="$(median "${other[@]}")"
    M_LOADBUSY[$key]="$(median "${loadbusy[@]}")"
    M_NICE0[$key]="$(median "${nice0[@]}")"
    M_NICE1[$key]="$(median "${nice1[@]}")"
    M_BAD[$key]="$bad"
    ROUND_CPU[$key]="$(IFS=/; echo "${cpu[*]}")"
    ((bad == 0)) || ANY_BAD=1
  done
done
ttfb50() { kv body_p50_us "$TMP/ttfb-$1.txt"; }

ALL_MET=1
{
  echo "## cutover dialect benchmark: $STARTED"
  echo
  echo "Gateway \`workers: 1\`, access log off, pinned to CPU $GATEWAY_CPU; wrk ($WRK_THREADS thread, $CONNECTIONS connections), both simulators (\`--profile fast --latency-ms 0 --jitter-ms 0\`) and the TTFB client on CPU $LOAD_CPU."
  echo "$ROUNDS rounds of ${WARMUP}s warm-up + ${DURATION}s measured per path and mode (medians shown; CPU per round in its own column). TTFB: median first body byte of $TTFB_COUNT sequential streamed requests per target."
  echo "Load average $LOAD_BEFORE before, $LOAD_AFTER after; a compiler or linker ran alongside in $BUSY_SECONDS of ${FINISHED_IN} s; gateway log warnings/errors: $GATEWAY_PROBLEMS."
  echo "CPU shares are of the measured runs (medians), from /proc/stat: \"CPU $GATEWAY_CPU others\" is what anything but the gateway used of CPU $GATEWAY_CPU at normal priority (including interrupts and loopback softirq work), \"CPU $LOAD_CPU\" all normal-priority use of CPU $LOAD_CPU (wrk, simulators, anything else); \"niced\" is time taken by niced background processes (other sessions' builds), which only get a CPU's leftovers. The gateway is the bottleneck only where its share of CPU $GATEWAY_CPU nears 100 %."
  echo
  echo "| path | mode | req/s | CPU µs/req | ratio to path 1 (same mode) | TTFB p50 ms | CPU µs/req per round | gateway % of CPU $GATEWAY_CPU | CPU $GATEWAY_CPU others % (niced) | CPU $LOAD_CPU % (niced) | non-2xx + errors |"
  echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  for p in "${PATH_IDS[@]}"; do
    for mode in "${MODES[@]}"; do
      key="$p-$mode"
      t="-"
      [[ "$mode" == stream ]] && t="$(ms "$(ttfb50 "path$p")")"
      printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "${P_LABEL[$p]}" "$mode" "${M_RPS[$key]}" \
        "${M_CPU[$key]}" "$(ratio "${M_CPU[$key]}" "${M_CPU[1-$mode]}")" "$t" "${ROUND_CPU[$key]}" \
        "${M_UTIL[$key]}" "${M_OTHER[$key]} (${M_NICE0[$key]})" "${M_LOADBUSY[$key]} (${M_NICE1[$key]})" "${M_BAD[$key]}"
    done
  done
  echo
  echo "| streaming TTFB, $TTFB_COUNT sequential requests | first header byte p50 ms | first body byte p50 ms | p90 ms | p99 ms |"
  echo "|---|---:|---:|---:|---:|"
  for name in direct-openai direct-anthropic path1 path2 path3 path4 path5; do
    f="$TMP/ttfb-$name.txt"
    case "$name" in
      direct-openai) label="OpenAI simulator directly (chat)" ;;
      direct-anthropic) label="Anthropic simulator directly (Messages)" ;;
      *) label="${P_LABEL[${name#path}]}" ;;
    esac
    printf '| %s | %s | %s | %s | %s |\n' "$label" "$(ms "$(kv header_p50_us "$f")")" \
      "$(ms "$(kv body_p50_us "$f")")" "$(ms "$(kv body_p90_us "$f")")" "$(ms "$(kv body_p99_us "$f")")"
  done
  echo
  echo "| target | measured | verdict |"
  echo "|---|---|---|"
  for mode in "${MODES[@]}"; do
    r="$(ratio "${M_CPU[2-$mode]}" "${M_CPU[1-$mode]}")"
    ok="$(le "$r" 1.00)"
    ((ok)) || ALL_MET=0
    echo "| pass-through CPU/req ≤ today's chat path ($mode): path 2 ≤ 1.00 × path 1 | ${M_CPU[2-$mode]} vs ${M_CPU[1-$mode]} µs = $r × | $(verdict "$ok") |"
  done
  for p in 3 4 5; do
    for mode in "${MODES[@]}"; do
      b="${P_BASE[$p]}"
      r="$(ratio "${M_CPU[$p-$mode]}" "${M_CPU[$b-$mode]}")"
      ok="$(le "$r" 1.30)"
      ((ok)) || ALL_MET=0
      extra=""
      if [[ -n "${P_SAME_CLIENT[$p]:-}" ]]; then
        c="${P_SAME_CLIENT[$p]}"
        extra=" (vs path $c, the same client's pass-through: $(ratio "${M_CPU[$p-$mode]}" "${M_CPU[$c-$mode]}") ×)"
      fi
      echo "| translated CPU/req ≤ 1.30 × pass-through ($mode): path $p vs path $b (same provider) | ${M_CPU[$p-$mode]} vs ${M_CPU[$b-$mode]} µs = $r ×$extra | $(verdict "$ok") |"
    done
  done
  for p in 3 4 5; do
    b="${P_BASE[$p]}"
    d="$(awk -v a="$(ttfb50 "path$p")" -v b="$(ttfb50 "path$b")" 'BEGIN { print a - b }')"
    ok="$(le "$d" 200)"
    ((ok)) || ALL_MET=0
    extra=""
    if [[ -n "${P_SAME_CLIENT[$p]:-}" ]]; then
      c="${P_SAME_CLIENT[$p]}"
      extra=" (vs path $c: $(ms "$(awk -v a="$(ttfb50 "path$p")" -v b="$(ttfb50 "path$c")" 'BEGIN { print a - b }')") ms)"
    fi
    echo "| streaming translation adds ≤ 0.2 ms to TTFB: path $p − path $b (median first body byte) | $(ms "$d") ms$extra | $(verdict "$ok") |"
  done
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
