-- Shared by every script: exact integer division, the clock clamp, the config's limits.
-- Every number stays an integer below 2^53 (checked by the client when it builds the config),
-- and every reply is an array of integers (never a fraction, which Redis would truncate).

-- Floor division and remainder of integers a, b (b > 0), exact: float division may be one off.
local function tg_divmod(a, b)
  local q = math.floor(a / b)
  local r = a - q * b
  while r < 0 do q = q - 1; r = r + b end
  while r >= b do q = q + 1; r = r - b end
  return q, r
end

local function tg_div(a, b)
  local q = tg_divmod(a, b)
  return q
end

-- A number as an argument of `redis.call`, as text. Redis turns a number argument into text
-- itself, exactly, but at about twice the cost of this ('%d' is exact for integers below
-- 2^53, which every number here is); a hot call has several.
local function tg_s(n)
  return string.format('%d', n)
end

local function tg_ceil_div(a, b)
  local q, r = tg_divmod(a, b)
  if r > 0 then q = q + 1 end
  return q
end

-- `now` clamped to the latest time the state at `key` has seen, so it never steps back.
local function tg_now(key)
  local now = tg_time()
  local last = tonumber(redis.call('HGET', key, 'clk'))
  if last and now < last then now = last end
  return now
end

-- Both at once (one read): the stored fingerprint (nil: no state yet) and the clamped clock.
local function tg_fp_now(key)
  local v = redis.call('HMGET', key, 'fp', 'clk')
  local now, last = tg_time(), tonumber(v[2])
  if last and now < last then now = last end
  return v[1], now
end

-- The config travels with every call: ARGV[1] its fingerprint, then the script's own layout.
local function tg_fingerprint_ok(key)
  local fp = redis.call('HGET', key, 'fp')
  return (not fp) or fp == ARGV[1]
end
