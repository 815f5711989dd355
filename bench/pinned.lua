-- wrk script for bench/pinned.sh: bench/dialects.lua's request (BENCH_BODY, BENCH_KEY_HEADER,
-- CUTOVER_CLIENT_KEY) and its BENCH line, plus an Accept header from BENCH_ACCEPT when set.
--
-- pinned.sh sends "Accept: text/event-stream" with every streamed request, to the upstream
-- directly, to nginx and haproxy and to cutover alike: the fixed upstream picks its SSE answer by
-- that header (cutover sets it upstream for streamed requests by itself), so every target gets
-- the very same request.

dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "dialects.lua")

local accept = os.getenv("BENCH_ACCEPT")
if accept and accept ~= "" then
  wrk.headers["Accept"] = accept
end
