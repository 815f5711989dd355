-- wrk script for bench/run.sh: every request is a small, non-streaming chat completion.
--
-- The client key comes from CUTOVER_CLIENT_KEY (the simulator ignores it, nginx passes it on,
-- cutover checks it). done() prints one machine-readable "BENCH ..." line that run.sh parses;
-- latencies there are in microseconds, straight from wrk's histogram.

wrk.method = "POST"
wrk.body = '{"model":"gpt-4","messages":[{"role":"user","content":"hello"}]}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. (os.getenv("CUTOVER_CLIENT_KEY") or "bench")

-- BENCH_PACE_MS > 0 makes every connection wait that long between requests: a load well below
-- saturation, where latency is the proxy's own and not queueing for the 2 shared cores.
local pace_ms = tonumber(os.getenv("BENCH_PACE_MS") or "0")
if pace_ms > 0 then
  function delay()
    return pace_ms
  end
end

-- The BENCH line without its newline; a script that loads this one may add fields through
-- extra_fields() (a string starting with a space).
function bench_line(summary, latency)
  local e = summary.errors
  local seconds = summary.duration / 1e6
  return string.format(
    "BENCH requests=%d duration_us=%d rps=%.1f mean_us=%.1f p50_us=%d p90_us=%d p99_us=%d " ..
    "max_us=%d connect_errors=%d read_errors=%d write_errors=%d timeouts=%d non2xx=%d",
    summary.requests, summary.duration, summary.requests / seconds, latency.mean,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    e.connect, e.read, e.write, e.timeout, e.status)
end

function done(summary, latency, requests)
  io.write(bench_line(summary, latency) .. (extra_fields and extra_fields() or "") .. "\n")
end
