package ratelimit

import "github.com/redis/go-redis/v9"

// luaLib is GCRA as in go-redis/redis_rate (after Pavel Pravosud's
// redis-gcra), split into a check and a commit. A script can then test
// several buckets and charge all of them or none. Times are seconds since
// 2017-01-01 (to keep microsecond precision in a double), and they come from
// the Redis server's clock, so the instances never disagree.
const luaLib = `
local function clock()
  local t = redis.call("TIME")
  local unix = tonumber(t[1])
  return (unix - 1483228800) + tonumber(t[2]) / 1000000, unix
end

-- gcra tests whether cost fits the bucket at key, without writing. It
-- returns true, the new theoretical arrival time and the remaining budget,
-- or false, nil and the seconds to wait. A cost above the burst is charged
-- the burst.
local function gcra(key, now, cost, burst, rate, period)
  local interval = period / rate
  if cost > burst then cost = burst end
  local tat = tonumber(redis.call("GET", key))
  if tat == nil or tat < now then tat = now end
  local new_tat = tat + interval * cost
  local diff = now - (new_tat - interval * burst)
  if diff < 0 then return false, nil, -diff end
  return true, new_tat, math.floor(diff / interval + 1e-6)
end

local function commit(key, now, new_tat)
  local ms = math.ceil((new_tat - now) * 1000)
  if ms > 0 then redis.call("SET", key, string.format("%.6f", new_tat), "PX", ms) end
end

-- charge charges cost to every bucket keys[i] (limits: burst, rate, period
-- at ARGV[first + 3(i-1)]; rate 0 means off), or to none. It returns
-- allowed, remaining (the smallest; -1 when no bucket applies), the wait in
-- seconds and the index of the bucket that refused.
local function charge(keys, first, now, cost)
  local tats, remaining, wait, refused = {}, -1, 0, 0
  for i, key in ipairs(keys) do
    local a = first + (i - 1) * 3
    local burst, rate, period = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
    if rate > 0 then
      local ok, tat, x = gcra(key, now, cost, burst, rate, period)
      if ok then
        tats[i] = tat
        if remaining < 0 or x < remaining then remaining = x end
      elseif x > wait then
        wait, refused = x, i
      end
    end
  end
  if refused > 0 then return false, 0, wait, refused end
  for i, key in ipairs(keys) do
    if tats[i] then commit(key, now, tats[i]) end
  end
  return true, remaining, 0, 0
end
`

// allowScript charges the query budgets. KEYS are the buckets. ARGV[1] is the
// cost, then 3 limit values per key. It returns {allowed, remaining, wait,
// refused index}.
var allowScript = redis.NewScript(luaLib + `
local now = clock()
local ok, remaining, wait, refused = charge(KEYS, 2, now, tonumber(ARGV[1]))
return {ok and 1 or 0, remaining, string.format("%.6f", wait), refused}
`)

// signInBeforeScript checks whether a sign-in attempt may go ahead. If so,
// it charges the attempt.
//
//	KEYS: 1 pair lock, 2 email lock, 3 known IPs (zset), 4 IP bucket, 5 email bucket
//	ARGV: 1 IP member, 2 known TTL (s), 3-5 IP limit, 6-8 email limit
//
// It returns {allowed, wait (s), reason, known}. The reasons are 1 pair
// locked, 2 email locked, 3 IP budget, 4 email budget.
var signInBeforeScript = redis.NewScript(luaLib + `
local now, unix = clock()
local ttl = redis.call("PTTL", KEYS[1])
if ttl > 0 then return {0, string.format("%.3f", ttl / 1000), 1, 0} end
local known = 0
local seen = tonumber(redis.call("ZSCORE", KEYS[3], ARGV[1]))
if seen ~= nil and seen >= unix - tonumber(ARGV[2]) then known = 1 end
local keys = {KEYS[4]}
if known == 0 then
  ttl = redis.call("PTTL", KEYS[2])
  if ttl > 0 then return {0, string.format("%.3f", ttl / 1000), 2, 0} end
  keys[2] = KEYS[5]
end
local ok, _, wait, refused = charge(keys, 3, now, 1)
if not ok then return {0, string.format("%.6f", wait), 2 + refused, known} end
return {1, "0", 0, known}
`)

// signInFailScript records a failed sign-in.
//
//	KEYS: 1 pair failures, 2 pair lock, 3 known IPs, 4 email failures, 5 email lock, 6 email lock level
//	ARGV: 1 IP member, 2 known TTL (s), 3 pair max, 4 pair window (ms), 5 pair lockout (ms),
//	      6 email max, 7 email window (ms), 8 lockout base (ms), 9 lockout max (ms), 10 level memory (ms)
//
// It returns {pair locked now, email lock (ms) set now, 0 when none}.
var signInFailScript = redis.NewScript(luaLib + `
local _, unix = clock()
local function count(key, window)
  local n = redis.call("INCR", key)
  if n == 1 or redis.call("PTTL", key) < 0 then redis.call("PEXPIRE", key, window) end
  return n
end
local pairLocked, emailLock = 0, 0
if count(KEYS[1], ARGV[4]) >= tonumber(ARGV[3]) then
  redis.call("SET", KEYS[2], "1", "PX", ARGV[5])
  redis.call("DEL", KEYS[1])
  pairLocked = 1
end
local seen = tonumber(redis.call("ZSCORE", KEYS[3], ARGV[1]))
local known = seen ~= nil and seen >= unix - tonumber(ARGV[2])
if not known and count(KEYS[4], ARGV[7]) >= tonumber(ARGV[6]) then
  local level = redis.call("INCR", KEYS[6])
  redis.call("PEXPIRE", KEYS[6], ARGV[10])
  local ms = tonumber(ARGV[8])
  local cap = tonumber(ARGV[9])
  for _ = 2, level do
    ms = ms * 2
    if ms >= cap then break end
  end
  if ms > cap then ms = cap end
  redis.call("SET", KEYS[5], "1", "PX", ms)
  redis.call("DEL", KEYS[4])
  emailLock = ms
end
return {pairLocked, emailLock}
`)

// signInOKScript records a successful sign-in. It clears the pair's failures
// and remembers the IP as known.
//
//	KEYS: 1 pair failures, 2 pair lock, 3 known IPs
//	ARGV: 1 IP member, 2 known TTL (ms), 3 max known IPs
var signInOKScript = redis.NewScript(luaLib + `
local _, unix = clock()
redis.call("DEL", KEYS[1], KEYS[2])
if ARGV[1] ~= "" then
  redis.call("ZADD", KEYS[3], unix, ARGV[1])
  redis.call("ZREMRANGEBYRANK", KEYS[3], 0, -(tonumber(ARGV[3]) + 1))
  redis.call("PEXPIRE", KEYS[3], ARGV[2])
end
return {1}
`)
