-- wrk script for POST /v1/batch: cycles through pre-generated {"batch":[...]}
-- bodies (one a line in $CDP_BENCH_BODIES, from build/cdp-eventgen --batch N)
-- and makes every messageId unique per request by prefixing it with
-- "<tag>-<thread>-<request>-" ($CDP_BENCH_TAG), so nothing is a duplicate.
-- Write key: $CDP_BENCH_WRITE_KEY (default wk), as the HTTP Basic user.
-- Counts answers by status (and 503s without Retry-After) and prints them at
-- the end as "status NNN: count" lines.
local path = os.getenv("CDP_BENCH_BODIES") or error("CDP_BENCH_BODIES is not set")
local tag = os.getenv("CDP_BENCH_TAG") or tostring(os.time())
local key = os.getenv("CDP_BENCH_WRITE_KEY") or "wk"

-- base64 of "key:" for the Authorization header
local function base64(s)
  local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
  return ((s:gsub(".", function(c)
    local bits, b = "", c:byte()
    for i = 8, 1, -1 do bits = bits .. (b % 2 ^ i - b % 2 ^ (i - 1) > 0 and "1" or "0") end
    return bits
  end) .. "0000"):gsub("%d%d%d?%d?%d?%d?", function(x)
    if #x < 6 then return "" end
    local c = 0
    for i = 1, 6 do c = c + (x:sub(i, i) == "1" and 2 ^ (6 - i) or 0) end
    return alphabet:sub(c + 1, c + 1)
  end) .. ({ "", "==", "=" })[#s % 3 + 1])
end

wrk.method = "POST"
wrk.path = "/v1/batch"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Basic " .. base64(key .. ":")

-- Each body split at its messageIds: the request is table.concat(parts, marker
-- .. prefix), a copy of the body and nothing more per request.
local marker = '"messageId":"'
local bodies = {}
for line in io.lines(path) do
  local parts, from = {}, 1
  while true do
    local at = line:find(marker, from, true)
    if not at then break end
    parts[#parts + 1] = line:sub(from, at - 1)
    from = at + #marker
  end
  parts[#parts + 1] = line:sub(from)
  bodies[#bodies + 1] = parts
end
if #bodies == 0 then error("no bodies in " .. path) end

local threads, next_id = {}, 0
function setup(thread)
  thread:set("tid", next_id)
  next_id = next_id + 1
  threads[#threads + 1] = thread
end

counter = 0
statuses = {}
no_retry_after = 0

function request()
  counter = counter + 1
  local parts = bodies[(counter - 1) % #bodies + 1]
  local body = table.concat(parts, marker .. tag .. "-" .. (tid or 0) .. "-" .. counter .. "-")
  return wrk.format(nil, nil, nil, body)
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  if status == 503 and not headers["Retry-After"] then no_retry_after = no_retry_after + 1 end
end

function done(summary, latency, requests)
  local total, missing = {}, 0
  for _, t in ipairs(threads) do
    for status, n in pairs(t:get("statuses")) do total[status] = (total[status] or 0) + n end
    missing = missing + t:get("no_retry_after")
  end
  local keys = {}
  for status in pairs(total) do keys[#keys + 1] = status end
  table.sort(keys)
  for _, status in ipairs(keys) do io.write(string.format("status %d: %d\n", status, total[status])) end
  io.write(string.format("503 without Retry-After: %d\n", missing))
end
