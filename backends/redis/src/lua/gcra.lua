-- The GCRA bucket of `RateLimiter` on a hash at KEYS[1]: TAT = tat + rem / D time units, one
-- token costs P / D; `last` the request id of the latest reservation (it can be undone), `clk` the
-- latest time seen, `fp` the config fingerprint.
-- ARGV: fingerprint, P, D, burst, then the operation's arguments; the test clock last.
local B = KEYS[1]
local P, D, BURST = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])

-- TAT - now in 1/D units, never below 0 (a full bucket).
local function gcra_lead(now)
  local v = redis.call('HMGET', B, 'tat', 'rem')
  local tat, rem = tonumber(v[1]), tonumber(v[2])
  if not tat then return 0 end
  local lead = (tat - now) * D + rem
  if lead < 0 then lead = 0 end
  return lead
end

local function gcra_store(now, lead)
  local q, r = tg_divmod(lead, D)
  redis.call('HSET', B, 'tat', now + q, 'rem', r, 'clk', now, 'fp', ARGV[1])
  -- until the bucket is full again, rounded up, plus a second
  redis.call('PEXPIRE', B, tg_ceil_div(q + 1, 1000) + 1000)
end

-- Undoes the reservation of k tokens made under request id `id` if it is still the latest
-- (ids are unique, so a later reservation can never be mistaken for it); 1 if it did.
local function gcra_undo(k, id, now)
  if k <= 0 or redis.call('HGET', B, 'last') ~= id then return 0 end
  local lead = gcra_lead(now) - k * P
  if lead < 0 then lead = 0 end
  gcra_store(now, lead)
  -- the one before it is not the latest either: nothing older can be undone
  redis.call('HDEL', B, 'last')
  return 1
end
