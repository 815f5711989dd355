-- wrk script for bench/dialects.sh: bench/chat.lua's BENCH line, with the request of one
-- client/provider path taken from the environment (dialects.sh sets these per run):
--
--   BENCH_BODY        the JSON body (its "model" picks the path's route; "stream" the mode)
--   BENCH_KEY_HEADER  "x-api-key" (Anthropic Messages clients, with anthropic-version) or
--                     "bearer" (Authorization: Bearer, the OpenAI protocols)
--   CUTOVER_CLIENT_KEY  the client key
--
-- The URL's path (/v1/chat/completions, /v1/messages, /v1/responses) comes from wrk's command line.
-- No response() hook: wrk shares CPU 1 with the simulators, so it parses nothing it need not;
-- dialects.sh checks each path's status, format and provider before loading it.

dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "chat.lua")

wrk.body = assert(os.getenv("BENCH_BODY"), "BENCH_BODY is not set")
local key = os.getenv("CUTOVER_CLIENT_KEY") or "bench"
if os.getenv("BENCH_KEY_HEADER") == "x-api-key" then
  wrk.headers["Authorization"] = nil
  wrk.headers["x-api-key"] = key
  wrk.headers["anthropic-version"] = "2023-06-01"
end
