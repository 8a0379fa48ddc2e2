-- The GCRA bucket of `RateLimiter` on a hash at KEYS[1]: TAT = tat + rem / D time units, one
-- token costs P / D; `seq` numbers the reservations (the latest can be undone), `clk` the
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

-- Undoes reservation `seq` of k tokens if it is still the latest; 1 if it did.
local function gcra_undo(k, seq, now)
  if k <= 0 or tonumber(redis.call('HGET', B, 'seq')) ~= seq then return 0 end
  local lead = gcra_lead(now) - k * P
  if lead < 0 then lead = 0 end
  gcra_store(now, lead)
  -- the one before it is not the latest either: nothing older can be undone
  redis.call('HINCRBY', B, 'seq', 1)
  return 1
end
