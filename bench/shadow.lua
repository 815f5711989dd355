-- wrk script for bench/shadow.sh: bench/chat.lua's request, plus a check that every response
-- names the primary in x-cutover-provider (with 100 % shadow, clients must only ever see the
-- primary; the candidate's answers are compared, never served).
--
-- done() prints one "BENCH ..." line; latencies in microseconds, straight from wrk's histogram.
-- BENCH_PACE_MS > 0 makes every connection wait that long between requests (wrk's delay()).

wrk.method = "POST"
wrk.body = '{"model":"gpt-4","messages":[{"role":"user","content":"hello"}]}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. (os.getenv("CUTOVER_CLIENT_KEY") or "bench")

local pace_ms = tonumber(os.getenv("BENCH_PACE_MS") or "0")
if pace_ms > 0 then
  function delay()
    return pace_ms
  end
end

local threads = {}
function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  checked = 0
  not_primary = 0
end

function response(status, headers, body)
  checked = checked + 1
  if headers["x-cutover-provider"] ~= "primary" then
    not_primary = not_primary + 1
  end
end

function done(summary, latency, requests)
  local checked_total, not_primary_total = 0, 0
  for _, thread in ipairs(threads) do
    checked_total = checked_total + thread:get("checked")
    not_primary_total = not_primary_total + thread:get("not_primary")
  end
  local e = summary.errors
  local seconds = summary.duration / 1e6
  io.write(string.format(
    "BENCH requests=%d duration_us=%d rps=%.1f mean_us=%.1f p50_us=%d p90_us=%d p99_us=%d " ..
    "max_us=%d connect_errors=%d read_errors=%d write_errors=%d timeouts=%d non2xx=%d " ..
    "checked=%d not_primary=%d\n",
    summary.requests, summary.duration, summary.requests / seconds, latency.mean,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    e.connect, e.read, e.write, e.timeout, e.status, checked_total, not_primary_total))
end
