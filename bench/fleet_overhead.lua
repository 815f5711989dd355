-- wrk script for bench/fleet_overhead.sh: bench/chat.lua's BENCH line, with a small non-streaming
-- chat completion for the migrated model and an X-User-Id header (the migration's sticky key)
-- cycling through BENCH_USERS users, so that the sticky assignment splits the requests between
-- the primary and the candidate at the stage's weight.
--
--   BENCH_MODEL        the model the migration covers (default gpt-4o)
--   BENCH_USERS        how many distinct users (default 1000)
--   CUTOVER_CLIENT_KEY the client key (read by chat.lua)
--
-- The requests are formatted once in init(); request() only hands the next one out, so wrk
-- (which shares CPU 1 with nginx and Redis) does no more work per request than with chat.lua.

dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "chat.lua")

local model = os.getenv("BENCH_MODEL") or "gpt-4o"
local users = tonumber(os.getenv("BENCH_USERS") or "1000")
wrk.body = '{"model":"' .. model .. '","messages":[{"role":"user","content":"Say hello."}]}'

local requests = {}
local next_index = 0

function init(args)
  for i = 1, users do
    local headers = {}
    for name, value in pairs(wrk.headers) do headers[name] = value end
    -- The same width for every user, so every request has the same size.
    headers["X-User-Id"] = string.format("user-%06d", i)
    requests[i] = wrk.format(nil, nil, headers, nil)
  end
end

function request()
  next_index = next_index % users + 1
  return requests[next_index]
end
