-- wrk script for bench/shadow.sh: bench/chat.lua's request, pacing and BENCH line, plus a check
-- that every response names the primary in x-cutover-provider (with 100 % shadow, clients must
-- only ever see the primary; the candidate's answers are compared, never served).

dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "chat.lua")

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

function extra_fields()
  local checked_total, not_primary_total = 0, 0
  for _, thread in ipairs(threads) do
    checked_total = checked_total + thread:get("checked")
    not_primary_total = not_primary_total + thread:get("not_primary")
  end
  return string.format(" checked=%d not_primary=%d", checked_total, not_primary_total)
end
