#!/usr/bin/env bash
# Fleet benchmark (issue #12): three `cutover serve` replicas sharing one Redis.
#
#   bash bench/fleet.sh            (or `make bench-fleet`, which builds first)
#
# Everything runs on this machine, on 127.0.0.1 only, on free ports, and stops by itself (about
# a minute with the defaults; FLEET_LIMIT seconds at most): one redis-server (no
# persistence, in a temporary directory, with a password), two simulated providers and three
# replicas r1, r2, r3 of one migration (evaluation_interval 100ms), with a little client traffic
# on each replica while the propagation is measured.
#
#   Propagation: FLEET_TRANSITIONS set-weight commands (20 % and 30 % in turn) sent to r1's admin
#     API. For each, the time from the commit (the journal entry's at_unix_ms, stamped with
#     Redis's clock in the commit script; and from r1's answer) until the LAST replica reports the
#     new weight as `routed_weight` in GET /admin/v1/migrations/NAME, every replica polled every
#     FLEET_POLL_MS. Target: max <= 1 s. Each replica reads the record every evaluation_interval,
#     so the bound is that interval plus a Redis round trip and the poll.
#   Leader failover: FLEET_FAILOVERS times, SIGKILL the replica whose status says
#     `store.leading: true`; the time until another reports `leading: true`, and until that one's
#     first evaluation as the leader (the status's `evaluation.at_unix_ms` after the "leads with
#     term" line of its log). The killed replica is restarted before the next round. A killed
#     leader cannot hand its lease back, so the others wait for it to expire: failover takes the
#     lease's remaining time (read with PTTL just before the kill; at most `lease`) plus up to one
#     renewal period of the others (lease/3, at most 1 s), plus one evaluation_interval.
#
# Environment knobs: CUTOVER_BIN (default build/cutover), FLEET_TRANSITIONS (200),
# FLEET_FAILOVERS (5), FLEET_LEASE (state_store.lease, 3s), FLEET_INTERVAL_MS
# (evaluation_interval, 100), FLEET_POLL_MS (5), FLEET_TRAFFIC_RATE (requests/s per replica during
# the propagation run, 20; 0 for none), FLEET_LIMIT (s, 600), FLEET_STRICT (1: exit 1 when the
# propagation target is missed). The summary is printed and written to bench/out/fleet.md.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BENCH="$ROOT/bench"
# shellcheck source=bench/common.sh
source "$BENCH/common.sh"
BIN="${CUTOVER_BIN:-$ROOT/build/cutover}"
TRANSITIONS="${FLEET_TRANSITIONS:-200}"
FAILOVERS="${FLEET_FAILOVERS:-5}"
LEASE="${FLEET_LEASE:-3s}"
INTERVAL_MS="${FLEET_INTERVAL_MS:-100}"
POLL_MS="${FLEET_POLL_MS:-5}"
TRAFFIC_RATE="${FLEET_TRAFFIC_RATE:-20}"
LIMIT="${FLEET_LIMIT:-600}"
STRICT="${FLEET_STRICT:-0}"
OUT_DIR="$BENCH/out"
REPORT="$OUT_DIR/fleet.md"
MIGRATION=fleet-bench
KEY_PREFIX=fleetbench
REPLICAS=(r1 r2 r3)

for tool in redis-server python3; do
  command -v "$tool" >/dev/null || { echo "bench: '$tool' not found (run scripts/install-deps.sh)" >&2; exit 1; }
done
[[ -x "$BIN" ]] || { echo "bench: $BIN not found; build first (make build)" >&2; exit 1; }
[[ "$LEASE" =~ ^[0-9]+(ms|s)$ ]] || { echo "bench: FLEET_LEASE must look like 3s or 2500ms" >&2; exit 2; }

TMP="$(mktemp -d "${TMPDIR:-/tmp}/cutover-fleet.XXXXXX")"
PIDS=()

cleanup() {
  local pid
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do kill -TERM "${PIDS[i]}" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    # A replica that ignores TERM for 10 s gets KILL.
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log() { printf '[fleet %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
fail() { log "$*"; exit 1; }

forget() {
  local keep=() p
  for p in "${PIDS[@]}"; do [[ "$p" == "$1" ]] || keep+=("$p"); done
  PIDS=("${keep[@]+"${keep[@]}"}")
}

# The whole run is bounded: past FLEET_LIMIT seconds the script ends itself (and cleanup runs).
(
  trap 'kill "$sleeper" 2>/dev/null; exit 0' TERM
  sleep "$LIMIT" &
  sleeper=$!
  wait "$sleeper"
  echo "bench: FLEET_LIMIT (${LIMIT}s) reached; stopping" >&2
  kill -TERM $$
) &
PIDS+=("$!")

export CUTOVER_FLEET_CLIENT_KEY="fleet-client-$RANDOM$RANDOM"
CUTOVER_FLEET_ADMIN_TOKEN="fleet-admin-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
CUTOVER_FLEET_REDIS_PASSWORD="fleet-redis-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
export CUTOVER_FLEET_ADMIN_TOKEN CUTOVER_FLEET_REDIS_PASSWORD
# Notes, once a second, whether a compiler or linker runs beside the benchmark (as bench/run.sh).
busy_monitor() {
  local seconds=0 found
  while :; do
    found="$(cat /proc/[0-9]*/comm 2>/dev/null | grep -cxE 'cc1plus|cc1|ld|ld\.gold|ld\.lld|lto1|collect2|rustc' || true)"
    [[ "$found" == 0 ]] || seconds=$((seconds + 1))
    echo "$seconds" >"$TMP/busy-seconds"
    sleep 1
  done
}
busy_monitor &
PIDS+=("$!")

mkdir -p "$OUT_DIR"
LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
STARTED="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
log "$(nproc) cores, load average $LOAD_BEFORE; everything on 127.0.0.1, temp dir $TMP"

# --- Redis: no persistence, loopback, a password -------------------------------------------------
REDIS_PORT="$(free_port)"
mkdir -p "$TMP/redis"
cat >"$TMP/redis/redis.conf" <<EOF
port $REDIS_PORT
bind 127.0.0.1
dir $TMP/redis
save ""
appendonly no
loglevel warning
requirepass $CUTOVER_FLEET_REDIS_PASSWORD
EOF
redis-server "$TMP/redis/redis.conf" >"$TMP/redis/redis.log" 2>&1 &
REDIS_PID=$!
PIDS+=("$REDIS_PID")
for _ in $(seq 200); do
  if [[ "$(REDISCLI_AUTH="$CUTOVER_FLEET_REDIS_PASSWORD" redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" == PONG ]]; then break; fi
  kill -0 "$REDIS_PID" 2>/dev/null || { cat "$TMP/redis/redis.log" >&2; fail "redis-server exited"; }
  sleep 0.05
done
log "redis-server $(redis-server --version | grep -oE 'v=[0-9.]+' | cut -d= -f2) on 127.0.0.1:$REDIS_PORT (pid $REDIS_PID)"

# --- two simulated providers ---------------------------------------------------------------------
# start_provider NAME: sets PROVIDER_PORT.
start_provider() {
  local name="$1" pid
  "$BIN" simulate provider --port 0 --profile fast 2>"$TMP/$name.log" &
  pid=$!
  PIDS+=("$pid")
  PROVIDER_PORT="$(wait_for_log "$TMP/$name.log" "$pid" "listening on")"
}
start_provider primary
PRIMARY_PORT=$PROVIDER_PORT
start_provider candidate
CANDIDATE_PORT=$PROVIDER_PORT
log "simulated providers: primary on 127.0.0.1:$PRIMARY_PORT, candidate on 127.0.0.1:$CANDIDATE_PORT"

# --- three replicas --------------------------------------------------------------------------------
declare -A PID LISTEN_PORT ADMIN_PORT LOG STARTS
write_config() {
  local name="$1"
  cat >"$TMP/$name.yaml" <<EOF
listen: 127.0.0.1:${LISTEN_PORT[$name]:-0}
workers: 1
access_log: "off"
state_store:
  url: redis://127.0.0.1:$REDIS_PORT/0
  password_env: CUTOVER_FLEET_REDIS_PASSWORD
  key_prefix: $KEY_PREFIX
  replica: $name
  lease: $LEASE
  local_file: $TMP/$name.db
auth:
  client_keys:
    - name: fleet-bench
      key_env: CUTOVER_FLEET_CLIENT_KEY
admin:
  listen: 127.0.0.1:${ADMIN_PORT[$name]:-0}
  token_env: CUTOVER_FLEET_ADMIN_TOKEN
providers:
  primary:
    base_url: http://127.0.0.1:$PRIMARY_PORT/v1
    no_api_key: true
    models: {gpt-4o: primary-gpt-4o}
  candidate:
    base_url: http://127.0.0.1:$CANDIDATE_PORT/v1
    no_api_key: true
    models: {gpt-4o: candidate-gpt-4o}
routes:
  - models: [gpt-4o]
    provider: primary
migrations:
  - name: $MIGRATION
    models: [gpt-4o]
    primary: primary
    candidate: candidate
    evaluation_interval: ${INTERVAL_MS}ms
    # Stages that never end on their own: only the benchmark's commands move the weight.
    stages:
      - {weight: 20%, min_duration: 24h, min_requests: 1000000}
      - {weight: 30%, min_duration: 24h, min_requests: 1000000}
      - {weight: 100%, min_duration: 24h, min_requests: 1000000}
    gates:
      max_error_rate: 50%
      max_attempt_error_rate: 50%
      latency: [{measure: total, quantile: p95, max_ratio: 10}]
EOF
}

# start_replica NAME: first start on free ports, later starts (after a kill) on the same ones.
start_replica() {
  local name="$1" pid
  STARTS[$name]=$((${STARTS[$name]:-0} + 1))
  LOG[$name]="$TMP/$name.${STARTS[$name]}.log"
  write_config "$name"
  "$BIN" serve --config "$TMP/$name.yaml" >/dev/null 2>"${LOG[$name]}" &
  pid=$!
  # Out of the job table (bash still reaps it): the failovers' SIGKILLs print no "Killed" line.
  disown "$pid"
  PID[$name]=$pid
  PIDS+=("$pid")
  LISTEN_PORT[$name]="$(wait_for_log "${LOG[$name]}" "$pid" "listening on")"
  ADMIN_PORT[$name]="$(wait_for_log "${LOG[$name]}" "$pid" "admin API on")"
}

# probe COMMAND ARGS...: bench/fleet_probe.py on the replicas as they are now (ports, pids, logs).
probe() {
  local name specs=()
  for name in "${REPLICAS[@]}"; do
    specs+=(--replica "$name=${ADMIN_PORT[$name]}:${PID[$name]}:${LOG[$name]}")
  done
  python3 "$BENCH/fleet_probe.py" "$1" "${specs[@]}" --migration "$MIGRATION" --poll-ms "$POLL_MS" "${@:2}"
}

write_config r1
"$BIN" serve --config "$TMP/r1.yaml" --check-config >/dev/null || fail "the replicas' configuration fails --check-config"
for name in "${REPLICAS[@]}"; do
  start_replica "$name"
  log "$name: pid ${PID[$name]}, gateway 127.0.0.1:${LISTEN_PORT[$name]}, admin 127.0.0.1:${ADMIN_PORT[$name]}"
done
probe converged --timeout 15 >"$TMP/converged-0.txt" || fail "the replicas did not converge after starting"
log "converged: $(awk '{ printf "%s %s %s gen %s%s; ", $1, $2, $4, $5, ($6 == "true" ? " (leader)" : "") }' "$TMP/converged-0.txt")"

# --- propagation ---------------------------------------------------------------------------------------
TRAFFIC_PIDS=()
if awk -v r="$TRAFFIC_RATE" 'BEGIN { exit !(r > 0) }'; then
  for name in "${REPLICAS[@]}"; do
    "$BIN" simulate traffic --url "http://127.0.0.1:${LISTEN_PORT[$name]}" --key-env CUTOVER_FLEET_CLIENT_KEY \
      --model gpt-4o --users 50 --concurrency 2 --rate "$TRAFFIC_RATE" --stream-share 0.3 --quiet \
      --duration "${LIMIT}s" >"$TMP/traffic-$name.json" 2>"$TMP/traffic-$name.log" &
    TRAFFIC_PIDS+=("$!")
    PIDS+=("$!")
  done
  log "client traffic: $TRAFFIC_RATE requests/s on each replica"
fi
log "propagation: $TRANSITIONS set-weight commands on r1, every replica polled every ${POLL_MS} ms"
PROPAGATION_OK=1
probe propagation --drive r1 --count "$TRANSITIONS" --interval-ms "$INTERVAL_MS" --timeout 5 \
  --budget "$((LIMIT / 2))" --out "$TMP/propagation.json" || PROPAGATION_OK=0
for pid in "${TRAFFIC_PIDS[@]+"${TRAFFIC_PIDS[@]}"}"; do
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  forget "$pid"
done

# --- leader failover -------------------------------------------------------------------------------------
LEASE_MS="$(awk -v l="$LEASE" 'BEGIN { if (l ~ /ms$/) print l + 0; else print (l + 0) * 1000 }')"
FAILOVER_TIMEOUT="$(awk -v l="$LEASE_MS" 'BEGIN { printf "%.0f", l / 1000 * 3 + 10 }')"
FAILOVER_FILES=()
for round in $(seq "$FAILOVERS"); do
  probe converged --timeout "$FAILOVER_TIMEOUT" >"$TMP/converged-$round.txt" || fail "round $round: the replicas did not converge"
  probe failover --redis-port "$REDIS_PORT" --redis-password-env CUTOVER_FLEET_REDIS_PASSWORD \
    --key-prefix "$KEY_PREFIX" --timeout "$FAILOVER_TIMEOUT" --out "$TMP/failover-$round.json" ||
    fail "failover round $round failed"
  FAILOVER_FILES+=("$TMP/failover-$round.json")
  killed="$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["killed"])' "$TMP/failover-$round.json")"
  for _ in $(seq 100); do kill -0 "${PID[$killed]}" 2>/dev/null || break; sleep 0.05; done
  forget "${PID[$killed]}"
  start_replica "$killed"
  log "round $round: $killed restarted (pid ${PID[$killed]})"
done
probe converged --timeout "$FAILOVER_TIMEOUT" >"$TMP/converged-end.txt" || fail "the replicas did not converge at the end"

# Warnings and errors the replicas logged (the failovers' "lost the lease" and store errors count).
PROBLEMS="$({ grep -chiE '\b(warn|warning|error|critical)\b' "$TMP"/r[0-9].*.log 2>/dev/null || true; } | awk '{ n += $1 } END { print n + 0 }')"
LOAD_AFTER="$(cut -d' ' -f1-3 /proc/loadavg)"
BUSY="$(cat "$TMP/busy-seconds" 2>/dev/null || echo 0) of $SECONDS"

# --- summary ----------------------------------------------------------------------------------------------
export F_STARTED="$STARTED" F_LOAD_BEFORE="$LOAD_BEFORE" F_LOAD_AFTER="$LOAD_AFTER" F_PROBLEMS="$PROBLEMS" F_BUSY="$BUSY"
export F_LEASE="$LEASE" F_INTERVAL_MS="$INTERVAL_MS" F_TRAFFIC_RATE="$TRAFFIC_RATE" F_BIN="$BIN"
F_MACHINE="$(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) RAM"
F_COMMIT="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
F_REDIS="$(redis-server --version | grep -oE 'v=[0-9.]+' | cut -d= -f2)"
export F_MACHINE F_COMMIT F_REDIS
python3 - "$TMP/propagation.json" "${FAILOVER_FILES[@]}" >"$REPORT" <<'PY'
import json, os, sys

def pct(values, q):
    values = sorted(values)
    rank = max(1, -(-len(values) * q // 1))
    return values[int(rank) - 1]

env = os.environ
prop = json.load(open(sys.argv[1]))
rounds = [json.load(open(path)) for path in sys.argv[2:]]
samples = prop["samples"]
print(f"## Fleet benchmark (issue #12): propagation and failover — {env['F_STARTED']}")
print()
print(f"- machine: {env['F_MACHINE']}; load average before {env['F_LOAD_BEFORE']}, after {env['F_LOAD_AFTER']}; "
      f"seconds in which a compiler or linker ran alongside: {env['F_BUSY']}; loopback only")
print(f"- cutover: `{env['F_BIN']}` (tree {env['F_COMMIT']}); redis-server {env['F_REDIS']} without persistence")
print(f"- three replicas (1 worker each) sharing it: evaluation_interval {env['F_INTERVAL_MS']}ms, lease {env['F_LEASE']}; "
      f"client traffic during the propagation run: {env['F_TRAFFIC_RATE']} requests/s per replica; "
      f"warning/error lines the replicas logged: {env['F_PROBLEMS']}")
print()
if samples:
    lags = [s["lag_from_commit_ms"] for s in samples]
    answers = [s["lag_from_answer_ms"] for s in samples]
    print(f"### Propagation: {len(samples)} set-weight commits on {prop['driver']}, every replica polled every {prop['poll_ms']:g} ms")
    print()
    print("| until the last replica routes the new weight | p50 ms | p90 ms | p99 ms | max ms |")
    print("|---|---:|---:|---:|---:|")
    for label, values in (("from the commit (journal at_unix_ms, Redis's clock)", lags),
                          ("from the committing replica's answer", answers)):
        print(f"| {label} | {pct(values, .5):.0f} | {pct(values, .9):.0f} | {pct(values, .99):.0f} | {max(values):.0f} |")
    for name in sorted(samples[0]["per_replica_from_commit_ms"]):
        values = [s["per_replica_from_commit_ms"][name] for s in samples]
        role = " (commits them)" if name == prop["driver"] else ""
        print(f"| {name}{role} alone, from the commit | {pct(values, .5):.0f} | {pct(values, .9):.0f} | {pct(values, .99):.0f} | {max(values):.0f} |")
    print()
    ok = max(lags) <= 1000 and not prop["failures"]
    first, last = (prop["journal_generations"] + [None, None])[:2]
    print(f"Target max ≤ 1 s: **{'met' if ok else 'missed'}** ({max(lags):.0f} ms). "
          f"Journal generations {first}..{last}, consecutive: {'yes' if prop['journal_consecutive'] else '**no**'}; "
          f"stale-generation answers: {prop['conflicts']}. "
          "Each replica reads the record every evaluation_interval, so the lag is bounded by that "
          "interval plus a Redis round trip (and the reading of the status, polled every "
          f"{prop['poll_ms']:g} ms).")
for failure in prop["failures"]:
    print(f"- **failure**: {failure}")
print()
if rounds:
    print(f"### Leader failover: {len(rounds)} rounds, SIGKILL of the leader")
    print()
    print("| round | killed (replica\\|term) | lease left at the kill ms | new leader | to `leading: true` ms | to the lease taken (its log) ms | to its first evaluation ms |")
    print("|---:|---|---:|---|---:|---:|---:|")
    for i, r in enumerate(rounds, 1):
        taken = r["to_lease_taken_ms"]
        old = r["old_leader"].replace("|", "\\|")
        new = (r["new_leader"] or "").replace("|", "\\|")
        print(f"| {i} | {old} | {r['lease_left_at_kill_ms']} | {new} | {r['to_leading_observed_ms']:.0f} | "
              f"{'-' if taken is None else f'{taken:.0f}'} | {r['to_first_evaluation_ms']:.0f} |")
    lead = [r["to_leading_observed_ms"] for r in rounds]
    judged = [r["to_first_evaluation_ms"] for r in rounds]
    print(f"| median | | | | {pct(lead, .5):.0f} | | {pct(judged, .5):.0f} |")
    print(f"| max | | | | {max(lead):.0f} | | {max(judged):.0f} |")
    print()
    print("A SIGKILLed leader cannot hand its lease back (one that shuts down does, and another leads "
          "at its next renewal), so the others wait for the lease to expire in Redis: failover takes the "
          "lease's remaining time at the kill (at most `state_store.lease`, here "
          f"{env['F_LEASE']}) plus up to one renewal period of the followers (lease/3, at most 1 s), "
          f"plus one evaluation_interval ({env['F_INTERVAL_MS']}ms) until the first judgement. "
          "The lease is configurable: a shorter one fails over sooner, but it must stay at least 1 s "
          "and above Redis's and the leader's worst stalls, or a live leader loses it.")
PY

echo
cat "$REPORT"
echo
echo "(written to ${REPORT#"$ROOT/"})"
if ((!PROPAGATION_OK)); then
  log "the propagation run failed (see above)"
  exit 1
fi
if [[ "$STRICT" == 1 ]] && ! grep -q 'Target max ≤ 1 s: \*\*met' "$REPORT"; then
  exit 1
fi
