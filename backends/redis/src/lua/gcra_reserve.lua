-- gcra_reserve. ARGV after P, D, burst: k, max_wait (us; -1 unbounded, 0 a try).
-- -> {1, now, wait, tat, rem} reserved: go after `wait` | {0, now, wait} refused, nothing taken
--    {-1} k > burst, never | {-2} another config is stored for this bucket
if not tg_fingerprint_ok(B) then return {-2} end
local k, max_wait = tonumber(ARGV[5]), tonumber(ARGV[6])
if k > BURST then return {-1} end
local now = tg_now(B)
local lead = gcra_lead(now)
local x = lead + (k - BURST) * P
local wait = 0
if x > 0 then wait = tg_ceil_div(x, D) end
if max_wait >= 0 and wait > max_wait then
  redis.call('HSET', B, 'clk', now)
  return {0, now, wait}
end
local tat, rem = gcra_store(now, lead + k * P)
return {1, now, wait, tat, rem}
