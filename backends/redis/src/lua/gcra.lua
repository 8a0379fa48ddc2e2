-- The GCRA bucket of `RateLimiter` on a hash at KEYS[1]: TAT = tat + rem / D time units, one
-- token costs P / D; `last` the id of the latest call that reserved (it can be undone), `clk` the
-- latest time seen, `fp` the config fingerprint.
-- ARGV: fingerprint, P, D, burst, then the operation's arguments; the test clock last.
-- Each call reads the bucket once (one HMGET) and writes it once (`gcra_flush`): every
-- `redis.call` costs about a microsecond of the server's single thread, more than the
-- arithmetic, so the state is worked on in Lua between the two.
-- The call's context, set by `gcra_setup` at the start of every call: the key, the rate, and
-- G, the bucket as read (`dirty` once the call changed its TAT).
local B, P, D, BURST, G

local function gcra_setup()
  B = KEYS[1]
  P, D, BURST = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
  local v = redis.call('HMGET', B, 'fp', 'clk', 'tat', 'rem', 'last')
  G = { fp = v[1], tat = tonumber(v[3]), rem = tonumber(v[4]), last = v[5], dirty = false }
  -- the clock, clamped so it never steps back
  G.now = tg_time()
  local last = tonumber(v[2])
  if last and G.now < last then G.now = last end
end

-- The stored fingerprint is this config's (or none is stored yet).
local function gcra_same_config()
  return (not G.fp) or G.fp == ARGV[1]
end

-- TAT - now in 1/D units, never below 0 (a full bucket).
local function gcra_lead(now)
  if not G.tat then return 0 end
  local lead = (G.tat - now) * D + G.rem
  if lead < 0 then lead = 0 end
  return lead
end

local function gcra_store(now, lead)
  local q, r = tg_divmod(lead, D)
  G.tat, G.rem, G.dirty = now + q, r, true
end

-- Writes what the call changed, in one HSET (and the expiry with it).
local function gcra_flush(now)
  if not G.dirty then
    redis.call('HSET', B, 'clk', tg_s(now))
    return
  end
  if G.last then
    redis.call('HSET', B, 'tat', tg_s(G.tat), 'rem', tg_s(G.rem), 'clk', tg_s(now), 'fp', ARGV[1], 'last', G.last)
  else
    redis.call('HSET', B, 'tat', tg_s(G.tat), 'rem', tg_s(G.rem), 'clk', tg_s(now), 'fp', ARGV[1])
    redis.call('HDEL', B, 'last')
  end
  -- until the bucket is full again, rounded up, plus a second
  local q = tg_div(gcra_lead(now), D)
  redis.call('PEXPIRE', B, tg_s(tg_ceil_div(q + 1, 1000) + 1000))
end

-- Gives back k tokens reserved by the call `id` if it is still the latest call that reserved
-- (ids are unique, so a later call can never be mistaken for it); 1 if it did. Exact: nothing
-- reserved since counts them, and every reservation of one call has the same `now`.
local function gcra_undo(k, id, now)
  if k <= 0 or G.last ~= id then return 0 end
  local lead = gcra_lead(now) - k * P
  if lead < 0 then lead = 0 end
  gcra_store(now, lead)
  -- the one before it is not the latest either: nothing older can be undone
  G.last = false
  return 1
end
