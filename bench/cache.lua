-- wrk script for bench/cache.sh: bench/chat.lua's BENCH line, with a small, deterministic chat
-- completion (temperature 0, a `seed`) whose body comes from the environment:
--
--   BENCH_BODY_PREFIX  the JSON body up to the seed's value ('{"model":"…",…,"seed":')
--   BENCH_BODY_SUFFIX  what follows the seed ('}')
--   BENCH_SEED         "same": every request carries BENCH_SEED_BASE (one body, so cache hits);
--                      "distinct": every request its own seed, BENCH_SEED_BASE + 1 + thread
--                      index + BENCH_WRK_THREADS × a per-thread counter (each request a different
--                      cache key)
--   BENCH_SEED_BASE    a number; cache.sh gives each wrk run its own range of 20,000,000 seeds, so
--                      no run (nor its warm-up) repeats a seed that an earlier one sent
--   BENCH_WRK_THREADS  wrk's -t
--   CUTOVER_CLIENT_KEY the client key
--
-- Seeds keep the same number of digits in every run, so the bodies of all runs are the same size.
-- No response() hook: wrk shares CPU 1 with nginx, so it parses nothing it need not; cache.sh
-- checks the x-cutover-cache header with curl and counts nginx's requests instead.

dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "chat.lua")

local prefix = assert(os.getenv("BENCH_BODY_PREFIX"), "BENCH_BODY_PREFIX is not set")
local suffix = os.getenv("BENCH_BODY_SUFFIX") or "}"
local base = assert(tonumber(os.getenv("BENCH_SEED_BASE") or ""), "BENCH_SEED_BASE is not a number")
local mode = os.getenv("BENCH_SEED") or "same"

wrk.body = prefix .. string.format("%d", base) .. suffix

local threads = 0
function setup(thread)
  thread:set("thread_index", threads)
  threads = threads + 1
end

if mode == "distinct" then
  local stride = tonumber(os.getenv("BENCH_WRK_THREADS") or "1")
  local counter = 0
  function request()
    local seed = base + 1 + (thread_index or 0) + stride * counter
    counter = counter + 1
    return wrk.format(nil, nil, nil, prefix .. string.format("%d", seed) .. suffix)
  end
elseif mode ~= "same" then
  error("BENCH_SEED must be 'same' or 'distinct', not '" .. mode .. "'")
end
