-- gcra_reserve: a batch of reservations, decided in order, on one read and one write of the
-- bucket (a reservation costs a few Lua operations; each `redis.call` about a microsecond).
-- ARGV after P, D, burst: a cancelled reservation of this process to undo first (k, call id;
-- 0, "" for none), this call's id, the number of reservations, then 2 per reservation: k,
-- max_wait (us; -1 unbounded, 0 a try). The call's id becomes the bucket's latest when it
-- reserves anything: an undo names a call, and gives back tokens of the latest call only.
-- -> 3 entries per reservation, in order: {1, now, wait} reserved: go after `wait` |
--    {0, now, wait} refused, nothing taken | {-1, now, 0} k > burst, never
--    or {-2} alone: another config is stored for this bucket
if not gcra_same_config() then return {-2} end
local now = G.now
gcra_undo(tonumber(ARGV[5]), ARGV[6], now)
local out = {}
-- the bucket's lead over `now` through the batch, stored once at the end
local lead, taken = gcra_lead(now), false
for j = 0, tonumber(ARGV[8]) - 1 do
  local o = 9 + 2 * j
  local k, max_wait = tonumber(ARGV[o]), tonumber(ARGV[o + 1])
  local code, wait = -1, 0
  if k <= BURST then
    local x = lead + (k - BURST) * P
    if x > 0 then wait = tg_ceil_div(x, D) end
    if max_wait >= 0 and wait > max_wait then
      code = 0
    else
      lead = lead + k * P
      taken = true
      code = 1
    end
  end
  out[#out + 1] = code
  out[#out + 1] = now
  out[#out + 1] = wait
end
if taken then
  gcra_store(now, lead)
  G.last = ARGV[7]
end
gcra_flush(now)
return out
