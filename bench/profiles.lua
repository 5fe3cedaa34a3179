-- wrk script for bench/profiles.sh: GET /v1/profiles/<type>:<value> of a random
-- profile per request, the identifier type drawn at random too (user_id or
-- email), keep-alive. Environment: CDP_BENCH_PROFILES (profiles 1..N exist),
-- CDP_BENCH_TOKEN (sent as "Authorization: Bearer <token>").
-- The identifiers are those bench/profiles.sh generates for profile i:
--   user_id  u<i>
--   email    user<i>@<domain i % 5>   (URL-encoded: @ is %40)
local n = tonumber(os.getenv("CDP_BENCH_PROFILES") or "")
local token = os.getenv("CDP_BENCH_TOKEN")
assert(n and n > 0, "CDP_BENCH_PROFILES is not set")
assert(token and token ~= "", "CDP_BENCH_TOKEN is not set")
local domains = { "example.com", "mail.test", "corp.example", "shop.test", "web.example" }
local headers = { ["Authorization"] = "Bearer " .. token }

function setup(thread)
  thread:set("seed", math.random(1, 2 ^ 30))
end

function init(args)
  math.randomseed(tonumber(seed) or os.time())
end

function request()
  local i = math.random(1, n)
  local path
  if math.random(2) == 1 then
    path = "/v1/profiles/user_id:u" .. i
  else
    path = "/v1/profiles/email:user" .. i .. "%40" .. domains[i % 5 + 1]
  end
  return wrk.format("GET", path, headers)
end
