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
# With --fleet (`make demo-fleet`) the gateway is three replicas, r1, r2 and r3, sharing the
# migration through a throwaway redis-server (loopback, a free port, no persistence), each with
# its own traffic generator: one replica holds the lease and judges the gates on the whole
# fleet's traffic, and every replica routes by the shared record. In run 1, at 50 %, the leader
# is stopped (its clients first) and another replica takes the gates over; it is started again
# and follows the fleet. At the end of each run every replica must report the same phase, weight
# and generation; the summary shows them and who led when.
#
# usage: scripts/demo.sh [--ci] [--dialects] [--fleet]   (or DEMO_FAST=1): --ci: shorter stages.
# Either way the script exits non-zero unless run 1 was promoted, run 2 was rolled back by a
# gate, and no client saw an error (with --fleet, also unless the replicas agree at the end).
# CUTOVER_BINARY names the binary (default build/cutover).
set -euo pipefail
if [[ -n ${CUTOVER_BINARY:-} && $CUTOVER_BINARY != /* ]]; then CUTOVER_BINARY=$PWD/$CUTOVER_BINARY; fi
cd "$(dirname "$0")/.."

fast=${DEMO_FAST:-0}
dialects=0
fleet=0
for arg in "$@"; do
  case $arg in
    --ci) fast=1 ;;
    --dialects) dialects=1 ;;
    --fleet) fleet=1 ;;
    *) echo "usage: $0 [--ci] [--dialects] [--fleet]" >&2; exit 2 ;;
  esac
done

binary=${CUTOVER_BINARY:-build/cutover}
# The replicas: one gateway, or r1, r2 and r3 sharing a Redis.
if ((fleet)); then replicas=(r1 r2 r3); else replicas=(gateway); fi
# Client load: enough users that 10 % of them is a fair sample, enough requests that every
# stage has its minimum within its minimum duration. A fleet gets it spread over its replicas,
# one generator each (the same 100 users: a user keeps its side whichever replica serves it).
traffic_args=(--users 100 --concurrency "$((32 / ${#replicas[@]}))" --stream-share 0.3
  --rate "$(awk -v n="${#replicas[@]}" 'BEGIN { printf "%.2f", 400 / n }')")
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

# start_redis: with --fleet, a throwaway redis-server on a free loopback port (nothing saved);
# sets $redis_port.
start_redis() {
  local pid
  mkdir -p "$workdir/redis"
  redis_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no --dir "$workdir/redis" \
    --loglevel warning >"$workdir/redis.log" 2>&1 &
  pid=$!
  pids+=("$pid")
  for _ in $(seq 1 200); do
    [[ $(redis-cli -h 127.0.0.1 -p "$redis_port" ping 2>/dev/null) == PONG ]] && return 0
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  fail "redis-server did not start on 127.0.0.1:$redis_port (see $workdir/redis.log)"
}

# start_gateway I: replica I of ${replicas[@]} runs $demo_config pointed at this demo's
# providers, on the ports it had before (0 the first time: any free one); with --fleet its state
# is in the run's keys of the demo's Redis. Sets gateway_pids[I], gateway_urls[I], admin_urls[I]
# and the run's log files, and $gateway_url and $admin_url to replica I's.
start_gateway() {
  local i=$1 name=${replicas[$1]} config log
  config="$workdir/$name.yaml"
  log="$workdir/$name.$(date +%s%N).log"
  local -a edits=(
    -e "s|127.0.0.1:19101|127.0.0.1:$primary_port|"
    -e "s|127.0.0.1:19102|127.0.0.1:$candidate_port|"
    -e "s|^listen: 127.0.0.1:8080|listen: 127.0.0.1:${gateway_ports[i]:-0}|"
    -e "s|^  listen: 127.0.0.1:9090|  listen: 127.0.0.1:${admin_ports[i]:-0}|"
  )
  if [[ -n $stage_seconds ]]; then edits+=(-e "s/min_duration: [0-9]*s/min_duration: ${stage_seconds}s/"); fi
  if ((fleet)); then
    edits+=(-e "s|^state_store: .*|state_store: {url: redis://127.0.0.1:$redis_port/0, key_prefix: $key_prefix, replica: $name, local_file: $workdir/$name.db}|")
  fi
  sed "${edits[@]}" "$demo_config" >"$config"
  if grep -qE '127\.0\.0\.1:(19101|19102|8080|9090)' "$config" || { ((fleet)) && ! grep -q '^state_store: {url: redis://' "$config"; }; then
    fail "$demo_config no longer has the addresses (and state_store line) this script rewrites"
  fi
  "$binary" serve --config "$config" --check-config >/dev/null
  "$binary" serve --config "$config" >/dev/null 2>"$log" &
  gateway_pids[i]=$!
  pids+=("${gateway_pids[i]}")
  run_logs+=("$log")
  gateway_logs[i]=$log
  gateway_urls[i]="http://127.0.0.1:$(port_from_log "$log" "listening on .* workers" "${gateway_pids[i]}")"
  admin_urls[i]="http://127.0.0.1:$(port_from_log "$log" "admin API on" "${gateway_pids[i]}")"
  gateway_ports[i]=${gateway_urls[i]##*:}
  admin_ports[i]=${admin_urls[i]##*:}
  gateway_url=${gateway_urls[i]}
  admin_url=${admin_urls[i]}
}

# start_gateways RUN: every replica, for a run of its own (with --fleet, the run's own keys in
# Redis: each run starts the migration afresh, like a gateway on ":memory:"); the admin API
# that the script reads is replica 0's.
start_gateways() {
  local i
  key_prefix="demo-$1"
  run_logs=()
  for i in "${!replicas[@]}"; do start_gateway "$i"; done
  gateway_url=${gateway_urls[0]}
  admin_url=${admin_urls[0]}
}

stop_gateway() {
  kill -TERM "${gateway_pids[$1]}" 2>/dev/null || true
  wait "${gateway_pids[$1]}" || true
}

stop_gateways() {
  local i
  for i in "${!replicas[@]}"; do kill -TERM "${gateway_pids[i]}" 2>/dev/null || true; done
  for i in "${!replicas[@]}"; do wait "${gateway_pids[i]}" || true; done
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

# start_traffic RUN [I]: the clients of replica I (of every replica without I); each generator's
# summary lands in its own RUN.*.json, its progress lines in the matching .progress file.
start_traffic() {
  local run=$1 i file
  for i in ${2:-${!replicas[@]}}; do
    file="$workdir/$run.${replicas[i]}.$(date +%s%N)"
    "$binary" simulate traffic --url "${gateway_urls[i]}" --key-env CUTOVER_DEMO_CLIENT_KEY \
      "${traffic_args[@]}" --duration "$((run_limit + 30))s" >"$file.json" 2>"$file.progress" &
    traffic_pids[i]=$!
    traffic_files[i]=$file
    pids+=("${traffic_pids[i]}")
  done
}

# The first SIGTERM lets the requests in flight finish; the summaries land in RUN.*.json.
stop_traffic() {
  local i
  for i in ${1:-${!replicas[@]}}; do kill -TERM "${traffic_pids[i]}" 2>/dev/null || true; done
  for i in ${1:-${!replicas[@]}}; do wait "${traffic_pids[i]}" || true; done
}

# The clients' latest progress: the generator's own line, or with --fleet one short part per
# replica ("r1 133 req/s, candidate 48 %").
clients_progress() {
  local i line rate share parts=()
  if ((!fleet)); then
    tail -n 1 "${traffic_files[0]}.progress" 2>/dev/null | sed 's/^traffic: //'
    return 0
  fi
  for i in "${!replicas[@]}"; do
    line=$(tail -n 1 "${traffic_files[i]}.progress" 2>/dev/null) || true
    rate=$(grep -oE '[0-9]+ req/s' <<<"$line" || true)
    share=$(grep -oE 'candidate [0-9]+%' <<<"$line" || true)
    parts+=("${replicas[i]} ${rate:-starting}${share:+, $share}")
  done
  local IFS=';' joined
  joined="${parts[*]}"
  echo "${joined//;/; }"
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
      clients=$(clients_progress)
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

# With --fleet, in run 1 at 50 %: the replica holding the lease stops (its clients first, so
# none of them sees an error; a clean shutdown hands the lease back), another takes over the
# gates at its next renewal, and the stopped one starts again and follows the shared record.
hand_over_lead() {
  local i leader="" started=$EPOCHREALTIME stopped next="" taken
  for i in "${!replicas[@]}"; do
    if [[ $(replica_field "$i" 'm["store"]["leading"]') == True ]]; then leader=$i; fi
  done
  [[ -n $leader ]] || fail "no replica reports that it leads"
  echo "  >> ${replicas[leader]} holds the lease: its clients stop, then it shuts down (SIGTERM) and hands the lease back"
  stop_traffic "$leader"
  stop_gateway "$leader"
  stopped=$EPOCHREALTIME
  # The script reads another replica's admin API from now on.
  admin_url=${admin_urls[(leader + 1) % ${#replicas[@]}]}
  for _ in $(seq 1 100); do
    for i in "${!replicas[@]}"; do
      ((i == leader)) && continue
      if [[ $(replica_field "$i" 'm["store"]["leading"]') == True ]]; then next=$i; fi
    done
    [[ -n $next ]] && break
    sleep 0.05
  done
  [[ -n $next ]] || fail "no replica took the lease over"
  # When it took the lease, by its log's (local) time stamp.
  taken=$(grep 'fleet: this replica .* leads with term' "${gateway_logs[next]}" | tail -n 1 | cut -d' ' -f1)
  taken=$(date -d "$taken" +%s.%N 2>/dev/null) || taken=$EPOCHREALTIME
  echo "  >> ${replicas[leader]} stopped after $(awk -v a="$started" -v b="$stopped" 'BEGIN { printf "%.1f", b - a }') s; ${replicas[next]} took the lease $(awk -v a="$stopped" -v b="$taken" 'BEGIN { printf "%.2f", b - a }') s later (its next renewal) and judges the gates; ${replicas[leader]} starts again and follows"
  start_gateway "$leader"
  admin_url=${admin_urls[next]}
  start_traffic "$hook_run" "$leader"
}

# replica_field I EXPR: EXPR (Python, over the status object m) from replica I's admin API.
replica_field() {
  curl -sf -H "Authorization: Bearer $CUTOVER_DEMO_ADMIN_TOKEN" "${admin_urls[$1]}/admin/v1/migrations/$migration" |
    python3 -c "import json, sys; m = json.load(sys.stdin); print($2)"
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
    python3 - "$workdir/$run".*.json <<'PY'
import json, sys
seen = set()
for path in sys.argv[1:]:
    s = json.load(open(path))
    # With --fleet, one generator per replica (two for a replica that was restarted).
    who = path.rsplit("/", 1)[-1].split(".")[1]
    who, _ = (f"{who}, restarted" if who in seen else who), seen.add(who)
    served = ", ".join(f"{name} {count}" for name, count in sorted(s["by_provider"].items()))
    kinds = ", ".join(f"{kind} {count}" for kind, count in sorted(s["errors_by_kind"].items()))
    prefix = f"{who}: " if len(sys.argv) > 2 else ""
    print(f"{prefix}{s['requests']} requests ({s['streamed']} streamed) in {s['duration_ms'] / 1000:.1f} s: "
          f"{s['ok']} answered, {s['errors']} client-visible errors{' (' + kinds + ')' if kinds else ''}")
    print(f"{' ' * len(prefix)}served by: {served}; latency p50 {s['p50_ms']} ms, p95 {s['p95_ms']} ms, p99 {s['p99_ms']} ms")
PY
    if ((fleet)); then
      echo
      echo "-- every replica's view of $migration (GET /admin/v1/migrations/$migration on each)"
      fleet_views "$run"
      echo
      echo "-- who led (the replicas' logs)"
      grep -h 'fleet: this replica .* leads with term' "${run_logs[@]}" | sort |
        sed -E 's/^[0-9-]+T([0-9:.]+) [a-z]+ fleet: this replica \(([^)]*)\) leads with term ([0-9]+).*/  \1  \2 took the lease, term \3/'
    fi
  } >"$workdir/$run.report" 2>&1
  last_trigger >"$workdir/$run.trigger"
  python3 -c 'import json, sys; print(sum(json.load(open(p))["errors"] for p in sys.argv[1:]))' "$workdir/$run".*.json >"$workdir/$run.errors"
}

# fleet_views RUN: one line per replica (phase, weight, routed weight, generation, lease); writes
# RUN.agree: yes when every replica answered with the same phase, weight, routed weight and
# generation, and exactly one leads. A follower reads the record once an evaluation_interval, so
# it may be one behind for that long: asked again for up to 2 s before the answer is "no".
fleet_views() {
  local run=$1 i
  for _ in $(seq 1 10); do
    for i in "${!replicas[@]}"; do
      curl -sf -H "Authorization: Bearer $CUTOVER_DEMO_ADMIN_TOKEN" "${admin_urls[i]}/admin/v1/migrations/$migration" >"$workdir/$run.view.$i" ||
        echo '{}' >"$workdir/$run.view.$i"
    done
    fleet_table "$run" >"$workdir/$run.views"
    [[ $(cat "$workdir/$run.agree") == yes ]] && break
    sleep 0.2
  done
  cat "$workdir/$run.views"
}

fleet_table() {
  python3 - "$workdir/$1.agree" "${replicas[@]}" <<'PY'
import json, sys
agree_file, names = sys.argv[1], sys.argv[2:]
folder = agree_file.rsplit(".", 1)[0]
views, leaders = [], 0
print(f"  {'replica':8} {'phase':12} {'weight':>6} {'routed':>6} {'generation':>10}  lease")
for i, name in enumerate(names):
    m = json.load(open(f"{folder}.view.{i}"))
    if not m:
        print(f"  {name:8} (no answer)")
        views.append(None)
        continue
    store = m["store"]
    leaders += bool(store["leading"])
    lease = f"leads ({store['leader']})" if store["leading"] else f"follows {store['leader'] or 'nobody'}"
    print(f"  {name:8} {m['phase']:12} {m['weight'] * 100:5.0f}% {m['routed_weight'] * 100:5.0f}% "
          f"{m['generation']:>10}  {lease}")
    views.append((m["phase"], m["weight"], m["routed_weight"], m["generation"]))
agree = None not in views and len(set(views)) == 1 and leaders == 1
print("  every replica reports the same phase, weight and generation; one leads" if agree
      else "  the replicas DISAGREE (or not exactly one leads)")
open(agree_file, "w").write("yes\n" if agree else "no\n")
PY
}
say "starting the simulated providers: primary (healthy) and candidate (healthy, faster, cheaper)"
start_provider primary 0 --profile healthy --api-key-env CUTOVER_DEMO_PRIMARY_KEY "${primary_args[@]}"
primary_port=$provider_port
start_provider candidate 0 "${candidate_args[@]}"
candidate_port=$provider_port
candidate_pid=$provider_pid
echo "primary on 127.0.0.1:$primary_port, candidate on 127.0.0.1:$candidate_port"
if ((fleet)); then
  say "starting a throwaway redis-server: the replicas' shared state"
  start_redis
  echo "redis-server on 127.0.0.1:$redis_port (nothing saved; removed at the end)"
fi

declare -a gateway_pids=() gateway_urls=() admin_urls=() gateway_ports=() admin_ports=()
declare -a traffic_pids=() traffic_files=() run_logs=() gateway_logs=()
run1_hook=
if ((fleet)); then
  say "run 1: migrating gpt-4o to a healthy candidate on three replicas; the leader stops at 50 %"
  run1_hook=hand_over_lead
else
  say "run 1: migrating gpt-4o to a healthy candidate"
fi
start_gateways run1
if ((fleet)); then
  for i in "${!replicas[@]}"; do
    echo "${replicas[i]}: gateway on ${gateway_urls[i]}, admin API on ${admin_urls[i]}"
  done
  echo "migration $migration from $demo_config, shared through Redis (keys {demo-run1}:*, {demo-run2}:* in run 2)"
  echo "dashboard (any replica shows the fleet's record; both runs): ${admin_urls[0]}/dashboard#token=$CUTOVER_DEMO_ADMIN_TOKEN"
else
  echo "gateway on $gateway_url; migration $migration from $demo_config"
  echo "dashboard (both runs): $admin_url/dashboard#token=$CUTOVER_DEMO_ADMIN_TOKEN"
fi
hook_run=run1
start_traffic run1
follow run1 "$run1_hook"
run1_phase=$final_phase
run1_seconds=$run_seconds
stop_traffic
record_run run1
stop_gateways

say "run 2: the same migration from scratch; the candidate degrades at 50 %"
start_gateways run2
hook_run=run2
start_traffic run2
follow run2 degrade_candidate
run2_phase=$final_phase
run2_seconds=$run_seconds
stop_traffic
record_run run2
# Run from a terminal, the last run's gateways stay up (see the end) so the dashboard URL printed
# above can still be opened; in CI, or piped, they stop now.
keep_up=0
if [[ -t 0 && -t 1 ]] && ((!fast)); then keep_up=1; else stop_gateways; fi

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
if ((fleet)); then
  [[ $(cat "$workdir/run1.agree") == yes ]] || problems+=("the replicas disagreed at the end of run 1")
  [[ $(cat "$workdir/run2.agree") == yes ]] || problems+=("the replicas disagreed at the end of run 2")
fi
echo
if ((${#problems[@]})); then
  for problem in "${problems[@]}"; do echo "demo: $problem" >&2; done
  exit 1
fi
if ((fleet)); then
  echo "demo: on three replicas sharing Redis, run 1 promoted (the lease changed hands on the way), run 2 rolled back by its gates ($(cat "$workdir/run2.trigger")), every replica agreed at the end, no client saw an error"
else
  echo "demo: run 1 promoted, run 2 rolled back by its gates ($(cat "$workdir/run2.trigger")), no client saw an error"
fi
if ((keep_up)); then
  echo
  echo "demo: the gateway and its dashboard stay up: ${admin_urls[0]}/dashboard#token=$CUTOVER_DEMO_ADMIN_TOKEN"
  read -r -p "demo: press Enter (or Ctrl-C) to stop them " || true
  stop_gateways
fi
