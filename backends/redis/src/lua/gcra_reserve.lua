-- gcra_reserve. ARGV after P, D, burst: k, max_wait (us; -1 unbounded, 0 a try), request id,
-- then a cancelled reservation of this process to undo first (k, id; 0, "" for none).
-- -> {1, now, wait} reserved: go after `wait` | {0, now, wait} refused, nothing taken
--    {-1} k > burst, never | {-2} another config is stored for this bucket
if not gcra_same_config() then return {-2} end
local k, max_wait, id = tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7]
local now = G.now
gcra_undo(tonumber(ARGV[8]), ARGV[9], now)
if k > BURST then
  if G.dirty then gcra_flush(now) end
  return {-1}
end
local lead = gcra_lead(now)
local x = lead + (k - BURST) * P
local wait = 0
if x > 0 then wait = tg_ceil_div(x, D) end
if max_wait >= 0 and wait > max_wait then
  gcra_flush(now)
  return {0, now, wait}
end
gcra_store(now, lead + k * P)
G.last = id
gcra_flush(now)
return {1, now, wait}
