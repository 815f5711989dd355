#!/usr/bin/env bash
# `make demo`: a migration played end to end on loopback, with no keys and no internet.
#
# gpt-4o moves from a simulated `primary` to a simulated `candidate` (examples/demo.yaml, with
# stage timings compressed to seconds) while `cutover simulate traffic` plays many users.
#   Run 1: a healthy candidate. Shadow traffic, then 10 %, 50 % and 100 % of the users, each
#          stage judged by the gates, until the migration is promoted.
#   Run 2: the same migration from scratch. Once it reaches 50 %, the candidate is restarted
#          answering 30 % of requests with errors: the gates roll the migration back on their
#          own, and the fallback to the primary keeps the clients' errors at 0.
#
# With --dialects (`make demo-dialects`, examples/demo-dialects.yaml) the same two runs move
# claude-sonnet-4-5 from a native Anthropic provider to an OpenAI-compatible relay, the clients
# speaking Anthropic's Messages API: every candidate answer is translated both ways.
#
# usage: scripts/demo.sh [--ci] [--dialects]   (or DEMO_FAST=1): --ci: shorter stages. Either way the script
# exits non-zero unless run 1 was promoted, run 2 was rolled back by a gate, and no client saw
# an error. CUTOVER_BINARY names the binary (default build/cutover).
set -euo pipefail
if [[ -n ${CUTOVER_BINARY:-} && $CUTOVER_BINARY != /* ]]; then CUTOVER_BINARY=$PWD/$CUTOVER_BINARY; fi
cd "$(dirname "$0")/.."

fast=${DEMO_FAST:-0}
dialects=0
for arg in "$@"; do
  case $arg in
    --ci) fast=1 ;;
    --dialects) dialects=1 ;;
    *) echo "usage: $0 [--ci] [--dialects]" >&2; exit 2 ;;
  esac
done

binary=${CUTOVER_BINARY:-build/cutover}
# Client load: enough users that 10 % of them is a fair sample, enough requests that every
# stage has its minimum within its minimum duration.
traffic_args=(--users 100 --concurrency 32 --rate 400 --stream-share 0.3)
if ((dialects)); then
  demo_config=examples/demo-dialects.yaml
  migration=claude-to-relay
  traffic_args+=(--model claude-sonnet-4-5 --api messages)
  primary_args=(--dialect anthropic)
else
  demo_config=examples/demo.yaml
  migration=gpt4o-to-candidate
  traffic_args+=(--model gpt-4o)
  primary_args=()
fi
# The candidate answers after 12 ms (the primary after 20 ms) and sends a stream in one burst:
# when the demo kills it to restart it degraded, no answer is cut halfway (which no fallback
# could hide); requests it had not answered yet fall back to the primary.
candidate_args=(--profile fast --latency-ms 12 --api-key-env CUTOVER_DEMO_CANDIDATE_KEY)
if ((fast)); then
  run_limit=30       # seconds a run may take before the demo gives up
  stage_seconds=2    # instead of the 3 s (shadow) and 4 s (stages) of examples/demo.yaml
else
  run_limit=60
  stage_seconds=
fi

workdir=$(mktemp -d "${TMPDIR:-/tmp}/cutover-demo.XXXXXX")
pids=()
cleanup() {
  local status=$? i file
  # Newest first: the clients stop before the gateway, the gateway before the providers.
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do kill "${pids[i]}" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if ((status != 0)); then
    for file in "$workdir"/*.log "$workdir"/*.progress; do
      [[ -e $file ]] && { echo "--- the end of $(basename "$file")"; tail -n 5 "$file"; }
    done >&2
  fi
  rm -rf "$workdir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

export CUTOVER_DEMO_CLIENT_KEY=demo-client-key
export CUTOVER_DEMO_PRIMARY_KEY=demo-primary-key
export CUTOVER_DEMO_CANDIDATE_KEY=demo-candidate-key
CUTOVER_DEMO_ADMIN_TOKEN=demo-admin-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
export CUTOVER_DEMO_ADMIN_TOKEN

if [[ -t 1 ]]; then bold=$'\033[1m' plain=$'\033[0m'; else bold='' plain=''; fi
say() { printf '\n%s== %s%s\n' "$bold" "$*" "$plain"; }
fail() {
  echo "demo: $*" >&2
  exit 1
}

# Waits for the line a process logs once it listens ("... on 127.0.0.1:PORT") and prints PORT.
port_from_log() {
  local file=$1 pattern=$2 pid=$3 line
  for _ in $(seq 1 200); do
    line=$(grep -m1 -E "$pattern" "$file" 2>/dev/null || true)
    if [[ -n $line ]]; then
      line=${line##*127.0.0.1:}
      echo "${line%% *}"
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  cat "$file" >&2
  fail "no '$pattern' in $file"
}

# start_provider NAME PORT ARGS...: a simulated provider in the background; sets $provider_port
# (PORT, or the free one it picked for 0) and $provider_pid.
start_provider() {
  local name=$1 port=$2 log
  shift 2
  log="$workdir/$name.$(date +%s%N).log"
  "$binary" simulate provider --port "$port" "$@" 2>"$log" &
  provider_pid=$!
  pids+=("$provider_pid")
  provider_port=$(port_from_log "$log" "listening on" "$provider_pid")
}

# start_gateway PORT ADMIN_PORT: $demo_config pointed at this demo's providers and
# ports (0: any free one); sets $gateway_pid, $gateway_url and $admin_url.
start_gateway() {
  local config="$workdir/demo.yaml" log
  log="$workdir/gateway.$(date +%s%N).log"
  local -a edits=(
    -e "s|127.0.0.1:19101|127.0.0.1:$primary_port|"
    -e "s|127.0.0.1:19102|127.0.0.1:$candidate_port|"
    -e "s|^listen: 127.0.0.1:8080|listen: 127.0.0.1:$1|"
    -e "s|^  listen: 127.0.0.1:9090|  listen: 127.0.0.1:$2|"
  )
  if [[ -n $stage_seconds ]]; then edits+=(-e "s/min_duration: [0-9]*s/min_duration: ${stage_seconds}s/"); fi
  sed "${edits[@]}" "$demo_config" >"$config"
  if grep -qE '127\.0\.0\.1:(19101|19102|8080|9090)' "$config"; then
    fail "$demo_config no longer has the addresses this script rewrites"
  fi
  "$binary" serve --config "$config" --check-config >/dev/null
  "$binary" serve --config "$config" >/dev/null 2>"$log" &
  gateway_pid=$!
  pids+=("$gateway_pid")
  gateway_url="http://127.0.0.1:$(port_from_log "$log" "listening on .* workers" "$gateway_pid")"
  admin_url="http://127.0.0.1:$(port_from_log "$log" "admin API on" "$gateway_pid")"
}

stop_gateway() {
  kill -TERM "$gateway_pid"
  wait "$gateway_pid" || true
}

ctl() { "$binary" ctl --admin-url "$admin_url" --token-env CUTOVER_DEMO_ADMIN_TOKEN "$@"; }

admin_get() {
  curl -sf -H "Authorization: Bearer $CUTOVER_DEMO_ADMIN_TOKEN" "$admin_url/admin/v1/migrations/$migration$1"
}

# "PHASE WEIGHT" of the migration, from the admin API.
migration_state() {
  admin_get "" | python3 -c 'import json, sys; m = json.load(sys.stdin); print(m["phase"], m["weight"])'
}

# The last transition's trigger ("gates:pass", "gate:error_rate", "operator:...").
last_trigger() {
  admin_get "/history" | python3 -c 'import json, sys; print(json.load(sys.stdin)["transitions"][-1]["trigger"])'
}

start_traffic() {
  "$binary" simulate traffic --url "$gateway_url" --key-env CUTOVER_DEMO_CLIENT_KEY \
    "${traffic_args[@]}" --duration "$((run_limit + 30))s" >"$workdir/$1.json" 2>"$workdir/$1.progress" &
  traffic_pid=$!
  pids+=("$traffic_pid")
}

# The first SIGTERM lets the requests in flight finish; the summary lands in $1.json.
stop_traffic() {
  kill -TERM "$traffic_pid"
  wait "$traffic_pid" || true
}

# follow RUN [HOOK]: prints the migration's phase and weight (on every change, and once a
# second with the clients' latest progress line) until the migration ends (promoted,
# rolled_back, aborted or paused); runs HOOK once, when the weight first reaches 50 %. Sets
# $final_phase and $run_seconds; fails after $run_limit seconds.
follow() {
  local run=$1 hook=${2:-} started=$EPOCHREALTIME
  local seen="" printed=0 hooked=0 now elapsed phase weight state clients
  while :; do
    now=$EPOCHREALTIME
    elapsed=$(awk -v a="$started" -v b="$now" 'BEGIN { printf "%.1f", b - a }')
    state=$(migration_state) || fail "the admin API did not answer"
    read -r phase weight <<<"$state"
    if [[ $state != "$seen" || ${now%.*} -gt $printed ]]; then
      clients=$(tail -n 1 "$workdir/$run.progress" 2>/dev/null | sed 's/^traffic: //')
      printf '  [%5ss] %-12s %4s%% to the candidate | %s\n' "$elapsed" "$phase" \
        "$(awk -v w="$weight" 'BEGIN { printf "%.0f", w * 100 }')" "${clients:-starting}"
      seen=$state
      printed=${now%.*}
    fi
    if [[ $phase =~ ^(promoted|rolled_back|aborted|paused)$ ]]; then
      final_phase=$phase
      run_seconds=$elapsed
      return 0
    fi
    if [[ -n $hook && $hooked == 0 && $phase == canary ]] && awk -v w="$weight" 'BEGIN { exit !(w >= 0.5) }'; then
      hooked=1
      "$hook"
    fi
    if awk -v e="$elapsed" -v l="$run_limit" 'BEGIN { exit !(e > l) }'; then
      ctl get "$migration" >&2 || true
      fail "$run: still $phase after ${run_limit}s"
    fi
    sleep 0.25
  done
}

degrade_candidate() {
  echo "  >> the candidate degrades: restarted on port $candidate_port answering 30 % of requests with HTTP 500"
  kill -TERM "$candidate_pid"
  wait "$candidate_pid" || true
  start_provider candidate-degraded "$candidate_port" "${candidate_args[@]}" --error-rate 0.3
  candidate_pid=$provider_pid
}

# Saves what the summary at the end shows about run $1, while its gateway still runs.
record_run() {
  local run=$1
  {
    echo "-- cutover ctl get $migration"
    ctl get "$migration" || true
    echo
    echo "-- cutover ctl history $migration"
    ctl history "$migration" || true
    echo
    echo "-- cutover ctl shadow $migration"
    ctl shadow "$migration" || true
    echo
    echo "-- what the clients saw (cutover simulate traffic)"
    python3 - "$workdir/$run.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
served = ", ".join(f"{name} {count}" for name, count in sorted(s["by_provider"].items()))
kinds = ", ".join(f"{kind} {count}" for kind, count in sorted(s["errors_by_kind"].items()))
print(f"{s['requests']} requests ({s['streamed']} streamed) in {s['duration_ms'] / 1000:.1f} s: "
      f"{s['ok']} answered, {s['errors']} client-visible errors{' (' + kinds + ')' if kinds else ''}")
print(f"served by: {served}; latency p50 {s['p50_ms']} ms, p95 {s['p95_ms']} ms, p99 {s['p99_ms']} ms")
PY
  } >"$workdir/$run.report" 2>&1
  last_trigger >"$workdir/$run.trigger"
  python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["errors"])' "$workdir/$run.json" >"$workdir/$run.errors"
}

say "starting the simulated providers: primary (healthy) and candidate (healthy, faster, cheaper)"
start_provider primary 0 --profile healthy --api-key-env CUTOVER_DEMO_PRIMARY_KEY "${primary_args[@]}"
primary_port=$provider_port
start_provider candidate 0 "${candidate_args[@]}"
candidate_port=$provider_port
candidate_pid=$provider_pid
echo "primary on 127.0.0.1:$primary_port, candidate on 127.0.0.1:$candidate_port"

say "run 1: migrating gpt-4o to a healthy candidate"
start_gateway 0 0
gateway_port=${gateway_url##*:}
admin_port=${admin_url##*:}
echo "gateway on $gateway_url; migration $migration from $demo_config"
echo "dashboard (both runs): $admin_url/dashboard#token=$CUTOVER_DEMO_ADMIN_TOKEN"
start_traffic run1
follow run1
run1_phase=$final_phase
run1_seconds=$run_seconds
stop_traffic
record_run run1
stop_gateway

say "run 2: the same migration from scratch; the candidate degrades at 50 %"
start_gateway "$gateway_port" "$admin_port"
start_traffic run2
follow run2 degrade_candidate
run2_phase=$final_phase
run2_seconds=$run_seconds
stop_traffic
record_run run2
stop_gateway

say "run 1 (healthy candidate): $run1_phase after ${run1_seconds}s, trigger $(cat "$workdir/run1.trigger")"
cat "$workdir/run1.report"
say "run 2 (candidate degraded at 50 %): $run2_phase after ${run2_seconds}s, trigger $(cat "$workdir/run2.trigger")"
cat "$workdir/run2.report"

run1_errors=$(cat "$workdir/run1.errors")
run2_errors=$(cat "$workdir/run2.errors")
problems=()
[[ $run1_phase == promoted ]] || problems+=("run 1 ended $run1_phase, not promoted")
[[ $run2_phase == rolled_back ]] || problems+=("run 2 ended $run2_phase, not rolled_back")
[[ $(cat "$workdir/run2.trigger") == gate:* ]] || problems+=("run 2 was not rolled back by a gate")
((run1_errors == 0)) || problems+=("clients saw $run1_errors errors in run 1")
((run2_errors == 0)) || problems+=("clients saw $run2_errors errors in run 2")
echo
if ((${#problems[@]})); then
  for problem in "${problems[@]}"; do echo "demo: $problem" >&2; done
  exit 1
fi
echo "demo: run 1 promoted, run 2 rolled back by its gates ($(cat "$workdir/run2.trigger")), no client saw an error"
