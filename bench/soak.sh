#!/usr/bin/env bash
# Soak: DURATION seconds (default 600) of mixed client traffic through one cutover process while
# its configuration is reloaded and a migration candidate misbehaves, recording once a minute
# what clients saw and what the gateway holds.
#
#   bash bench/soak.sh               (DURATION=60 bash bench/soak.sh for a short check)
#
# Setup, loopback only:
#   primary    `cutover simulate provider --profile healthy`: the route's provider for gpt-4o
#   backup     the same, the route's fallback should the primary fail
#   candidate  tests/node/support/fault_provider.mjs, standalone: a migration primary -> candidate
#              with 20 % shadow sampling and three short stages; every 15-25 s (seeded, SEED) its
#              scenario changes at random among faults that strike before the first byte (429s,
#              quota, 5xx, resets, slow first byte, flapping) or healthy, so the candidate's failures
#              fall back to the primary and no client should ever see an error
#   clients    `cutover simulate traffic`, one run per minute (RATE req/s, a third streamed, 50 users)
# Every 30 s the script rewrites the configuration and sends SIGHUP; a migration that a gate
# rolled back (or paused) is resumed with `cutover ctl resume`, a promoted one restarted by a
# change of its stage ladder, so the stages keep walking. Every loop is bounded by DURATION.
#
# Per minute: client requests, client errors, gateway VmRSS and open descriptors, the
# migration's phase, the candidate's scenario changes and reloads. The table is printed and
# appended to bench/RESULTS.md under "## Soak" (SOAK_RESULTS names another file). Exits 1 when a
# client saw an error or the gateway died.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${CUTOVER_BINARY:-$ROOT/build/cutover}"
[[ $BIN == /* ]] || BIN="$PWD/$BIN"
DURATION="${DURATION:-600}"
RATE="${RATE:-20}"
SEED="${SEED:-11}"
RESULTS="${SOAK_RESULTS:-$ROOT/bench/RESULTS.md}"
FAULT_PROVIDER="$ROOT/tests/node/support/fault_provider.mjs"
[[ -x "$BIN" ]] || { echo "soak: $BIN not found; build first" >&2; exit 1; }
command -v node >/dev/null || { echo "soak: node is needed for the fault provider" >&2; exit 1; }
((DURATION >= 10)) || { echo "soak: DURATION must be at least 10 (seconds)" >&2; exit 2; }

TMP="$(mktemp -d "${TMPDIR:-/tmp}/cutover-soak.XXXXXX")"
PIDS=()
cleanup() {
  local i
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do kill -TERM "${PIDS[i]}" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_from_log() {
  local port
  for _ in $(seq 200); do
    port="$(grep -oE "$2 127\.0\.0\.1:[0-9]+" "$1" 2>/dev/null | head -1 | grep -oE '[0-9]+$' || true)"
    [[ -n "$port" ]] && { echo "$port"; return 0; }
    sleep 0.05
  done
  echo "soak: no '$2' line in $1" >&2
  cat "$1" >&2
  return 1
}

export CUTOVER_SOAK_CLIENT_KEY="soak-client-$RANDOM$RANDOM"
export CUTOVER_SOAK_ADMIN_TOKEN="soak-admin-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"

"$BIN" simulate provider --port 0 --profile healthy 2>"$TMP/primary.log" &
PIDS+=($!)
PRIMARY_PORT="$(port_from_log "$TMP/primary.log" 'listening on')"
"$BIN" simulate provider --port 0 --profile healthy 2>"$TMP/backup.log" &
PIDS+=($!)
BACKUP_PORT="$(port_from_log "$TMP/backup.log" 'listening on')"
node "$FAULT_PROVIDER" --port 0 --scenario healthy --seed "$SEED" 2>"$TMP/candidate.log" &
PIDS+=($!)
CANDIDATE_PORT="$(port_from_log "$TMP/candidate.log" 'listening on')"

# write_config VARIANT: the stage ladder differs between variants 0 and 1 (a change that restarts
# the migration); everything else stays.
write_config() {
  local min_requests=$((40 + $1))
  cat >"$TMP/cutover.yaml.new" <<EOF
listen: 127.0.0.1:${GATEWAY_PORT:-0}
workers: 2
access_log: "off"
state_store: ":memory:"
drain_timeout: 5s
auth: {client_keys: [{name: soak, key_env: CUTOVER_SOAK_CLIENT_KEY}]}
admin: {listen: "127.0.0.1:${ADMIN_PORT:-0}", token_env: CUTOVER_SOAK_ADMIN_TOKEN}
providers:
  primary:
    base_url: http://127.0.0.1:$PRIMARY_PORT/v1
    no_api_key: true
    models: {gpt-4o: primary-gpt-4o}
    timeouts: {connect: 1s, first_byte: 5s, idle: 5s, total: 30s}
  backup:
    base_url: http://127.0.0.1:$BACKUP_PORT/v1
    no_api_key: true
    models: {gpt-4o: backup-gpt-4o}
    timeouts: {connect: 1s, first_byte: 5s, idle: 5s, total: 30s}
  candidate:
    base_url: http://127.0.0.1:$CANDIDATE_PORT/v1
    no_api_key: true
    models: {gpt-4o: candidate-gpt-4o}
    timeouts: {connect: 1s, first_byte: 1s, idle: 2s, total: 20s}
routes:
  - models: [gpt-4o]
    provider: primary
    fallback: [backup]
migrations:
  - name: soak
    models: [gpt-4o]
    primary: primary
    candidate: candidate
    sticky_key: header:x-user-id
    shadow: {sample_rate: 20%, min_duration: 5s, min_pairs: 20}
    stages:
      - {weight: 10%, min_duration: 8s, min_requests: $min_requests}
      - {weight: 50%, min_duration: 8s, min_requests: $min_requests}
      - {weight: 100%, min_duration: 8s, min_requests: $min_requests}
    gates: {max_error_rate: 5%, max_attempt_error_rate: 5%, confidence: 0.9, min_latency_samples: 30,
            inconclusive_dwells_before_pause: 20}
EOF
  mv "$TMP/cutover.yaml.new" "$TMP/cutover.yaml"
}

variant=0
write_config "$variant"
"$BIN" serve -c "$TMP/cutover.yaml" --check-config >/dev/null
"$BIN" serve -c "$TMP/cutover.yaml" >"$TMP/gateway.out" 2>"$TMP/gateway.log" &
GATEWAY_PID=$!
PIDS+=("$GATEWAY_PID")
GATEWAY_PORT="$(port_from_log "$TMP/gateway.log" 'listening on')"
ADMIN_PORT="$(port_from_log "$TMP/gateway.log" 'admin API on')"
write_config "$variant" # the same file with the ports it got, so reloads keep them
ADMIN_URL="http://127.0.0.1:$ADMIN_PORT"
ctl() { "$BIN" ctl --admin-url "$ADMIN_URL" --token-env CUTOVER_SOAK_ADMIN_TOKEN "$@"; }
phase() {
  curl -sf --max-time 5 -H "Authorization: Bearer $CUTOVER_SOAK_ADMIN_TOKEN" "$ADMIN_URL/admin/v1/migrations/soak" |
    python3 -c 'import json, sys; m = json.load(sys.stdin); print(m["phase"], round(m["weight"] * 100))' 2>/dev/null || echo "? ?"
}
echo "soak: ${DURATION}s; gateway pid $GATEWAY_PID on 127.0.0.1:$GATEWAY_PORT (admin $ADMIN_PORT); candidate (fault provider) on $CANDIDATE_PORT"

FAULTS=(healthy rate_limit_50_retry_after rate_limit_90_no_header quota_exhausted error_500_30 error_503_100
  reset_before_first_byte_30 slow_first_byte flapping)
RANDOM=$SEED
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$GATEWAY_PID/status" 2>/dev/null || echo 0; }
fds() { ls "/proc/$GATEWAY_PID/fd" 2>/dev/null | wc -l; }

started=$SECONDS
next_reload=30
next_fault=$((15 + RANDOM % 11))
reloads=0
reload_refusals=0
rows=()
total_requests=0
total_errors=0
died=0
minute=0
echo "| minute | requests | client errors | gateway VmRSS (MiB) | open fds | migration | candidate scenarios | reloads |" >"$TMP/table"
echo "|---:|---:|---:|---:|---:|---|---|---:|" >>"$TMP/table"
cat "$TMP/table"
while ((SECONDS - started < DURATION)); do
  minute=$((minute + 1))
  segment=$((DURATION - (SECONDS - started)))
  ((segment > 60)) && segment=60
  "$BIN" simulate traffic --url "http://127.0.0.1:$GATEWAY_PORT" --key-env CUTOVER_SOAK_CLIENT_KEY --model gpt-4o \
    --users 50 --concurrency 4 --rate "$RATE" --stream-share 0.33 --seed "$((SEED + minute))" --quiet \
    --duration "${segment}s" >"$TMP/traffic-$minute.json" 2>"$TMP/traffic-$minute.log" &
  traffic=$!
  PIDS+=("$traffic")
  scenarios_seen=()
  segment_end=$((SECONDS + segment + 30)) # the traffic run ends by itself; this bounds the wait
  while kill -0 "$traffic" 2>/dev/null && ((SECONDS < segment_end)); do
    sleep 1
    elapsed=$((SECONDS - started))
    if ! kill -0 "$GATEWAY_PID" 2>/dev/null; then
      died=1
      break
    fi
    if ((elapsed >= next_fault)); then
      scenario="${FAULTS[RANDOM % ${#FAULTS[@]}]}"
      curl -sf --max-time 5 -X POST "http://127.0.0.1:$CANDIDATE_PORT/_fault/scenario?name=$scenario" >/dev/null ||
        echo "soak: could not switch the candidate to $scenario" >&2
      scenarios_seen+=("$scenario")
      next_fault=$((elapsed + 15 + RANDOM % 11))
    fi
    if ((elapsed >= next_reload)); then
      read -r current _ <<<"$(phase)"
      case $current in
        rolled_back | aborted | paused) ctl resume soak "soak: resumed after $current" >/dev/null 2>&1 || true ;;
        promoted)
          variant=$((1 - variant))
          ;;
      esac
      write_config "$variant"
      before=$(grep -c 'configuration reloaded' "$TMP/gateway.log" || true)
      refused_before=$(grep -c 'reload refused' "$TMP/gateway.log" || true)
      kill -HUP "$GATEWAY_PID"
      for _ in $(seq 50); do
        (($(grep -c 'configuration reloaded' "$TMP/gateway.log" || true) > before)) && break
        (($(grep -c 'reload refused' "$TMP/gateway.log" || true) > refused_before)) && break
        sleep 0.1
      done
      if (($(grep -c 'reload refused' "$TMP/gateway.log" || true) > refused_before)); then
        reload_refusals=$((reload_refusals + 1))
      fi
      reloads=$((reloads + 1))
      next_reload=$((elapsed + 30))
    fi
  done
  if ((died)); then
    kill -TERM "$traffic" 2>/dev/null || true
  fi
  wait "$traffic" 2>/dev/null || true
  read -r requests errors kinds < <(python3 - "$TMP/traffic-$minute.json" <<'PY'
import json, sys
try:
    s = json.load(open(sys.argv[1]))
    kinds = ",".join(f"{k}:{v}" for k, v in sorted(s["errors_by_kind"].items())) or "-"
    print(s["requests"], s["errors"], kinds)
except Exception:
    print(0, 0, "no-summary")
PY
)
  total_requests=$((total_requests + requests))
  total_errors=$((total_errors + errors))
  if ((died)); then
    rss="-"
    open_fds="-"
    migration="gateway died"
  else
    rss="$(awk -v kb="$(rss_kb)" 'BEGIN { printf "%.1f", kb / 1024 }')"
    open_fds="$(fds)"
    read -r current weight <<<"$(phase)"
    migration="$current $weight%"
  fi
  scenario_text="${scenarios_seen[*]:-(unchanged)}"
  error_text="$errors"
  [[ $kinds != "-" ]] && error_text="$errors ($kinds)"
  row="| $minute | $requests | $error_text | $rss | $open_fds | $migration | ${scenario_text// /, } | $reloads |"
  echo "$row" | tee -a "$TMP/table"
  ((died)) && break
done

history="$(ctl history soak 2>/dev/null | tail -n 12 || true)"
verdict="no client error, gateway alive"
status=0
if ((died)); then
  verdict="**the gateway died** (exit status: $(wait "$GATEWAY_PID" 2>/dev/null; echo $?)); stderr tail: $(tail -n 3 "$TMP/gateway.log" | tr '\n' ' ')"
  status=1
elif ((total_errors > 0)); then
  verdict="**$total_errors client-visible errors**"
  status=1
fi
summary="$total_requests requests, $total_errors client errors, $reloads reloads ($reload_refusals refused)"
echo
echo "soak: $summary; $verdict"
echo "$history"

{
  grep -q '^## Soak' "$RESULTS" 2>/dev/null || printf '\n## Soak\n\n`bash bench/soak.sh` (DURATION seconds, default 600): mixed traffic (a third streamed) through one gateway with a\nmigration (20 %% shadow, three stages) to a candidate whose faults change at random every 15-25 s, a healthy\nfallback, and a SIGHUP reload every 30 s. Per minute: client requests and errors (from `cutover simulate\ntraffic`), the gateway'"'"'s VmRSS and open descriptors, the migration'"'"'s phase at the end of the minute.\n'
  echo
  echo "### Run of $(date -u +%Y-%m-%dT%H:%M:%SZ), ${DURATION}s at $RATE req/s, seed $SEED ($(nproc) cores)"
  echo
  cat "$TMP/table"
  echo
  echo "$summary; $verdict."
} >>"$RESULTS"
echo "soak: table appended to $RESULTS"
exit "$status"
