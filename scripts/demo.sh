#!/usr/bin/env bash
# `make demo`: the gateway in front of two simulated providers on loopback, no keys or internet.
# The candidate is a flaky relay with schema quirks; the primary is its fallback. Plain and
# streaming traffic runs through the gateway; the summary shows that every client request was
# answered although the candidate failed a share of them.
set -euo pipefail
cd "$(dirname "$0")/.."

binary=${CUTOVER_BINARY:-build/cutover}
requests=${DEMO_REQUESTS:-200}
workdir=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$workdir"
}
trap cleanup EXIT

export CUTOVER_DEMO_CLIENT_KEY=demo-client-key
export CUTOVER_DEMO_PRIMARY_KEY=demo-primary-key
export CUTOVER_DEMO_CANDIDATE_KEY=demo-candidate-key

wait_for_port() {
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  echo "demo: nothing is listening on port $1" >&2
  return 1
}

echo "== starting simulated providers: primary (healthy) and candidate (flaky relay)"
"$binary" simulate provider --port 19101 --profile healthy --api-key-env CUTOVER_DEMO_PRIMARY_KEY 2>"$workdir/primary.log" &
pids+=($!)
"$binary" simulate provider --port 19102 --profile relay --error-rate 0.2 --api-key-env CUTOVER_DEMO_CANDIDATE_KEY 2>"$workdir/candidate.log" &
pids+=($!)
wait_for_port 19101
wait_for_port 19102

echo "== validating examples/demo.yaml"
"$binary" serve --config examples/demo.yaml --check-config
echo "== starting the gateway on 127.0.0.1:8080"
"$binary" serve --config examples/demo.yaml >"$workdir/access.log" 2>"$workdir/gateway.log" &
gateway=$!
pids+=($gateway)
wait_for_port 8080

echo "== sending $requests requests (every fourth one streams)"
failures=0
for i in $(seq 1 "$requests"); do
  stream=false
  if ((i % 4 == 0)); then stream=true; fi
  status=$(curl -s -o "$workdir/body" -w '%{http_code}' http://127.0.0.1:8080/v1/chat/completions \
    -H "Authorization: Bearer $CUTOVER_DEMO_CLIENT_KEY" -H 'Content-Type: application/json' \
    -d "{\"model\":\"gpt-4o\",\"stream\":$stream,\"messages\":[{\"role\":\"user\",\"content\":\"demo request $i\"}]}")
  if [[ $status != 200 ]]; then failures=$((failures + 1)); fi
  if ((i % 50 == 0)); then echo "   $i/$requests sent, client-visible failures so far: $failures"; fi
done

echo "== one streamed answer, as the client sees it"
curl -sN http://127.0.0.1:8080/v1/chat/completions -H "Authorization: Bearer $CUTOVER_DEMO_CLIENT_KEY" \
  -H 'Content-Type: application/json' \
  -d '{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"show me a stream"}]}' \
  | head -n 6 || true

kill -TERM "$gateway"
wait "$gateway" || true

echo
echo "== summary (from the gateway's access log)"
python3 - "$workdir/access.log" "$requests" "$failures" <<'PY'
import json, sys, collections
lines = [json.loads(line) for line in open(sys.argv[1]) if line.startswith("{")]
chat = [l for l in lines if l.get("route") == "/v1/chat/completions"]
served = collections.Counter()
attempts = collections.Counter()
for l in chat:
    attempts_made = l.get("attempts", [])
    for a in attempts_made:
        attempts[(a["provider"], a["result"])] += 1
    if l["status"] == 200 and attempts_made:
        served[attempts_made[-1]["provider"]] += 1
latencies = sorted(l["latency_ms"] for l in chat)
p = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else 0
print(f"client requests: {len(chat)}   client-visible failures: {sys.argv[3]}")
print(f"served by: " + ", ".join(f"{k} {v}" for k, v in served.most_common()))
print("upstream attempts (provider, result): " + ", ".join(f"{k[0]}/{k[1]} {v}" for k, v in sorted(attempts.items())))
print(f"latency ms: p50 {p(0.5):.1f}  p95 {p(0.95):.1f}  p99 {p(0.99):.1f}")
tokens = sum(l.get("completion_tokens", 0) for l in chat)
print(f"completion tokens accounted: {tokens}")
PY
if ((failures > 0)); then
  echo "demo: $failures client-visible failures" >&2
  exit 1
fi
