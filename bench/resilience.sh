#!/usr/bin/env bash
# Resilience benchmark: what a failing candidate costs clients when fallback is on.
#
#   bash bench/resilience.sh        (or `make bench-resilience`, which builds first)
#
# Three runs through cutover, each `wrk` for BENCH_DURATION seconds on 64 connections, loopback
# only, bounded, stopping by itself:
#   healthy     the candidate answers everything
#   failing50   the candidate answers 50 % of requests with HTTP 500; its breaker is set so it
#               never trips (failure_rate 1.0): every second request pays a failed attempt and a
#               fallback to the primary
#   breaker     the same candidate with a breaker that trips (minimum 20 calls, 50 %) and stays
#               open for the whole run (5 minutes): the candidate may receive only the calls
#               admitted before the trip (at most 20 plus one per connection already in flight),
#               and no probe, since no half-open period starts within the run
# Targets: failing50 throughput >= 0.7 x healthy; no client-visible error in any run; in
# `breaker`, candidate attempts <= 20 + connections.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${CUTOVER_BIN:-$ROOT/build/cutover}"
DURATION="${BENCH_DURATION:-10}"
CONNECTIONS="${BENCH_CONNECTIONS:-64}"
OUT_DIR="$ROOT/bench/out"
REPORT="$OUT_DIR/resilience.md"
[[ -x "$BIN" ]] || { echo "bench: $BIN not found; build first" >&2; exit 1; }

TMP="$(mktemp -d "${TMPDIR:-/tmp}/cutover-resilience.XXXXXX")"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$TMP"
}
trap cleanup EXIT

port_from_log() {
  for _ in $(seq 100); do
    local port
    port="$(grep -oE 'listening on 127\.0\.0\.1:[0-9]+' "$1" 2>/dev/null | head -1 | cut -d: -f2 || true)"
    [[ -n "$port" ]] && { echo "$port"; return 0; }
    sleep 0.1
  done
  echo "bench: no listening line in $1" >&2
  cat "$1" >&2
  return 1
}

export CUTOVER_CLIENT_KEY=bench-client-key
cat >"$TMP/chat.lua" <<EOF
wrk.method = "POST"
wrk.body = '{"model":"gpt-4","messages":[{"role":"user","content":"hello"}]}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $CUTOVER_CLIENT_KEY"
EOF

"$BIN" simulate provider --port 0 --profile fast 2>"$TMP/primary.log" &
PIDS+=($!)
PRIMARY_PORT="$(port_from_log "$TMP/primary.log")"

# run NAME ERROR_RATE BREAKER_YAML -> prints "rps errors non2xx candidate_attempts_json"
run() {
  local name="$1" error_rate="$2" breaker="$3"
  "$BIN" simulate provider --port 0 --profile fast --error-rate "$error_rate" 2>"$TMP/candidate-$name.log" &
  local candidate=$!
  PIDS+=($candidate)
  local candidate_port
  candidate_port="$(port_from_log "$TMP/candidate-$name.log")"
  cat >"$TMP/$name.yaml" <<EOF
listen: 127.0.0.1:0
access_log: "$TMP/access-$name.log"
auth: {client_keys: [{name: bench, key_env: CUTOVER_CLIENT_KEY}]}
providers:
  primary:
    base_url: http://127.0.0.1:$PRIMARY_PORT/v1
    no_api_key: true
    models: {gpt-4: primary-model}
  candidate:
    base_url: http://127.0.0.1:$candidate_port/v1
    no_api_key: true
    models: {gpt-4: candidate-model}
    retry: {max_attempts: 1}
    breaker: $breaker
routes:
  - models: [gpt-4]
    provider: candidate
    fallback: [primary]
EOF
  "$BIN" serve -c "$TMP/$name.yaml" 2>"$TMP/gateway-$name.log" &
  local gateway=$!
  PIDS+=($gateway)
  local port
  port="$(port_from_log "$TMP/gateway-$name.log")"
  wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$TMP/chat.lua" \
    "http://127.0.0.1:$port/v1/chat/completions" >"$TMP/wrk-$name.txt"
  kill -TERM "$gateway" "$candidate"
  wait "$gateway" "$candidate" 2>/dev/null || true
  python3 - "$TMP/wrk-$name.txt" "$TMP/access-$name.log" <<'PY'
import json, re, sys
wrk = open(sys.argv[1]).read()
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", wrk).group(1))
errors = sum(int(x) for x in re.findall(r"(?:connect|read|write|timeout) (\d+)", wrk))
non2xx = int((re.search(r"Non-2xx or 3xx responses: (\d+)", wrk) or [0, 0])[1])
candidate = []  # (request end time, result) of every candidate attempt, in log order
client_failures = 0
for line in open(sys.argv[2]):
    entry = json.loads(line)
    if entry.get("status") != 200:
        client_failures += 1
    for attempt in entry.get("attempts", []):
        if attempt["provider"] == "candidate":
            candidate.append(attempt["result"])
attempts = len([r for r in candidate if r not in ("circuit_open", "throttled")])
refused = len([r for r in candidate if r == "circuit_open"])
print(f"{rps:.0f} {errors} {non2xx + client_failures} {attempts} {refused}")
PY
}

read -r healthy_rps healthy_err healthy_bad _ _ <<<"$(run healthy 0 '{failure_rate: 1.0, minimum_calls: 100000}')"
read -r failing_rps failing_err failing_bad failing_attempts _ <<<"$(run failing50 0.5 '{failure_rate: 1.0, minimum_calls: 100000}')"
read -r breaker_rps breaker_err breaker_bad breaker_attempts breaker_refused <<<"$(run breaker 0.5 '{failure_rate: 0.5, minimum_calls: 20, window_size: 20, open_duration: 5m, half_open_probes: 3}')"

ratio="$(python3 -c "print(f'{$failing_rps / $healthy_rps:.2f}')")"
# Calls admitted before the trip: at least minimum_calls, at most that plus what was already in
# flight on every connection when it tripped; no half-open period fits in a 5-minute open time.
breaker_limit=$((20 + CONNECTIONS))
mkdir -p "$OUT_DIR"
{
  echo "## cutover resilience benchmark — $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo
  echo "- $(nproc) cores, loopback only; wrk 2 threads, $CONNECTIONS connections, ${DURATION}s per run; simulator profile fast"
  echo
  echo "| run | requests/s | socket errors | client-visible non-200 | candidate attempts | refused by the open breaker |"
  echo "|---|---:|---:|---:|---:|---:|"
  echo "| healthy candidate | $healthy_rps | $healthy_err | $healthy_bad | - | - |"
  echo "| candidate failing 50 %, fallback to primary | $failing_rps | $failing_err | $failing_bad | $failing_attempts | - |"
  echo "| same, breaker trips and stays open | $breaker_rps | $breaker_err | $breaker_bad | $breaker_attempts | $breaker_refused |"
  echo
  echo "| target | measured | verdict |"
  echo "|---|---:|---|"
  verdict() { if [[ "$1" == 1 ]]; then echo "met"; else echo "**missed**"; fi; }
  echo "| throughput with 50 % failing candidate ≥ 0.7 × healthy | ${ratio} × | $(verdict "$(python3 -c "print(int($failing_rps >= 0.7 * $healthy_rps))")") |"
  echo "| no client-visible error | $((healthy_bad + failing_bad + breaker_bad)) non-200, $((healthy_err + failing_err + breaker_err)) socket errors | $(verdict "$((healthy_bad + failing_bad + breaker_bad + healthy_err + failing_err + breaker_err == 0 ? 1 : 0))") |"
  echo "| open breaker: candidate gets only the calls before the trip (≤ 20 + $CONNECTIONS in flight), no probes within the open time | $breaker_attempts | $(verdict "$((breaker_attempts <= breaker_limit ? 1 : 0))") |"
} | tee "$REPORT"
